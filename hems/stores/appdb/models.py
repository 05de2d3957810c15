"""App database models (DESIGN §4): users, households, devices, daily usage, incentives.

Portable between PostgreSQL (stack) and SQLite (embedded), so: enums are VARCHAR + CHECK (no
native PostgreSQL enum types to migrate), JSON is JSONB on PostgreSQL and JSON text on SQLite,
and timestamps go through :class:`UtcDateTime` so both return aware UTC datetimes.
Household and device ids are the strings the simulator and the raw store use (``hh-0001``).
The schema itself is created by the Alembic migrations next to this module, never by
``create_all``; a test checks that models and migrations agree.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL; plain INTEGER on SQLite, where only "INTEGER PRIMARY KEY" auto-increments.
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JsonType = sa.JSON().with_variant(JSONB(), "postgresql")
Kwh = sa.Numeric(14, 3, asdecimal=False)
Krw = sa.Numeric(14, 2, asdecimal=False)


class UtcDateTime(sa.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite stores no offset; naive input is taken as UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value if dialect.name == "sqlite" else value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _enum(cls: type[enum.Enum], name: str) -> sa.Enum:
    """VARCHAR + named CHECK of the member *values*, identical on PostgreSQL and SQLite."""
    return sa.Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,  # room for new members without ALTER COLUMN
        values_callable=lambda c: [m.value for m in c],
        validate_strings=True,
    )


class Role(enum.StrEnum):
    resident = "resident"
    analyst = "analyst"
    admin = "admin"


class BuildingType(enum.StrEnum):
    apartment = "apartment"
    detached = "detached"


class HouseholdType(enum.StrEnum):
    single = "single"
    couple = "couple"
    family = "family"
    elderly = "elderly"


class DeviceType(enum.StrEnum):
    smart_meter = "smart_meter"
    smart_plug = "smart_plug"
    solar_inverter = "solar_inverter"
    env_sensor = "env_sensor"


class Protocol(enum.StrEnum):
    mqtt = "mqtt"
    modbus = "modbus"
    http = "http"


class DeviceStatus(enum.StrEnum):
    online = "online"
    offline = "offline"
    unknown = "unknown"


class ProgramKind(enum.StrEnum):
    cashback = "cashback"
    demand_response = "demand_response"
    generic = "generic"


class LedgerEntryType(enum.StrEnum):
    accrual = "accrual"
    redemption = "redemption"
    expiry = "expiry"
    adjustment = "adjustment"


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UtcDateTime(), dict[str, Any]: JsonType}  # noqa: RUF012


def _now() -> sa.FunctionElement[Any]:
    return sa.func.now()


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    full_name: Mapped[str | None] = mapped_column(sa.String(200))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"), default=Role.resident, server_default="resident")
    # AES-256-GCM ciphertext (nonce + tag included); the API encrypts, this layer only stores bytes.
    phone_encrypted: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    address_encrypted: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=_now(), onupdate=_now())


class Household(Base):
    __tablename__ = "households"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        BigIntId, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str | None] = mapped_column(sa.String(200))
    region: Mapped[str | None] = mapped_column(sa.String(100))
    building_type: Mapped[BuildingType | None] = mapped_column(_enum(BuildingType, "building_type"))
    area_m2: Mapped[float | None] = mapped_column(sa.Numeric(8, 2, asdecimal=False))
    residents: Mapped[int | None] = mapped_column(sa.SmallInteger)
    household_type: Mapped[HouseholdType | None] = mapped_column(_enum(HouseholdType, "household_type"))
    timezone: Mapped[str] = mapped_column(sa.String(64), default="Asia/Seoul", server_default="Asia/Seoul")
    has_pv: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    pv_kwp: Mapped[float | None] = mapped_column(sa.Numeric(8, 2, asdecimal=False))
    has_ev: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    electric_heating: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())


class IotDevice(Base):
    __tablename__ = "iot_devices"

    id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    household_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("households.id", ondelete="CASCADE"), index=True
    )
    device_type: Mapped[DeviceType] = mapped_column(_enum(DeviceType, "device_type"))
    manufacturer: Mapped[str | None] = mapped_column(sa.String(100))
    model: Mapped[str | None] = mapped_column(sa.String(100))
    protocol: Mapped[Protocol] = mapped_column(_enum(Protocol, "protocol"), default=Protocol.mqtt)
    status: Mapped[DeviceStatus] = mapped_column(
        _enum(DeviceStatus, "status"), default=DeviceStatus.unknown, server_default="unknown"
    )
    last_seen: Mapped[dt.datetime | None]
    installed_at: Mapped[dt.datetime | None]


class EnergyUsageDaily(Base):
    """One household's local calendar day (built by the pipeline; columns nullable until computed)."""

    __tablename__ = "energy_usage_daily"
    __table_args__ = (sa.UniqueConstraint("household_id", "date"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    household_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("households.id", ondelete="CASCADE")
    )
    date: Mapped[dt.date] = mapped_column(index=True)
    total_consumption_kwh: Mapped[float | None] = mapped_column(Kwh)
    peak_usage_kwh: Mapped[float | None] = mapped_column(Kwh)
    mid_usage_kwh: Mapped[float | None] = mapped_column(Kwh)
    off_peak_usage_kwh: Mapped[float | None] = mapped_column(Kwh)
    solar_generation_kwh: Mapped[float | None] = mapped_column(Kwh)
    grid_consumption_kwh: Mapped[float | None] = mapped_column(Kwh)
    cost_krw: Mapped[float | None] = mapped_column(Krw)
    carbon_emission_kg: Mapped[float | None] = mapped_column(Kwh)
    efficiency_score: Mapped[float | None] = mapped_column(sa.Numeric(5, 2, asdecimal=False))
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=_now(), onupdate=_now())


