"""Writing a query's result: a terminal table, CSV, Parquet or Arrow IPC."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from k2.errors import K2Error

FORMATS = ("table", "csv", "parquet", "arrow")


def write(table: pa.Table, fmt: str, output: str | None, limit: int) -> None:
    if fmt in ("parquet", "arrow") and not output:
        raise K2Error(f"--format {fmt} writes a file", f"add --output FILE, e.g. --output result.{fmt}.")
    if fmt == "table":
        from k2.cli.table import print_table

        shown = table.slice(0, limit) if limit else table
        rows = [tuple(_cell(v) for v in row.values()) for row in shown.to_pylist()]
        print_table(tuple(table.schema.names), rows)
        if limit and table.num_rows > limit:
            print(f"... {table.num_rows - limit} more rows (--limit 0 shows all, --format csv writes all)")
        return
    if fmt == "csv":
        import pyarrow.csv as csv

        if output:
            csv.write_csv(table, output)
        else:
            import sys

            sink = pa.BufferOutputStream()
            csv.write_csv(table, sink)
            sys.stdout.write(sink.getvalue().to_pybytes().decode())
        return
    path = Path(output)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)


def _cell(value: object) -> str:
    """A value for the terminal: decimals without the money type's trailing zeros."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    return str(value)
