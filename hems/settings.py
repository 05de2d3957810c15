"""One settings tree for the whole platform (env prefix ``HEMS_``, nested with ``__``).

Why one tree: every layer (ingest, Dagster, dbt, API, dashboards) must agree on where the
stores are; a single pydantic-settings model validated at start-up turns a wrong value into
one clear error line instead of a traceback deep inside a driver.
"""

from __future__ import annotations

import base64
import binascii
import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Profile(StrEnum):
    local = "local"  # embedded: Parquet + DuckDB + SQLite + in-process cache, no servers
    stack = "stack"  # PostgreSQL, Redis, Mosquitto, InfluxDB


class PostgresSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(5432, ge=1, le=65535)
    user: str = "postgres"
    password: SecretStr = SecretStr("")
    app_database: str = "hems"
    warehouse_database: str = "hems_warehouse"
    dagster_database: str = "hems_dagster"
    mlflow_database: str = "hems_mlflow"

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        auth = quote(self.user, safe="")
        if self.password.get_secret_value():
            auth += ":" + quote(self.password.get_secret_value(), safe="")
        return f"{driver}://{auth}@{self.host}:{self.port}/{database}"


class RedisSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    db: int = Field(0, ge=0, le=15)
    password: SecretStr = SecretStr("")
    key_prefix: str = "hems:"


class MqttSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str = ""
    password: SecretStr = SecretStr("")
    topic_prefix: str = "hems/v1"
    client_id: str = "hems-ingest"
    qos: Literal[0, 1] = 1


class InfluxSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8086, ge=1, le=65535)
    database: str = "hems"
    username: str = ""
    password: SecretStr = SecretStr("")
    timeout_s: float = Field(30.0, gt=0)
    write_batch_size: int = Field(20_000, ge=1)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class ApiSettings(BaseModel):
    """The serving API (``HEMS_API__<NAME>``): address, CORS, tokens, field encryption, rate limit.

    Secrets come only from the environment. In the ``local`` profile an empty ``jwt_secret`` or
    ``field_keys`` is generated once into ``<HEMS_DATA_DIR>/secrets/`` (a developer machine);
    the ``stack`` profile refuses to start without them.
    """

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    cors_origins: list[str] = ["http://localhost:8501", "http://127.0.0.1:8501"]
    #: HS256 signing secret of access tokens (at least 32 characters)
    jwt_secret: SecretStr = SecretStr("")
    jwt_issuer: str = "hems"
    jwt_audience: str = "hems-api"
    access_token_ttl_s: int = Field(900, ge=30, le=86_400)
    refresh_token_ttl_s: int = Field(14 * 86_400, ge=300, le=366 * 86_400)
    #: AES-256-GCM keys of personal fields: ``kid:base64key[,kid:base64key...]``; the first one
    #: encrypts, every one decrypts (rotation: put the new key first, re-encrypt, drop the old)
    field_keys: SecretStr = SecretStr("")
    #: requests per window per user (per client IP when anonymous)
    rate_limit_requests: int = Field(100, ge=1)
    rate_limit_window_s: float = Field(900.0, gt=0)
    #: rate-limit keys in Redis are ``<HEMS_REDIS__KEY_PREFIX><rate_limit_key_prefix><who>``
    rate_limit_key_prefix: str = "ratelimit:"

    @field_validator("jwt_secret")
    @classmethod
    def _long_secret(cls, v: SecretStr) -> SecretStr:
        if v.get_secret_value() and len(v.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (e.g. `openssl rand -base64 48`)")
        return v

    @field_validator("field_keys")
    @classmethod
    def _key_ring(cls, v: SecretStr) -> SecretStr:
        if v.get_secret_value():
            parse_field_keys(v.get_secret_value())  # raises ValueError with the reason
        return v


FIELD_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def parse_field_keys(text: str) -> list[tuple[str, bytes]]:
    """``kid:base64key,...`` as [(kid, 32-byte key)], first = the encrypting key."""
    ring: list[tuple[str, bytes]] = []
    for n, part in enumerate(p.strip() for p in text.split(",")):
        kid, sep, encoded = part.partition(":")
        if not sep or not FIELD_KEY_ID.match(kid):
            raise ValueError(f"entry {n + 1} is not `kid:base64key` with kid of [A-Za-z0-9_-], 1-32 chars")
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=False)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {kid!r} is not base64") from None
        if len(key) != 32:
            raise ValueError(f"key {kid!r} is {len(key)} bytes; AES-256 needs 32 (`openssl rand -base64 32`)")
        if any(k == kid for k, _ in ring):
            raise ValueError(f"key id {kid!r} appears twice")
        ring.append((kid, key))
    return ring


