"""Data quality: Great Expectations suites run as Dagster asset checks."""
