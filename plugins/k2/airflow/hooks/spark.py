"""The hook through which K2's Airflow tasks submit Spark jobs (Apache Spark provider)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
from airflow.sdk import Connection

from k2.airflow.hooks import SettingsDefaultConnection
from k2.runtime.priority import lower_priority
from k2.settings import Settings
from k2.spark import SPARK_SUBMIT, spark_job


class K2SparkSubmitHook(SettingsDefaultConnection, SparkSubmitHook):
    """A SparkSubmitHook for one of K2's Spark jobs, owning the ``k2_spark`` connection.

    The master comes from the connection when the deployment defines it (environment, secrets
    backend, UI); else from K2_SPARK_MASTER. Every other Spark setting comes from k2.spark, the same
    as for an in-process session.
    """

    default_conn_name = "k2_spark"
    hook_name = "K2 Spark"

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        application: Path,
        application_args: list[str],
        driver_memory: str | None = None,
        nice: int = 0,
        conn_id: str = default_conn_name,
        **kwargs: Any,
    ) -> None:
        self.settings = settings
        self.nice = nice
        self.job = spark_job(
            settings, name=name, application=application, args=application_args, driver_memory=driver_memory
        )
        super().__init__(
            conn_id=conn_id,
            conf=self.job.conf,
            name=name,
            spark_binary=SPARK_SUBMIT,
            application_args=list(self.job.args),
            env_vars=self.job.env,
            properties_file=str(self.job.properties_file) if self.job.properties_file else None,
            verbose=False,
            **kwargs,
        )

    @staticmethod
    def default_connection(settings: Settings, conn_id: str = default_conn_name) -> Connection:
        return Connection(conn_id=conn_id, conn_type="spark", host=settings.spark.master)

    def submit(self, application: str = "", **kwargs: Any) -> str | None:
        # spark-submit is found on the job's PATH (next to this interpreter)
        kwargs.setdefault("env", {**os.environ, **self.job.env})
        if self.nice:  # spark-submit and the JVMs it starts run at the lower priority
            kwargs.setdefault("preexec_fn", lower_priority(self.nice))
        return super().submit(application or str(self.job.application), **kwargs)
