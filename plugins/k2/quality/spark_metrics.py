"""Spark validations without a job per passing expectation, and decimals compared as decimals.

For each map expectation (not-null, between, in-set, regex, compound-unique), GX's Spark engine
computes the unexpected count (bundled with the others into a few aggregate jobs), then looks for a
sample of unexpected values with a job of its own: a filter and a LIMIT over the whole frame, run
even when the count it has just computed is 0. On Silver's suite that is 19 of its 20 Spark jobs and
most of its time (2M rows, local[2]: 11.2 s; 3.2 s without them).

``install`` makes each Spark ``unexpected_values`` metric depend on its expectation's
``unexpected_count`` (the same metric, so GX computes it once) and return no values, without a job,
when that count is 0. A failing expectation gets its sample as before: same results, same Data Docs.

It also gives ``column_values.between`` on a decimal column (prices, quantities, amounts) a decimal
bound where the suite has a number: Spark then compares decimals, where a float bound made it turn
every value into a double first (Silver's three such expectations on 10M rows, local[2]: 3.0 s
instead of 10.5 s; its suite's aggregate job 4 s instead of 13.5 s). The comparison is exact
instead of in doubles; a bound the column's type cannot hold exactly is left as it is.

And ``compound_columns.unique``'s window partitions by the key's columns, where GX partitions by a
struct of them: the same groups (nulls group together either way), without building, hashing and
comparing a struct per row (Bronze's key on 10M rows, local[2], warm: 4.8 s instead of 5.4 s). A
count grouped on the key measured slower than either (8.5 s): the rows arrive nearly sorted by
their Kafka coordinates.

It relies on GX 1.x's metric registry and dependency protocol (``MetricProvider`` docs); where these
differ, nothing is changed and validations run as GX ships them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from k2.log import get_logger

log = get_logger("k2.quality")

ENGINE = "SparkDFExecutionEngine"
VALUES = ".unexpected_values"
COUNT = ".unexpected_count"
DEPENDENCY = "unexpected_count"
BETWEEN_CONDITION = "column_values.between.condition"
BOUNDS = ("min_value", "max_value")
COMPOUND_UNIQUE_CONDITION = "compound_columns.unique.condition"

_installed = False


def install() -> None:
    """Idempotent; call before building a Spark validation."""
    global _installed
    if _installed:
        return
    try:
        from great_expectations.execution_engine import SparkDFExecutionEngine
        from great_expectations.expectations.metrics.map_metric_provider import MapMetricProvider
        from great_expectations.expectations.registry import _registered_metrics
        from great_expectations.validator.metric_configuration import MetricConfiguration

        dependencies_of = MapMetricProvider._get_evaluation_dependencies.__func__
    except (ImportError, AttributeError) as exc:
        log.warning("quality.spark_metrics_not_installed", error=str(exc))
        _installed = True
        return

    @wraps(dependencies_of)
    def with_count(cls, metric, configuration=None, execution_engine=None, runtime_configuration=None):
        dependencies = dependencies_of(cls, metric, configuration, execution_engine, runtime_configuration)
        if isinstance(execution_engine, SparkDFExecutionEngine) and metric.metric_name.endswith(VALUES):
            dependencies[DEPENDENCY] = MetricConfiguration(
                metric_name=metric.metric_name[: -len(VALUES)] + COUNT,
                metric_domain_kwargs=metric.metric_domain_kwargs,
                metric_value_kwargs={k: v for k, v in metric.metric_value_kwargs.items() if k != "result_format"},
            )
        return dependencies

    MapMetricProvider._get_evaluation_dependencies = classmethod(with_count)
    values_metrics = [name for name in _registered_metrics if name.endswith(VALUES)]
    wrapped = sum(_replace(_registered_metrics, name, skipping_when_none) for name in values_metrics)
    decimal_bounds = _replace(_registered_metrics, BETWEEN_CONDITION, with_decimal_bounds)
    unique_by_columns = _replace(_registered_metrics, COMPOUND_UNIQUE_CONDITION, lambda _: _unique_by_columns())
    _installed = True
    log.debug(
        "quality.spark_metrics_installed",
        metrics=wrapped,
        decimal_bounds=decimal_bounds,
        unique_by_columns=unique_by_columns,
    )


def _replace(registry: dict, name: str, replace: Callable[[Callable], Callable]) -> bool:
    """Wraps metric ``name``'s Spark provider with ``replace``; False when GX has none."""
    provider = registry.get(name, {}).get("providers", {}).get(ENGINE)
    if provider is None:
        return False
    registry[name]["providers"][ENGINE] = (provider[0], replace(provider[1]))
    return True


def skipping_when_none(values: Callable[..., list]) -> Callable[..., list]:
    """``values``, unless the unexpected count it depends on is 0: then no values, and no job."""

    @wraps(values)
    def provider(*args: Any, metrics: dict[str, Any], **kwargs: Any) -> list:
        if metrics.get(DEPENDENCY) == 0:
            return []
        return values(*args, metrics=metrics, **kwargs)

    return provider


def with_decimal_bounds(condition: Callable[..., Any]) -> Callable[..., Any]:
    """GX's between condition, given decimal bounds when its column is a decimal."""

    @wraps(condition)
    def provider(cls: type, execution_engine: Any, metric_domain_kwargs: dict, metric_value_kwargs: dict, **kwargs):
        data, _, accessor = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type="column")
        kind = data.schema[accessor["column"]].dataType
        bounds = {k: decimal_bound(metric_value_kwargs[k], kind) for k in BOUNDS if k in metric_value_kwargs}
        return condition(
            cls=cls,
            execution_engine=execution_engine,
            metric_domain_kwargs=metric_domain_kwargs,
            metric_value_kwargs={**metric_value_kwargs, **bounds},
            **kwargs,
        )

    return provider


def _unique_by_columns() -> Callable[..., Any]:
    """GX's compound-unique condition (a row whose key no other row has), its window partitioned by
    the key's columns rather than by a struct of them; built with GX's own decorator, so it takes
    the same domain, row filter and arguments as the provider it replaces."""
    from great_expectations.execution_engine import SparkDFExecutionEngine
    from great_expectations.expectations.metrics.map_metric_provider import multicolumn_condition_partial
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    @multicolumn_condition_partial(engine=SparkDFExecutionEngine)
    def unique(cls: type, column_list: Any, **kwargs: Any) -> Any:
        key = [F.col(name) for name in column_list.columns]
        return F.count(F.lit(1)).over(Window.partitionBy(*key)) <= 1

    return unique


def decimal_bound(bound: Any, kind: Any) -> Any:
    """``bound`` as a ``Decimal`` a column of Spark type ``kind`` compares exactly against, when
    ``kind`` is a decimal type that holds it; else ``bound`` unchanged."""
    from decimal import Decimal

    from pyspark.sql.types import DecimalType

    if not isinstance(kind, DecimalType) or isinstance(bound, bool) or not isinstance(bound, int | float):
        return bound
    exact = Decimal(repr(bound)) if isinstance(bound, float) else Decimal(bound)
    if not exact.is_finite():
        return bound
    _, digits, exponent = exact.normalize().as_tuple()
    integral = max(len(digits) + exponent, 0)
    fits = -exponent <= kind.scale and integral <= kind.precision - kind.scale
    return exact if fits or exact.is_zero() else bound
