"""The catalog's PostgreSQL database as the one store every host reaches (the scale-out form):
sessions with it, and the keys of K2's advisory locks there. With SQLite (one host) it does not
apply, and callers keep their state in files under K2_HOME."""

from __future__ import annotations

import hashlib

from k2.settings import LakeSettings

NAMESPACE = 0x4B32  # "K2": the first of an advisory lock's two keys, so K2's locks never meet another application's


def applies(lake: LakeSettings) -> bool:
    """Whether the catalog is a database every host reaches (PostgreSQL)."""
    return lake.catalog_type != "rest" and lake.catalog_uri.startswith("postgresql")


def lock_key(name: str) -> int:
    """An advisory lock's second key: stable across processes and releases (Python's hash() is not)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


def connect(lake: LakeSettings, application_name: str):
    """A session with the catalog's database, named so `pg_stat_activity` says whose."""
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(lake.catalog_uri)
    return psycopg2.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        application_name=application_name[:63],  # PostgreSQL keeps 63 bytes of it
        connect_timeout=10,
        # a dead peer is found in about a minute, not after the system's two hours
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )
