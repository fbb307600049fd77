"""What runs where: one row per component of the stack, for ``k2 status`` and ``k2 up``."""

from __future__ import annotations

from typing import Any

from k2.errors import K2Error
from k2.settings import Settings, mask_url_password

Row = tuple[str, str, str, str]


def stack_status(settings: Settings) -> list[Row]:
    return [
        _kafka(settings),
        _topics(settings),
        *_postgres(settings),
        _catalog(settings),
        _spark(settings),
        *_spark_cluster(settings),
        _airflow(settings),
        *_celery(settings),
        *_feeds(settings),
        _query_server(settings),
        *_streams(settings),
        *reconciliation_rows(settings),
    ]


def _spark_cluster(settings: Settings) -> list[Row]:
    """The embedded standalone cluster's nodes and what its master reports, when it is configured."""
    if not settings.spark.embedded_cluster:
        return []
    from k2.runtime.spark_cluster import LocalSparkCluster

    cluster = LocalSparkCluster(settings)
    nodes = cluster.nodes()
    running = sum(n.running for n in nodes)
    try:
        state = cluster.state()
        detail = (
            f"{state.alive_workers} workers alive, {state.cores_used}/{state.cores} slots used, "
            f"{len(state.applications)} applications; UI {cluster.master.ui_url}"
        )
    except (OSError, ValueError) as exc:
        detail = f"master not answering ({type(exc).__name__})"
    return [("spark cluster", f"{running}/{len(nodes)} nodes running", cluster.url, detail)]


def _airflow(settings: Settings) -> Row:
    from k2.runtime.airflow import AirflowServices

    airflow = AirflowServices(settings)
    components = airflow.status()
    up = [c.name for c in components if c.pid]
    state = "running" if len(up) == len(components) else ("stopped" if not up else f"PARTIAL ({', '.join(up)})")
    password = airflow.password()
    login = (
        f"login {settings.airflow.admin_user} / password in {airflow.passwords_file}"
        if password
        else "login created on first start"
    )
    return ("airflow", state, airflow.url, f"{settings.airflow.executor}, {login}")


def _postgres(settings: Settings) -> list[Row]:
    """K2's own PostgreSQL server (K2_POSTGRES_EMBEDDED): the catalog's and Airflow's database."""
    if not settings.postgres.embedded:
        return []
    from k2.runtime.postgres import SUPERUSER, LocalPostgres

    pg = LocalPostgres(settings)
    status = pg.status()
    state = f"running (pid {status.pid})" if status.running else "stopped"
    detail = f"embedded, data {status.data_dir}, login {SUPERUSER} / password in {pg.password_file}"
    return [("postgres", state, pg.where(), detail)]


def _celery(settings: Settings) -> list[Row]:
    """The CeleryExecutor's broker and workers, one row each, when it is the executor."""
    from k2.runtime.airflow import CELERY_WORKER, AirflowServices, worker_hostname
    from k2.runtime.redis import HOST

    airflow = AirflowServices(settings)
    if airflow.redis is None:
        return []
    rows = []
    for c in airflow.status():
        state = f"running (pid {c.pid})" if c.pid else "stopped"
        if c.name == "redis":
            detail = f"Celery broker, password in {airflow.redis.password_file}"
            rows.append(("redis", state, f"{HOST}:{airflow.redis.port}", detail))
        elif c.name.startswith(CELERY_WORKER):
            slots = settings.airflow.celery_concurrency
            rows.append((c.name, state, worker_hostname(c.name), f"{slots} task slots, log {c.log_file}"))
    return rows


def _feeds(settings: Settings) -> list[Row]:
    from k2.runtime import procs
    from k2.runtime.stack import feed_pid_file

    rows = []
    for exchange in settings.exchanges:
        pid = procs.running_pid(feed_pid_file(settings, exchange))
        rows.append(
            (
                f"feed {exchange}",
                f"running (pid {pid})" if pid else "stopped",
                settings.topic_for(exchange),
                f"simulated, {settings.airflow.feed_sim_rate:g} msg/s",
            )
        )
    return rows


