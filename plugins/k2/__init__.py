"""K2: a crypto market-data lakehouse (Kafka -> Spark -> Iceberg, run by Airflow)."""

__version__ = "0.1.0"