class RewardProgram(Base):
    __tablename__ = "reward_programs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[ProgramKind] = mapped_column(_enum(ProgramKind, "kind"))
    rules: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=sa.text("'{}'"))
    effective_from: Mapped[dt.date]
    effective_to: Mapped[dt.date | None]


class Reward(Base):
    """One household's result for one program period; re-running a period updates, never duplicates."""

    __tablename__ = "rewards"
    __table_args__ = (sa.UniqueConstraint("household_id", "program_id", "period"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    household_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("households.id", ondelete="CASCADE")
    )
    program_id: Mapped[int] = mapped_column(
        BigIntId, sa.ForeignKey("reward_programs.id", ondelete="RESTRICT"), index=True
    )
    period: Mapped[str] = mapped_column(sa.String(64))  # '2025-07' (monthly) or a DR event id
    baseline_kwh: Mapped[float | None] = mapped_column(Kwh)
    actual_kwh: Mapped[float | None] = mapped_column(Kwh)
    savings_kwh: Mapped[float | None] = mapped_column(Kwh)
    savings_pct: Mapped[float | None] = mapped_column(sa.Numeric(7, 3, asdecimal=False))
    reward_krw: Mapped[float | None] = mapped_column(Krw)
    status: Mapped[str] = mapped_column(sa.String(32), default="pending", server_default="pending")
    reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())


class PointsLedger(Base):
    """Append-only: a correction is a new ``adjustment`` row; ``idempotency_key`` makes retries safe."""

    __tablename__ = "points_ledger"
    __table_args__ = (sa.Index(None, "household_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    household_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("households.id", ondelete="RESTRICT")
    )
    program_id: Mapped[int | None] = mapped_column(
        BigIntId, sa.ForeignKey("reward_programs.id", ondelete="RESTRICT")
    )
    period: Mapped[str | None] = mapped_column(sa.String(64))
    entry_type: Mapped[LedgerEntryType] = mapped_column(_enum(LedgerEntryType, "entry_type"))
    points: Mapped[int] = mapped_column(sa.Integer)
    balance_after: Mapped[int] = mapped_column(sa.Integer)
    idempotency_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())
    note: Mapped[str | None] = mapped_column(sa.Text)


