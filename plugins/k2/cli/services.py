"""What the pipeline runs on: the jars, system-packages, kafka, lake and airflow commands."""

from __future__ import annotations

import argparse

from k2.cli.registry import Add
from k2.cli.table import print_table
from k2.errors import K2Error
from k2.settings import Settings


def cmd_jars(settings: Settings, args: argparse.Namespace) -> int:
    from k2.class_archive import ensure_class_archive
    from k2.jvm import STREAM_LISTENER_MODULE, compiled_jar, ensure_jars, local_fs_jar

    jars = ensure_jars(settings, force=args.force)
    archive = ensure_class_archive(settings)
    print_table(
        ("module", "jars", "directory"),
        [
            ("kafka-broker", len(jars.kafka_broker), settings.jvm.jars_dir / "kafka-broker"),
            ("spark-connectors", len(jars.spark_connectors), settings.jvm.jars_dir / "spark-connectors"),
            ("local-fs", 1 if local_fs_jar(settings.jvm) else 0, settings.jvm.jars_dir / "local-fs"),
            (
                STREAM_LISTENER_MODULE,
                1 if compiled_jar(settings.jvm, STREAM_LISTENER_MODULE) else 0,
                settings.jvm.jars_dir / STREAM_LISTENER_MODULE,
            ),
            ("class-archive", 1 if archive else 0, archive or "not built: see the log above"),
        ],
    )
    return 0


def cmd_system_packages(settings: Settings, args: argparse.Namespace) -> int:
    from k2 import system_packages

    installed = system_packages.ensure()
    print_table(
        ("package", "state", "needed because"),
        [(p.name, "installed now" if p in installed else "present", p.why) for p in system_packages.TEST_PACKAGES],
    )
    return 0


def cmd_kafka(settings: Settings, args: argparse.Namespace) -> int:
    from k2.runtime.broker import LocalKafka, reset_storage

    kafka = LocalKafka(settings)
    if args.action == "start":
        from k2.jvm import ensure_jars

        ensure_jars(settings)
        status = kafka.start()
        print(f"Kafka running: pid {status.pid}, bootstrap {status.bootstrap_servers}, data {status.data_dir}")
    elif args.action == "stop":
        print("Kafka " + ("stopped" if kafka.stop() else "was not running"))
    elif args.action == "status":
        nodes = [node.status() for node in kafka.nodes]
        print_table(
            ("node", "state", "pid", "bootstrap", "data", "log"),
            [
                (
                    node.node,
                    "running" if s.running else "stopped",
                    s.pid or "-",
                    s.bootstrap_servers,
                    s.data_dir,
                    s.log_file,
                )
                for node, s in zip(kafka.nodes, nodes, strict=True)
            ],
        )
        return 0 if all(s.running for s in nodes) else 3
    elif args.action == "reset":
        if not args.yes:
            raise K2Error(
                "`k2 kafka reset` deletes every topic and message in "
                + ", ".join(str(node.data_dir) for node in kafka.nodes),
                "re-run with --yes to confirm.",
            )
        print("deleted " + ", ".join(str(path) for path in reset_storage(settings)))
    elif args.action == "topics":
        from k2.kafka.topics import ensure_topics

        print_table(("topic", "action"), sorted(ensure_topics(settings).items()))
    return 0


def cmd_lake(settings: Settings, args: argparse.Namespace) -> int:
    from k2.lake.catalog import load_catalog
    from k2.lake.tables import all_tables, ensure_tables

    catalog = load_catalog(settings.lake)
    if args.action == "init":
        print_table(("table", "action"), sorted(ensure_tables(catalog, all_tables(settings)).items()))
    elif args.action == "show":
        return show_table(catalog, args.table, args.where, args.limit)
    else:
        rows = []
        for spec in all_tables(settings):
            if catalog.table_exists(spec.identifier):
                table = catalog.load_table(spec.identifier)
                snap = table.current_snapshot()
                rows.append(
                    (
                        spec.identifier,
                        # pyiceberg's Summary.get ignores a default: `or`
                        (snap.summary.get("total-records") or 0) if snap else 0,
                        (snap.summary.get("total-data-files") or 0) if snap else 0,
                        table.location(),
                    )
                )
            else:
                rows.append((spec.identifier, "missing", "-", "run `k2 lake init`"))
        print_table(("table", "rows", "files", "location"), rows)
    return 0