def _query_server(settings: Settings) -> Row:
    """Whether queries (`k2 query trades`) are answered by the server, and what its store holds per exchange."""
    from k2.query.live.protocol import ask, socket_path
    from k2.runtime import procs
    from k2.runtime.stack import query_server_pid_file

    pid = procs.running_pid(query_server_pid_file(settings))
    if not pid:
        fix = "start it with `k2 up`" if settings.batch.query_server else "off (K2_QUERY_SERVER=false)"
        return ("query server", "stopped", "-", f"queries judge unprocessed records themselves; {fix}")
    detail = "starting"
    try:
        answer = ask(settings, {"op": "status"})
    except (OSError, K2Error) as exc:
        answer, detail = None, f"not answering: {exc}"
    if answer is not None:
        detail = "; ".join(_query_feed(ex, f) for ex, f in answer[1]["feeds"].items())
    return ("query server", f"running (pid {pid})", str(socket_path(settings)), detail)


def _query_feed(exchange: str, feed: dict[str, Any]) -> str:
    """One exchange's store: what it holds, and its judging rounds (what a waiting query waits for)."""
    rounds = feed.get("rounds", 0)
    return (
        f"{exchange}: {feed['candidates']:,} judged trades"
        + (", caught up" if feed["caught_up"] else ", catching up")
        + (f", {rounds:,} judging rounds of {feed['judging_s'] / rounds * 1000:.0f} ms on average" if rounds else "")
        + (f", answered without it: {feed['unusable']}" if feed["unusable"] else "")
    )


def _streams(settings: Settings) -> list[Row]:
    from k2.streams.supervisor import StreamSupervisor

    rows = []
    for exchange in settings.exchanges:
        supervisor = StreamSupervisor(settings, exchange)
        try:
            r = supervisor.inspect()
        except Exception as exc:  # the control store is the catalog's database, which may be down
            rows.append((f"stream {exchange}", "unknown", f"bronze.{exchange}_trades", _unreachable(settings, exc)))
            continue
        finally:
            supervisor.close()
        batch = "no batch yet" if r.batch_id is None else f"batch {r.batch_id} {r.last_batch_age_s:.0f}s ago"
        lag = "?" if r.lag is None else r.lag
        rows.append(
            (
                f"stream {exchange}",
                r.state + (f" (pid {r.pid})" if r.pid else ""),
                f"bronze.{exchange}_trades",
                f"{batch}, lag {lag}, restarts 1h {r.restarts_last_hour}",
            )
        )
    return rows


def reconciliation_rows(settings: Settings) -> list[Row]:
    """Per exchange, what the last monitoring run reconciled (k2.monitoring.reconcile)."""
    from k2.docstore import opened
    from k2.monitoring.report import measured_ago
    from k2.monitoring.shared import monitoring_docs

    try:
        with opened(monitoring_docs(settings)) as docs:
            latest = {m["exchange"]: m for m in (docs.read("latest") or {}).get("metrics", [])}
    except Exception as exc:  # as above
        return [
            (f"silver {ex}", "unknown", "ops.medallion_ledger", _unreachable(settings, exc))
            for ex in settings.exchanges
        ]
    rows = []
    for exchange in settings.exchanges:
        m = latest.get(exchange) or {}
        if m.get("bronze_rows") is None:
            rows.append(
                (f"silver {exchange}", "not reconciled yet", "ops.medallion_ledger", "k2_monitoring measures it")
            )
            continue
        gaps = [f"{name} {m[name]}" for name in ("bronze_gap_rows", "silver_gap_rows") if (m.get(name) or 0) > 0]
        age = m.get("unprocessed_age_s")
        # the figures are the last monitoring run's: a batch that finished since is not in them yet
        measured = f", measured {measured_ago(m)}" if m.get("measured_at") else ""
        rows.append(
            (
                f"silver {exchange}",
                f"GAP ({', '.join(gaps)})" if gaps else "reconciled",
                "ops.medallion_ledger",
                f"Kafka {m.get('kafka_committed')} = Bronze {m['bronze_rows']} = Silver accounted "
                f"{m['silver_accounted_rows']} + waiting {m['unprocessed_rows']} "
                f"(oldest {'?' if age is None else f'{age / 60:.0f} min'}){measured}",
            )
        )
    return rows