@sa.event.listens_for(PointsLedger, "before_update")
@sa.event.listens_for(PointsLedger, "before_delete")
def _ledger_is_append_only(mapper: Any, connection: Any, target: PointsLedger) -> None:
    raise ValueError("points_ledger is append-only: add an 'adjustment' entry instead")


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        sa.Index(None, "user_id", "read_at"),
        sa.Index(None, "household_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(BigIntId, sa.ForeignKey("users.id", ondelete="CASCADE"))
    household_id: Mapped[str | None] = mapped_column(
        sa.String(64), sa.ForeignKey("households.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(sa.String(64))
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str | None] = mapped_column(sa.Text)
    payload: Mapped[dict[str, Any] | None]
    # e.g. 'device_offline:hh-0001-meter:2025-07-01T10': NULLs never collide, so it is optional.
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())
    read_at: Mapped[dt.datetime | None]


class Challenge(Base):
    __tablename__ = "challenges"
    __table_args__ = (
        sa.CheckConstraint("goal_kwh IS NOT NULL OR goal_pct IS NOT NULL", name="has_goal"),
        sa.CheckConstraint("ends_on >= starts_on", name="dates_ordered"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str | None] = mapped_column(sa.Text)
    goal_kwh: Mapped[float | None] = mapped_column(Kwh)
    goal_pct: Mapped[float | None] = mapped_column(sa.Numeric(7, 3, asdecimal=False))
    starts_on: Mapped[dt.date]
    ends_on: Mapped[dt.date]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())


class ChallengeParticipant(Base):
    __tablename__ = "challenge_participants"

    challenge_id: Mapped[int] = mapped_column(
        BigIntId, sa.ForeignKey("challenges.id", ondelete="CASCADE"), primary_key=True
    )
    household_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("households.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    joined_at: Mapped[dt.datetime] = mapped_column(server_default=_now())


class IngestQuarantine(Base):
    """A reading the ingest pipeline rejected: kept with its raw payload so it can be inspected and
    replayed. ``fingerprint`` (topic, payload, reason) makes re-quarantining a redelivered
    message a no-op, so at-least-once delivery never duplicates quarantine rows."""

    __tablename__ = "ingest_quarantine"
    __table_args__ = (sa.Index(None, "received_at"), sa.Index(None, "reason"))

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64), unique=True)
    received_at: Mapped[dt.datetime]
    source: Mapped[str] = mapped_column(sa.String(16))
    topic: Mapped[str] = mapped_column(sa.String(1024))
    household_id: Mapped[str | None] = mapped_column(sa.String(128))
    device_id: Mapped[str | None] = mapped_column(sa.String(128))
    reason: Mapped[str] = mapped_column(sa.String(96))
    detail: Mapped[str | None] = mapped_column(sa.Text)
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())


class RefreshToken(Base):
    """One issued refresh token, stored only as its SHA-256 (the token itself is never kept).

    Tokens rotate: using one marks it ``used_at`` and issues a successor in the same
    ``family_id``. Presenting a used token again means it was stolen or replayed, so the whole
    family (every session descended from that login) is revoked.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigIntId, sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(sa.String(36), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    issued_at: Mapped[dt.datetime] = mapped_column(server_default=_now())
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class Settlement(Base):
    """Totals of one program period as last settled (``transforms.ledger.settle_month``).

    Re-settling after a late adjustment updates the row and bumps ``revision``; the export's
    file name and SHA-256 are kept so a file handed to the program operator can be checked.
    """

    __tablename__ = "settlements"
    __table_args__ = (sa.UniqueConstraint("program_id", "period"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    program_id: Mapped[int] = mapped_column(
        BigIntId, sa.ForeignKey("reward_programs.id", ondelete="RESTRICT")
    )
    period: Mapped[str] = mapped_column(sa.String(64))
    households: Mapped[int] = mapped_column(sa.Integer)
    households_paid: Mapped[int] = mapped_column(sa.Integer)
    points: Mapped[int] = mapped_column(sa.BigInteger)
    reward_krw: Mapped[float] = mapped_column(sa.Numeric(16, 2, asdecimal=False))
    savings_kwh: Mapped[float] = mapped_column(sa.Numeric(16, 3, asdecimal=False))
    revision: Mapped[int] = mapped_column(sa.Integer, default=1, server_default="1")
    export_file: Mapped[str | None] = mapped_column(sa.String(255))
    export_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    settled_at: Mapped[dt.datetime]


# Settlement and re-run reads select one program period of the ledger.
sa.Index(None, PointsLedger.program_id, PointsLedger.period)
