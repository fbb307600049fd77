"""Where Silver's work ends, in Kafka offsets: the first offset of each partition that Silver may not
have processed. Silver covers ranges of Bronze ``ingested_at`` (the medallion ledger), and the
stream writes each partition's offsets in order with an ingestion time that only grows
(``k2.medallion.settle``), so the records Silver has not covered are, per partition, those from the
least offset Bronze ingested at or after the end of its coverage on, plus those not in Bronze yet.

An offset too low only brings in records Silver holds, which a query drops as it drops any duplicate
across batches; too high would lose trades. So every estimate here errs low."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from k2.lake.tables import bronze_table
from k2.medallion import ledger
from k2.query.live import Offsets
from k2.query.sources import gaps
from k2.settings import Settings


@dataclass(frozen=True)
class Processed:
    """Silver's coverage of one exchange in Kafka terms."""

    covered_until: dt.datetime  # the start of the last range Silver has not covered
    offsets: Offsets = field(default_factory=dict)  # partition -> first offset Silver may not hold
    exact: bool = True  # False: unprocessed rows lie before covered_until too (a hole in the coverage)
    reason: str = ""


def coverage_end(settings: Settings, exchange: str) -> tuple[dt.datetime, list[tuple[dt.datetime, dt.datetime]]]:
    """The start of the last uncovered ingestion range, and the uncovered ranges before it."""
    open_ranges = gaps(ledger.covered(settings.lake, "silver", exchange))
    return open_ranges[-1][0], open_ranges[:-1]


def processed(settings: Settings, exchange: str) -> Processed:
    """The first offset per partition that Silver may not have processed, for the ledger as it is now."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    from k2.kafka.lag import committed_offsets
    from k2.lake.catalog import load_catalog
    from k2.streams.control import read_doc

    until, holes = coverage_end(settings, exchange)
    # the stream's progress before the table: every batch it names is in the snapshot loaded after
    progress = committed_offsets(read_doc(settings, exchange, "progress") or {}, settings.topic_for(exchange))
    table = load_catalog(settings.lake).load_table(bronze_table(exchange).identifier)
    columns = ("kafka_partition", "kafka_offset")
    for start, end in holes:
        where = And(GreaterThanOrEqual("ingested_at", start.isoformat()), LessThan("ingested_at", end.isoformat()))
        if table.scan(row_filter=where, selected_fields=columns, limit=1).to_arrow().num_rows:
            return Processed(until, exact=False, reason=f"Bronze rows ingested in [{start}, {end}) are not in Silver")
    first = _least_offsets(table, until)
    # a partition without rows from `until` on: Silver holds all it has in Bronze, and later rows
    # come after the stream's progress
    return Processed(until, {**progress, **first})


def _least_offsets(table, since: dt.datetime) -> Offsets:
    """Per partition, the least offset of the rows ingested at or after ``since``. A data file whose
    rows all share one partition and were all ingested from ``since`` on (what the stream writes: a
    file per Kafka partition per batch) gives it from its column bounds; only the others are read."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from pyiceberg.conversions import from_bytes
    from pyiceberg.expressions import GreaterThanOrEqual

    fields = {name: table.schema().find_field(name) for name in ("kafka_partition", "kafka_offset", "ingested_at")}
    since_us = int(since.timestamp() * 1_000_000)
    least: Offsets = {}

    def bound(task, name: str, which: str):
        field, bounds = fields[name], getattr(task.file, which) or {}
        return from_bytes(field.field_type, bounds[field.field_id]) if field.field_id in bounds else None

    def keep(partition: int, offset: int) -> None:
        least[partition] = min(offset, least.get(partition, offset))

    for task in table.scan(row_filter=GreaterThanOrEqual("ingested_at", since.isoformat())).plan_files():
        low_p, high_p = bound(task, "kafka_partition", "lower_bounds"), bound(task, "kafka_partition", "upper_bounds")
        low_t, low_o = bound(task, "ingested_at", "lower_bounds"), bound(task, "kafka_offset", "lower_bounds")
        if low_p is not None and low_p == high_p and low_t is not None and low_t >= since_us and low_o is not None:
            keep(low_p, low_o)
            continue
        with table.io.new_input(task.file.file_path).open() as stream:
            rows = pq.read_table(stream, columns=list(fields))
        stamp = pa.scalar(since, rows.schema.field("ingested_at").type)
        least_in_file = (
            rows.filter(pc.greater_equal(rows["ingested_at"], stamp))
            .group_by("kafka_partition")
            .aggregate([("kafka_offset", "min")])
        )
        columns = ("kafka_partition", "kafka_offset_min")
        for partition, offset in zip(*(least_in_file.column(c).to_pylist() for c in columns), strict=True):
            keep(partition, offset)
    return least
