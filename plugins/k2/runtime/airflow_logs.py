"""Airflow's log server, bound to K2_AIRFLOW_HOST.

``airflow scheduler`` and ``airflow triggerer`` each start a log server on every interface (its host
is hard-coded to ""). K2 starts them with ``--skip-serve-logs`` and runs this one instead: the same
Airflow application, serving task and trigger logs (both ports point here) to the API server only
on the configured host. Task instances record :func:`hostname` as theirs, so the API server asks
this address for a running task's log.
"""

from __future__ import annotations

from k2.settings import load_settings


def hostname() -> str:
    """Airflow's ``hostname_callable``: where this machine's log server listens."""
    return load_settings().airflow.host


def main() -> None:
    import uvicorn
    from airflow.configuration import conf

    uvicorn.run(
        "airflow.utils.serve_logs.log_server:get_app",
        factory=True,
        host=load_settings().airflow.host,
        port=conf.getint("logging", "worker_log_server_port"),
        log_level="warning",
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