def show_table(catalog, identifier: str | None, where: str | None, limit: int) -> int:
    """Print up to ``limit`` rows of a table, optionally filtered (pyiceberg row filter syntax)."""
    from pyiceberg.exceptions import NoSuchTableError

    if not identifier:
        raise K2Error(
            "`k2 lake show` needs a table",
            "e.g. `k2 lake show gold.ohlcv_1m --where \"symbol = 'BTC-USDT'\"`; `k2 lake tables` lists them.",
        )
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError as exc:
        raise K2Error(f"no table {identifier}", "`k2 lake tables` lists K2's tables.") from exc
    from pyiceberg.expressions.parser import parse

    try:
        row_filter = parse(where or "true")
    except Exception as exc:  # pyparsing's errors, which pyiceberg does not wrap
        raise K2Error(
            f"cannot read the filter {where!r} (at character {getattr(exc, 'loc', '?')})",
            "use column comparisons such as \"symbol = 'BTC-USDT' and trade_count > 10\".",
        ) from exc
    rows = table.scan(row_filter=row_filter, limit=limit).to_arrow().to_pylist()
    columns = [f.name for f in table.schema().fields]
    print_table(tuple(columns), [tuple(_cell(r[c]) for c in columns) for r in rows])
    return 0


def _cell(value: object) -> str:
    if isinstance(value, bytes):
        text = value[:60].decode("utf-8", "replace")
        return text + ("..." if len(value) > 60 else "")
    return "" if value is None else str(value)


def cmd_airflow(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "dags-folder":
        from k2.resources import DAGS_DIR

        print(DAGS_DIR)
        return 0
    from k2.airflow.install import INIT_COLUMNS, init_airflow, migrate_database

    if args.migrate:
        migrate_database()
    print_table(INIT_COLUMNS, init_airflow(settings))
    return 0


def register(add: Add) -> None:
    """Declares these commands and their arguments."""
    p = add("jars", cmd_jars, "Resolve the JVM artifacts with Maven (no-op when up to date).")
    p.add_argument("--force", action="store_true", help="resolve again even if up to date")
    add(
        "system-packages",
        cmd_system_packages,
        "Install the Debian packages the tests need (apt-get; no-op when present).",
    )
    p = add("kafka", cmd_kafka, "Operate the embedded Kafka broker and the exchange topics.")
    p.add_argument(
        "action",
        choices=("start", "stop", "status", "topics", "reset"),
        help="start/stop/status the broker; topics: create or align the exchange topics; "
        "reset: delete the broker's data directory",
    )
    p.add_argument("--yes", action="store_true", help="confirm `reset`")
    p = add("lake", cmd_lake, "Create or list K2's Iceberg namespaces and tables.")
    p.add_argument(
        "action",
        choices=("init", "tables", "show"),
        help="init: create missing namespaces and tables; tables: list them; show: print rows of one",
    )
    p.add_argument("table", nargs="?", help="show: the table, e.g. silver.trades or gold.ohlcv_1m")
    p.add_argument("--where", help="show: row filter, e.g. \"symbol = 'BTC-USDT'\"")
    p.add_argument("--limit", type=int, default=20, help="show: at most this many rows (default 20)")
    p = add("airflow", cmd_airflow, "Add K2 to an Airflow: create its pools and variables, or show its DAG folder.")
    p.add_argument(
        "action",
        choices=("init", "dags-folder"),
        help="init: create or align K2's pools and variables in the Airflow of this environment (idempotent; "
        "needs `airflow db migrate` first); dags-folder: print the directory of K2's DAG files",
    )
    p.add_argument(
        "--migrate",
        action="store_true",
        help="with init: run `airflow db migrate` first, in the same process (as `k2 up` does)",
    )
