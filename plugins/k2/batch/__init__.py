"""Bronze -> Silver -> Gold batch processing: intervals, parameters, the Bronze readiness check."""
