"""Run a layer's suite on a Spark DataFrame and decide: critical failures stop publication, warnings
are reported. Results and data docs are kept in a runtime GX project under ``$K2_HOME/quality``
(the shipped ``k2/bundle/expectations/`` stays read-only at run time)."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2.errors import K2Error
from k2.log import get_logger
from k2.quality import shared
from k2.quality.docs import DOCS_INDEX_REFRESH_S, data_docs_dir_of, quality_root, results_dir
from k2.quality.suites import load_suite
from k2.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

log = get_logger("k2.quality")

DATASOURCE = "k2_spark"
LOCAL_DATASOURCE = "k2_local"
# frames up to this many rows (Gold bars, small intervals) are validated in-process, without one
# Spark job per metric (k2.quality.local); larger ones where they are, in Spark
LOCAL_MAX_ROWS = 50_000
BATCH_DEFINITION = "whole_dataframe"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 5}
# GX looks for each expectation's unexpected values with a LIMIT, which Spark runs as a job over one
# partition, then more jobs over four times as many until it has the rows: a passing expectation has
# none, so every partition at once (a few rows each) saves those jobs (Silver's suite on 2M rows:
# 18 Spark jobs instead of 26, 10.9 s instead of 13.1 s)
LIMIT_SCANS_ALL_PARTITIONS = {"spark.sql.limit.initialNumPartitions": "100000"}


@dataclass(frozen=True)
class Finding:
    expectation: str
    severity: str
    detail: str


@dataclass
class QualityReport:
    layer: str
    exchange: str
    run_name: str
    evaluated: int
    failures: list[Finding] = field(default_factory=list)
    docs: str = ""

    @property
    def critical(self) -> list[Finding]:
        return [f for f in self.failures if f.severity == "critical"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.failures if f.severity != "critical"]

    @property
    def passed(self) -> bool:
        return not self.critical

    def summary(self) -> dict[str, Any]:
        return {
            "suite": f"{self.layer}.{self.exchange}",
            "passed": self.passed,
            "evaluated": self.evaluated,
            "critical": [asdict(f) for f in self.critical],
            "warnings": [asdict(f) for f in self.warnings],
            "docs": self.docs,
        }


class QualityGateFailed(K2Error):
    def __init__(self, report: QualityReport) -> None:
        failed = "; ".join(f"{f.expectation}: {f.detail}" for f in report.critical)
        super().__init__(
            f"quality gate {report.layer}.{report.exchange} failed for {report.run_name}: {failed}",
            f"nothing was published; see {report.docs or 'the validation results'}, fix the data "
            "or the transform, then clear the task to re-run the interval",
        )
        self.report = report


_preloading: threading.Thread | None = None


def preload() -> None:
    """Import GX (4-6 s of one core) in a background thread, while the caller's Spark work runs on
    the server: the first gate of a batch task then starts at once. ``validate`` waits for it, so
    the two threads never import the same modules at the same time."""
    global _preloading
    if _preloading is None:
        _preloading = threading.Thread(target=_import_gx, name="k2-gx-preload", daemon=True)
        _preloading.start()


def _import_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    try:
        import great_expectations  # noqa: F401

        import k2.quality.local  # noqa: F401
    except Exception as exc:  # validate imports it again and reports the cause
        log.warning("quality.preload_failed", error=str(exc)[:500])


def validate(
    layer: str,
    frame: DataFrame | pa.Table,
    *,
    settings: Settings,
    exchange: str,
    run_name: str,
    local: bool | None = None,
) -> QualityReport:
    """Validate ``frame`` with the suite of ``layer`` and keep the result: in-process when it is
    small (``local``: decided by its size when None; always for an Arrow table, rows the caller
    holds already), else in Spark. One validation at a time per state directory: the runtime
    project's files (config, data docs index) are shared."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    if _preloading is not None:
        _preloading.join()
    root = quality_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        import pyarrow as pa
        from great_expectations.core.run_identifier import RunIdentifier

        data = frame
        if isinstance(frame, pa.Table):  # Arrow: decimals stay exact
            local, data = True, frame.to_pandas()
        else:
            if local is None:  # counted, not collected: 50,001 Bronze rows took 1.6 s to collect on 10M
                local = frame.limit(LOCAL_MAX_ROWS + 1).count() <= LOCAL_MAX_ROWS
            if local:
                data = frame.toArrow().to_pandas()
        context = _runtime_context(root)
        suite = load_suite(settings.batch.expectations_dir, layer, exchange)
        prepared = _checkpoint(context, suite, local=local)
        with nullcontext() if local else _session_conf(frame, LIMIT_SCANS_ALL_PARTITIONS):
            result = prepared.checkpoint.run(
                batch_parameters={"dataframe": data}, run_id=RunIdentifier(run_name=run_name)
            )
        ((result_id, suite_result),) = result.run_results.items()
        docs = _build_docs(context, result_id, root, suite_changed=prepared.stored_now)
        if shared.applies(settings):
            _publish(settings, result_id)
    report = QualityReport(
        layer,
        exchange,
        run_name,
        evaluated=len(suite_result.results),
        docs=docs,
        failures=[_finding(r) for r in suite_result.results if not r.success],
    )
    log.info(
        "quality.validated",
        suite=f"{layer}.{exchange}",
        run=run_name,
        passed=report.passed,
        evaluated=report.evaluated,
        critical=len(report.critical),
        warnings=len(report.warnings),
        docs=docs,
    )
    for finding in report.failures:
        log.warning("quality.expectation_failed", suite=f"{layer}.{exchange}", **asdict(finding))
    return report


