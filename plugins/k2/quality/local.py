"""Validating small frames without Spark: GX's pandas engine, plus the SQL expectations.

A Spark-backed validation runs one or more Spark jobs per expectation: tens of seconds for a
handful of Gold bars, minutes on a loaded machine. A frame of a few thousand rows is collected once
(as Arrow, so decimals stay exact) and validated in-process. GX has no pandas implementation of
the ``unexpected_rows_query`` metrics behind ``UnexpectedRowsExpectation``; this module registers
one that runs the suite's own query in DuckDB on the same Arrow data, with ``unix_timestamp`` defined
as Spark defines it. Same expectations, same severities, same stored results and Data Docs.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from great_expectations.constants import MAX_RESULT_RECORDS
from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.query_metrics.query_row_count.unexpected_rows_query_row_count import (
    UnexpectedRowsQueryRowCount,
)
from great_expectations.expectations.metrics.query_metrics.query_table.unexpected_rows_query_table import (
    UnexpectedRowsQueryTable,
)

BATCH_VIEW = "k2_batch"
# Spark SQL functions the suites' queries use, defined in DuckDB with Spark's semantics
SPARK_MACROS = ("CREATE MACRO unix_timestamp(t) AS CAST(floor(epoch(t)) AS BIGINT)",)


@cache
def _database():
    """One in-memory DuckDB database per process, with the Spark macros: opening one costs about
    15 ms, a cursor on it 0.1 ms, and a gate runs a query per metric (17 for a Gold suite)."""
    import duckdb

    database = duckdb.connect()
    for macro in SPARK_MACROS:
        database.execute(macro)
    return database


def _query(cls: Any, execution_engine: PandasExecutionEngine, domain: dict, value_kwargs: dict, *, count: bool):
    """The expectation's query, run in DuckDB on the batch: its rows (as a cursor), or their count."""
    import pyarrow as pa

    frame, _, _ = execution_engine.get_compute_domain(domain, domain_type=MetricDomainTypes.TABLE)
    connection = _database().cursor()  # its own connection: the view it registers is its own
    connection.register(BATCH_VIEW, pa.Table.from_pandas(frame, preserve_index=False))
    query = cls._format_query(cls._get_query_from_metric_value_kwargs(value_kwargs), batch=BATCH_VIEW)
    return connection.execute(f"SELECT count(*) FROM ({query})" if count else query)


class LocalUnexpectedRowsQueryTable(UnexpectedRowsQueryTable):
    @metric_value(engine=PandasExecutionEngine)
    def _pandas(
        cls,
        execution_engine: PandasExecutionEngine,
        metric_domain_kwargs: dict,
        metric_value_kwargs: dict,
        metrics: dict[str, Any],
        runtime_configuration: dict,
    ) -> list[dict]:
        cursor = _query(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, count=False)
        rows = cursor.fetchall() if metric_value_kwargs.get("fetch_all") else cursor.fetchmany(MAX_RESULT_RECORDS)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in rows]


class LocalUnexpectedRowsQueryRowCount(UnexpectedRowsQueryRowCount):
    @metric_value(engine=PandasExecutionEngine)
    def _pandas(
        cls,
        execution_engine: PandasExecutionEngine,
        metric_domain_kwargs: dict,
        metric_value_kwargs: dict,
        metrics: dict[str, Any],
        runtime_configuration: dict,
    ) -> int:
        cursor = _query(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, count=True)
        return int(cursor.fetchall()[0][0])
