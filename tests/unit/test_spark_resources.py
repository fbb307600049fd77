"""Per-job Spark resources on a cluster: each Bronze stream and the batch take at most the cores
and executor memory their K2_* settings give them, wherever a Spark application is configured
(the stream's spark-submit and its session, the batch's spark-submit, the Spark Connect server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from k2.errors import K2Error
from k2.settings import Settings
from k2.spark import STREAM, server_conf, spark_conf, spark_job
from k2.streams.launcher import bronze_job

CLUSTER = {
    "K2_SPARK_MASTER": "spark://spark-master:7077",
    "K2_SPARK_CORES_MAX": "2",
    "K2_SPARK_EXECUTOR_MEMORY": "2g",
    "K2_STREAM_CORES_MAX": "1",
    "K2_STREAM_EXECUTOR_MEMORY": "768m",
}


def resources(conf: dict[str, str]) -> tuple[str | None, str | None]:
    return conf.get("spark.cores.max"), conf.get("spark.executor.memory")


def test_each_stream_takes_its_own_share_of_the_cluster(tmp_path: Path) -> None:
    settings = Settings.from_env({**CLUSTER, "K2_HOME": str(tmp_path)})
    assert resources(bronze_job(settings, "binance").conf) == ("1", "768m")  # the stream's spark-submit
    # ... and its session, whose builder values win over spark-submit's --conf
    assert resources(spark_conf(settings, "k2-bronze-binance", role=STREAM)) == ("1", "768m")
    command = bronze_job(settings, "binance").command(settings.spark.master)
    assert "spark.cores.max=1" in command


def test_the_batch_takes_its_own_share_of_the_cluster(tmp_path: Path) -> None:
    settings = Settings.from_env({**CLUSTER, "K2_HOME": str(tmp_path)})
    job = spark_job(settings, name="k2-silver-binance", application=Path("medallion.py"))
    assert resources(job.conf) == ("2", "2g")  # spark-submit per task (K2_SPARK_CONNECT=off)
    assert resources(server_conf(settings, "k2-spark-connect")) == ("2", "2g")  # the Spark Connect server
    assert resources(spark_conf(settings, "k2-silver-binance")) == ("2", "2g")  # a job's own session


def test_the_airflow_hook_submits_with_the_batch_resources(tmp_path: Path) -> None:
    from k2.airflow.hooks.spark import K2SparkSubmitHook

    settings = Settings.from_env({**CLUSTER, "K2_HOME": str(tmp_path)})
    hook = K2SparkSubmitHook(settings, name="k2-gold-binance", application=Path("medallion.py"), application_args=[])
    assert resources(hook._conf) == ("2", "2g")


def test_unset_resources_leave_spark_its_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env({"K2_HOME": str(tmp_path)})
    assert resources(bronze_job(settings, "kraken").conf) == (None, None)
    assert resources(spark_conf(settings, "k2-silver-kraken")) == (None, None)


@pytest.mark.parametrize("variable", ["K2_SPARK_EXECUTOR_MEMORY", "K2_STREAM_EXECUTOR_MEMORY"])
def test_a_memory_size_spark_cannot_read_is_refused_with_its_variable(tmp_path: Path, variable: str) -> None:
    with pytest.raises(K2Error, match=f"{variable}='2 GB' is not a memory size") as refused:
        Settings.from_env({"K2_HOME": str(tmp_path), variable: "2 GB"})
    assert "512m or 2g" in refused.value.fix


def test_negative_cores_are_refused(tmp_path: Path) -> None:
    with pytest.raises(K2Error, match="K2_STREAM_CORES_MAX must be >= 0"):
        Settings.from_env({"K2_HOME": str(tmp_path), "K2_STREAM_CORES_MAX": "-1"})
