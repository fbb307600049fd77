"""Monitoring: alerts now; metrics, thresholds and incidents with the monitoring issue."""
