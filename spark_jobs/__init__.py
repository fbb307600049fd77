"""Spark entry points (one per job) on top of pure DataFrame -> DataFrame transforms."""
