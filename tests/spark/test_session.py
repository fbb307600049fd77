"""The bare session is what the unit tier promises: UTC, no Iceberg catalog configured."""


def test_bare_session_runs_in_utc(spark) -> None:
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.range(3).count() == 3
