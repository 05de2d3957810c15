"""The installed stack is the intended generation: a resolver falling back to ancient releases
(dagster-postgres 0.11, dbt 1.5 — seen with unconstrained resolves) must fail the build."""

from __future__ import annotations

from importlib.metadata import version

import pytest
from packaging.version import Version

EXPECTED = {
    # package: (minimum inclusive, maximum exclusive)
    "dagster": ("1.13", "1.14"),
    "dagster-webserver": ("1.13", "1.14"),
    "dagster-postgres": ("0.29", "0.30"),
    "dagster-dbt": ("0.29", "0.30"),
    "dbt-core": ("1.11", "1.12"),
    "dbt-postgres": ("1.10", "1.12"),
    "dbt-duckdb": ("1.11", "1.12"),
    "polars": ("1.30", "3"),
    "duckdb": ("1.3", "3"),
    "influxdb-client": ("1.48", "2"),
    "paho-mqtt": ("2.1", "3"),
    "pymodbus": ("3.9", "4"),
    "mlflow": ("3.0", "4"),
    "tensorflow-cpu": ("2.20", "2.22"),
    "scikit-learn": ("1.6", "2"),
    "xgboost": ("3.0", "4"),
    "fastapi": ("0.115", "1"),
    "uvicorn": ("0.34", "1"),
    "redis": ("6.0", "9"),
    "streamlit": ("1.45", "2"),
    "great-expectations": ("1.5", "2"),
    "sqlalchemy": ("2.0.40", "3"),
    "alembic": ("1.15", "2"),
    "psycopg": ("3.2", "4"),
    "typer": ("0.15", "1"),
    "rich": ("14", "16"),
    "pydantic-settings": ("2.8", "3"),
}


@pytest.mark.parametrize("package", sorted(EXPECTED))
def test_installed_generation(package: str) -> None:
    low, high = EXPECTED[package]
    installed = Version(version(package))
    assert Version(low) <= installed < Version(high), f"{package} {installed} is outside [{low}, {high})"


def test_full_tensorflow_is_not_installed() -> None:
    """tensorflow-cpu only: the full package drags CUDA wheels onto a machine with no GPU."""
    from importlib.metadata import PackageNotFoundError

    with pytest.raises(PackageNotFoundError):
        version("tensorflow")