def _kafka(settings: Settings) -> Row:
    from k2.kafka.clients import broker_reachable
    from k2.runtime.broker import LocalKafka

    if not settings.kafka.embedded:
        up = broker_reachable(settings.kafka.bootstrap_servers)
        state = "reachable" if up else "UNREACHABLE"
        return ("kafka", state, settings.kafka.bootstrap_servers, "external cluster")
    kafka = LocalKafka(settings)
    status = kafka.status()
    state = f"running (pid {status.pid})" if status.running else "stopped"
    if len(kafka.nodes) > 1:
        up = sum(node.status().running for node in kafka.nodes)
        state = f"{up}/{len(kafka.nodes)} nodes running"
        return ("kafka", state, status.bootstrap_servers, f"embedded KRaft cluster, data {settings.kafka_dir}")
    return ("kafka", state, status.bootstrap_servers, f"embedded KRaft, data {status.data_dir}")


def _topics(settings: Settings) -> Row:
    from k2.kafka.clients import broker_reachable
    from k2.kafka.topics import admin_client, exchange_topics

    wanted = [t.name for t in exchange_topics(settings)]
    if not broker_reachable(settings.kafka.bootstrap_servers, timeout=1.0):
        return ("topics", "unknown", settings.kafka.bootstrap_servers, "broker not reachable")
    existing = admin_client(settings.kafka).list_topics(timeout=5).topics
    present = [t for t in wanted if t in existing]
    parts = {t: len(existing[t].partitions) for t in present}
    state = f"{len(present)}/{len(wanted)} present"
    return (
        "topics",
        state,
        settings.kafka.bootstrap_servers,
        ", ".join(f"{t} ({parts[t]}p)" for t in present) or "run `k2 kafka topics`",
    )


def _catalog(settings: Settings) -> Row:
    from k2.lake.catalog import load_catalog, sqlite_path
    from k2.lake.tables import all_tables

    where = str(sqlite_path(settings.lake) or mask_url_password(settings.lake.catalog_uri))
    try:
        catalog = load_catalog(settings.lake)
        present = sum(catalog.table_exists(s.identifier) for s in all_tables(settings))
    except K2Error as exc:
        return ("iceberg catalog", "UNAVAILABLE", where, settings.redact(exc.cause).splitlines()[0])
    kind = "sqlite (JDBC + pyiceberg SqlCatalog)" if sqlite_path(settings.lake) else settings.lake.catalog_type
    return (
        "iceberg catalog",
        f"{present}/{len(all_tables(settings))} tables",
        where,
        f"{kind}, warehouse {settings.lake.warehouse}",
    )


def _spark(settings: Settings) -> Row:
    if not settings.spark.serve_ui:
        ui = "UI off"
    else:
        ui = (
            "UI on 127.0.0.1:4040+"
            if settings.spark.on_loopback
            else "UI on every interface (K2_SPARK_UI_ENABLED=true)"
        )
    if settings.spark.connect == "off":
        batch = "a spark-submit per batch job"
    elif settings.spark.connect_embedded:
        from k2.runtime.spark_connect import LocalSparkConnectServer

        server = LocalSparkConnectServer(settings).status()
        state = f"running (pid {server.pid})" if server.running else "stopped (the next batch job starts it)"
        batch = f"batch jobs on Spark Connect {server.endpoint}: {state}"
    else:
        batch = f"batch jobs on Spark Connect {settings.spark.connect.split(';', 1)[0]}"
    return (
        "spark",
        "per job",
        settings.spark.master,
        f"one driver per stream ({settings.streams.driver_memory}), {batch}, {ui}",
    )


def _unreachable(settings: Settings, exc: Exception) -> str:
    first = settings.redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    fix = "`k2 up` starts K2's own PostgreSQL" if settings.postgres.embedded else "check the server of K2_CATALOG_URI"
    return f"state in the catalog's database unreachable ({first[:160]}); {fix}"