def rebuild_data_docs(root: Path) -> None:
    """Rebuild the Data Docs site (its index lists the validation results still stored)."""
    with _locked(root / ".lock"):
        _runtime_context(root).build_data_docs()


def enforce(report: QualityReport) -> None:
    """Raise when a critical expectation failed, so the caller publishes nothing."""
    if not report.passed:
        raise QualityGateFailed(report)


def _runtime_context(root: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=root)
    bars = context.variables.progress_bars
    if bars is None or (bars.get("globally", True) if isinstance(bars, dict) else bars.globally):
        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # task logs, not terminals
        context.variables.save()
    return context


@dataclass(frozen=True)
class _Prepared:
    checkpoint: Any  # great_expectations.Checkpoint, imported in the task only
    stored_now: bool  # the suite (and so its Data Docs page) changed


def _checkpoint(context, suite, *, local: bool) -> _Prepared:
    """The checkpoint for one suite and engine, and whether it was stored now. Created on first use;
    the suite is refreshed from the project every run, so edited rules apply at once. A stored
    checkpoint whose suite already holds these rules is used as it is: storing the suite again
    compares every expectation with every other (0.15 s a gate on an idle core, 0.5 s on a loaded one)."""
    import great_expectations as gx

    if local:
        import k2.quality.local  # noqa: F401  (registers the pandas query metrics)
    else:
        from k2.quality.spark_metrics import install

        install()
    name = f"{suite.name}.local" if local else suite.name
    stored = _stored_checkpoint(context, name)
    if stored is not None and _rules(stored.validation_definitions[0].suite) == _rules(suite):
        return _Prepared(stored, stored_now=False)
    try:
        source = context.data_sources.get(LOCAL_DATASOURCE if local else DATASOURCE)
    except KeyError:
        if local:
            source = context.data_sources.add_pandas(name=LOCAL_DATASOURCE)
        else:
            source = context.data_sources.add_spark(name=DATASOURCE, persist=False)  # callers cache what they reuse
    try:
        asset = source.get_asset(suite.name)
    except LookupError:
        asset = source.add_dataframe_asset(name=suite.name)
    try:
        batch = asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
    suite = context.suites.add_or_update(suite)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    checkpoint = gx.Checkpoint(name=name, validation_definitions=[definition], result_format=RESULT_FORMAT)
    return _Prepared(context.checkpoints.add_or_update(checkpoint), stored_now=True)


