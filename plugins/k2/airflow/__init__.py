"""Airflow adapters over the K2 library: operators, notifiers and the local Airflow services."""
