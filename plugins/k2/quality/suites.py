"""Which suite checks which layer. The rules live in the GX project (``k2/bundle/expectations/``); the schema
expectation is derived here from the table registry, the one place each table's schema is defined."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from k2.errors import K2Error
from k2.lake.tables import SILVER_TRADES, TableSpec, bronze_table, gold_table

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

LAYERS = ("bronze", "silver", "gold_1m", "gold_5m", "gold_1h", "gold_1d")


def suite_name(layer: str) -> str:
    """Suite file for a layer: the Gold tables of every bar width share the ``gold`` suite."""
    check_layer(layer)
    return layer.split("_")[0]


def check_layer(layer: str) -> None:
    if layer not in LAYERS:
        raise K2Error(f"no quality suite for layer {layer!r}", f"use one of: {', '.join(LAYERS)}")


def table_for(layer: str, exchange: str) -> TableSpec:
    check_layer(layer)
    if layer == "bronze":
        return bronze_table(exchange)
    if layer == "silver":
        return SILVER_TRADES
    return gold_table(layer.split("_")[1])


def load_suite(project_dir: Path, layer: str, exchange: str) -> ExpectationSuite:
    """The layer's suite from the project, named per layer and exchange, plus the exact-schema
    expectation (critical: a missing or extra column means the writer and the table disagree)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    path = project_dir / "expectations" / f"{suite_name(layer)}.json"
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise K2Error(
            f"cannot read the GX suite {path}: {exc}",
            "restore it from git or fix its JSON (K2_EXPECTATIONS_DIR points at the project)",
        ) from exc
    rules = [{k: v for k, v in e.items() if k != "id"} for e in spec.get("expectations", [])]
    columns = [c.name for c in table_for(layer, exchange).columns]
    schema = gxe.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True, severity="critical")
    # passed in, not added after: GX's add_expectation also writes to a stored suite of the same
    # name, which would gain a copy of the schema expectation at every load
    return gx.ExpectationSuite(name=f"{layer}.{exchange}", expectations=[*rules, schema], meta=spec.get("meta") or {})