def _stored_checkpoint(context, name: str):
    """The checkpoint ``name`` as stored with its one validation of the whole frame in this
    format, or None (absent, unreadable, or stored otherwise: it is stored again)."""
    try:
        checkpoint = context.checkpoints.get(name)
        (definition,) = checkpoint.validation_definitions
        whole_frame = definition.data.name == BATCH_DEFINITION
    except Exception:  # any store problem means: store it again
        return None
    return checkpoint if whole_frame and checkpoint.result_format == RESULT_FORMAT else None


def _rules(suite) -> str:
    """A suite's name, expectations and meta, without the ids the store assigns."""
    document = suite.to_json_dict()
    document.pop("id", None)
    for expectation in document.get("expectations", []):
        expectation.pop("id", None)
    return json.dumps(document, sort_keys=True, default=str)


def _finding(result) -> Finding:
    config = result.expectation_config
    severity = str(getattr(config, "severity", "critical") or "critical")
    severity = getattr(severity, "value", severity).split(".")[-1].lower()
    columns = {k: v for k, v in config.kwargs.items() if k in ("column", "column_list", "column_A", "column_B")}
    name = config.type + (f"({', '.join(f'{k}={v}' for k, v in columns.items())})" if columns else "")
    if result.exception_info and result.exception_info.get("raised_exception"):
        return Finding(name, severity, f"could not be evaluated: {result.exception_info.get('exception_message')}")
    outcome = result.result or {}
    if "unexpected_count" in outcome:
        sample = outcome.get("partial_unexpected_list") or []
        return Finding(name, severity, f"{outcome['unexpected_count']} unexpected rows, e.g. {sample[:3]}")
    return Finding(name, severity, f"observed {outcome.get('observed_value')!r}")


def _publish(settings: Settings, result_id) -> None:
    """Every host's view lists this validation (k2.quality.shared); a failure is logged, and the
    result stays in this host's GX stores."""
    *folders, batch = result_id.to_tuple()  # GX's store layout: suite parts / run name / run time / batch.json
    try:
        shared.publish(settings, results_dir(settings).joinpath(*folders, f"{batch}.json"))
    except Exception as exc:
        log.warning("quality.not_published", error=str(exc)[:500])


def _build_docs(context, result_id, root: Path, *, suite_changed: bool = True) -> str:
    """This validation's Data Docs page (0.11 s), its suite's page when the suite was stored now or
    has none (0.09 s more), and the page's URL. The index lists every stored result, so rebuilding
    it grows with the retention (12.9 s for 400 results; 30 days hold about 8,600): the gates
    rebuild it when missing or older than DOCS_INDEX_REFRESH_S, the daily housekeeping always, and
    K2's own view (k2.quality.docs.recent_validations) lists the latest at once."""
    site = data_docs_dir_of(root)
    index = site / "index.html"
    try:
        stale = not index.is_file() or time.time() - index.stat().st_mtime > DOCS_INDEX_REFRESH_S
        suite_id = result_id.expectation_suite_identifier
        suite_page = site.joinpath("expectations", *suite_id.to_tuple()).with_suffix(".html")
        # the validation page links to its suite's page
        resources = [result_id, suite_id] if suite_changed or not suite_page.is_file() else [result_id]
        context.build_data_docs(resource_identifiers=resources, build_index=stale)
        sites = context.get_docs_sites_urls(resource_identifier=result_id)
        return next((s["site_url"] for s in sites if s.get("site_url")), "")
    except Exception as exc:  # docs are a convenience; the stored result is what counts
        log.warning("quality.docs_unavailable", error=str(exc))
        return ""


@contextmanager
def _session_conf(frame: DataFrame, values: dict[str, str]) -> Iterator[None]:
    """``values`` set in the frame's Spark session while the block runs, the previous ones restored."""
    conf = frame.sparkSession.conf
    previous = {key: conf.get(key, None) for key in values}
    for key, value in values.items():
        conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                conf.unset(key)
            else:
                conf.set(key, value)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