class UiPorts(BaseModel):
    dagster: int = Field(3000, ge=1, le=65535)
    dashboards: int = Field(8501, ge=1, le=65535)
    mlflow: int = Field(5000, ge=1, le=65535)


class DomainSettings(BaseModel):
    timezone: str = "Asia/Seoul"
    carbon_factor_kg_per_kwh: float = Field(0.4173, ge=0)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Asia/Seoul)") from exc
        return v


class IngestSettings(BaseModel):
    """Ingest knobs (``HEMS_INGEST__<NAME>``): batching, validation bounds, spool, shared subscription."""

    #: readings stamped further ahead of their arrival than this are rejected (clock skew allowance)
    max_future_s: float = Field(300.0, ge=0)
    #: readings older than this at arrival are rejected (devices buffer a few days offline, not months)
    max_age_days: float = Field(30.0, gt=0)
    #: messages per batch, and the longest a message waits for its batch to fill
    batch_size: int = Field(5_000, ge=1)
    batch_max_wait_s: float = Field(0.25, gt=0)
    batch_max_bytes: int = Field(8 << 20, ge=1)
    #: bound of the in-memory queue between the network thread and the batcher
    queue_max: int = Field(200_000, ge=1)
    #: spool directory (default: <HEMS_DATA_DIR>/ingest-spool) and its bounds
    spool_dir: str = ""
    spool_max_bytes: int = Field(1 << 30, ge=1)
    spool_max_files: int = Field(10_000, ge=1)
    #: optional MQTT shared-subscription group ($share/<group>/...) so N workers split the load
    shared_group: str = ""
    #: largest accepted HTTP batch (readings)
    http_max_readings: int = Field(10_000, ge=1)


class DemoSettings(BaseModel):
    households: int = Field(20, ge=1, le=100_000)
    days: int = Field(21, ge=1, le=3660)  # three weeks: a demand-response CBL needs 10 weekdays
    seed: int = 42


class Settings(BaseSettings):
    """Every value can be set as ``HEMS_<NAME>`` or ``HEMS_<GROUP>__<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="HEMS_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    profile: Profile = Profile.local
    data_dir: Path = PROJECT_ROOT / "var"
    pipeline_start_date: str = "2024-01-01"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    postgres: PostgresSettings = PostgresSettings()
    redis: RedisSettings = RedisSettings()
    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    api: ApiSettings = ApiSettings()
    ui: UiPorts = UiPorts()
    domain: DomainSettings = DomainSettings()
    demo: DemoSettings = DemoSettings()
    ingest: IngestSettings = IngestSettings()

    @field_validator("pipeline_start_date")
    @classmethod
    def _iso_date(cls, v: str) -> str:
        from datetime import date

        try:
            date.fromisoformat(v)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a date in YYYY-MM-DD form") from exc
        return v

    # --- derived locations (embedded profile) ---
    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse" / "hems.duckdb"

    @property
    def warehouse_snapshot_path(self) -> Path:
        return self.data_dir / "warehouse" / "hems_serving.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster"

    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    @property
    def ml_champions_path(self) -> Path:
        """Champions summary written after each promotion, so readers need not import MLflow."""
        return self.mlflow_dir / "champions.json"

    @property
    def app_database_url(self) -> str:
        if self.profile is Profile.stack:
            return self.postgres.url(self.postgres.app_database)
        return f"sqlite:///{self.data_dir / 'app.sqlite3'}"

    @property
    def mlflow_tracking_uri(self) -> str:
        if self.profile is Profile.stack:
            return self.postgres.url(self.postgres.mlflow_database, driver="postgresql+psycopg")
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"


class SettingsError(RuntimeError):
    """A configuration value is wrong; the message is one line naming the variable."""


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        var = "HEMS_" + "__".join(str(p).upper() for p in err["loc"])
        value = err.get("input")
        shown = "***" if any(s in var for s in ("PASSWORD", "SECRET", "KEY", "TOKEN")) else repr(value)
        parts.append(f"{var}={shown}: {err['msg']}")
    return "invalid configuration: " + "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, validated once per process."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc)) from None
