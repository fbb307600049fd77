"""What K2 needs inside an Airflow, created idempotently by ``k2 airflow init`` (and by ``k2 up``).

Runs against the metadata database of the Airflow configured in this process's environment
(``AIRFLOW_HOME``, ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``), the same one ``airflow`` commands use:

- pools: K2's Spark batch tasks and its maintenance queue in pools of their own; a task whose
  pool does not exist is never scheduled. Created, or their slots brought to the settings.
- variables: ``k2_alert_thresholds``, created empty (``{}``: the defaults) so operators find it in
  the UI; a value already set (in the database or a secrets backend) is kept.
- connections: none stored. K2's hooks use the deployment's connection when Airflow defines one,
  else derive it from the K2_* settings at run time; storing the derived one would pin today's
  settings over later K2_* changes (and put the embedded Spark Connect token in the database).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from k2.errors import K2Error
from k2.monitoring.thresholds import VARIABLE_KEY as THRESHOLDS_VARIABLE
from k2.settings import Settings, mask_secret

INIT_COLUMNS = ("kind", "name", "action", "detail")  # `k2 airflow init`'s table, read back by k2 up


@dataclass(frozen=True)
class PoolSpec:
    name: str
    slots: int
    description: str


@dataclass(frozen=True)
class VariableSpec:
    key: str
    default: str
    description: str


def pools(settings: Settings) -> list[PoolSpec]:
    """K2's pools: the one definition, used by ``k2 airflow init`` and ``k2 up``."""
    specs = []
    if settings.spark.pool:
        specs.append(
            PoolSpec(
                settings.spark.pool,
                settings.spark.pool_slots,
                "K2 Spark batch jobs (Silver, Gold, maintenance) at a time (K2_SPARK_POOL_SLOTS)",
            )
        )
    if settings.maintenance.pool and settings.maintenance.pool != settings.spark.pool:
        specs.append(PoolSpec(settings.maintenance.pool, 1, "K2 Iceberg maintenance, one task at a time"))
    return specs


VARIABLES = (
    VariableSpec(
        THRESHOLDS_VARIABLE,
        "{}",
        "K2 alert thresholds per metric and exchange, JSON ({} keeps the defaults; `k2 thresholds` shows them)",
    ),
)


def migrate_database() -> None:
    """``airflow db migrate``, through Airflow's own command line in this process: `k2 up` then
    pays for one Python process with Airflow imported, not two (3-4 s of CPU each)."""
    from airflow.cli import cli_parser

    args = cli_parser.get_parser().parse_args(["db", "migrate"])
    args.func(args)


def init_airflow(settings: Settings) -> list[tuple[str, str, str, str]]:
    """Create or align K2's pools and variables; report its connections. Rows: (kind, name, action, detail)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return [*_ensure_pools(settings), *_ensure_variables(), _connection_row(settings), _scrape_token_row(settings)]
    except SQLAlchemyError as exc:
        from airflow import settings as airflow_settings

        db = airflow_settings.engine.url.render_as_string(hide_password=True) if airflow_settings.engine else "?"
        first_line = str(exc).splitlines()[0][:300]
        raise K2Error(
            f"cannot write to Airflow's metadata database {db}: {first_line}",
            "run `airflow db migrate` with the same AIRFLOW_HOME and AIRFLOW__DATABASE__SQL_ALCHEMY_CONN as your "
            "Airflow, then run `k2 airflow init` again in that environment.",
        ) from exc


def _ensure_pools(settings: Settings) -> list[tuple[str, str, str, str]]:
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from sqlalchemy import select

    rows = []
    with create_session() as session:
        for spec in pools(settings):
            existing = session.scalar(select(Pool).filter_by(pool=spec.name))
            if existing is None:
                action = "created"
            elif existing.slots != spec.slots or existing.description != spec.description:
                action = f"updated (was {_slots(existing.slots)})"
            else:
                action = "unchanged"
            Pool.create_or_update_pool(spec.name, spec.slots, spec.description, include_deferred=False, session=session)
            rows.append(("pool", spec.name, action, _slots(spec.slots)))
    return rows


def _slots(n: int) -> str:
    return f"{n} slot" if n == 1 else f"{n} slots"


def _ensure_variables() -> list[tuple[str, str, str, str]]:
    from airflow.models.variable import Variable

    # reading back a value as short as "{}" makes Airflow's secrets masker warn that it cannot mask it
    logging.getLogger("airflow._shared.secrets_masker.secrets_masker").setLevel(logging.ERROR)
    rows = []
    for spec in VARIABLES:
        if Variable.get_variable_from_secrets(key=spec.key) is None:
            Variable.set(spec.key, spec.default, description=spec.description)
            rows.append(("variable", spec.key, "created", spec.default))
        else:
            rows.append(("variable", spec.key, "kept", "already set"))
    return rows


def _connection_row(settings: Settings) -> tuple[str, str, str, str]:
    """The connection K2's Spark tasks use with these settings, and where it comes from."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    from k2.airflow.hooks.spark import K2SparkSubmitHook
    from k2.airflow.hooks.spark_connect import K2SparkConnectHook

    if settings.spark.connect == "off":
        conn_id, source = K2SparkSubmitHook.default_conn_name, f"K2_SPARK_MASTER={settings.spark.master}"
    else:
        # an sc:// URL may carry its token: the report shows it masked
        shown = mask_secret("spark_connect", settings.spark.connect)
        conn_id, source = K2SparkConnectHook.default_conn_name, f"K2_SPARK_CONNECT={shown}"
    try:
        Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return ("connection", conn_id, "not stored", f"derived at run time from {source}; define it to override")
    return ("connection", conn_id, "kept", "defined in Airflow (it overrides the K2_* settings)")


def _scrape_token_row(settings: Settings) -> tuple[str, str, str, str]:
    """Where Prometheus finds the token /k2/metrics asks for (the token itself is never shown)."""
    from k2.monitoring.scrape_auth import scrape_token, scrape_token_path

    path = scrape_token_path(settings)
    action = "kept" if path.is_file() else "created"
    scrape_token(settings)
    return ("secret", "k2_metrics_scrape_token", action, f"{path} (0600): Prometheus credentials_file")
