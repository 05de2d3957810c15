"""Seed schema: users, households, devices, daily usage, incentives, notifications, challenges.

Written by hand and frozen: it does not import the models, so later model edits cannot change
what this revision creates. Enumerations are VARCHAR + CHECK (same on PostgreSQL and SQLite);
every constraint is named (``op.f``) so later batch migrations on SQLite can drop or alter it.

Revision ID: 0001
Revises:
Create Date: 2025-07-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
KWH = sa.Numeric(14, 3)
KRW = sa.Numeric(14, 2)
PCT = sa.Numeric(7, 3)


def _ts(name: str, nullable: bool = False, default_now: bool = True) -> sa.Column:
    return sa.Column(name, TS, nullable=nullable, server_default=sa.func.now() if default_now else None)


def _choice(table: str, column: str, values: Sequence[str]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=op.f(f"ck_{table}_{column}"))


def _hh_fk(table: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["household_id"],
        ["households.id"],
        name=op.f(f"fk_{table}_household_id_households"),
        ondelete=ondelete,
    )


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("full_name", sa.String(200)),
        sa.Column("role", sa.String(32), nullable=False, server_default="resident"),
        sa.Column("phone_encrypted", sa.LargeBinary()),
        sa.Column("address_encrypted", sa.LargeBinary()),
        sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        _choice("users", "role", ["resident", "analyst", "admin"]),
    )

    op.create_table(
        "households",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", BIGINT_ID),
        sa.Column("name", sa.String(200)),
        sa.Column("region", sa.String(100)),
        sa.Column("building_type", sa.String(32)),
        sa.Column("area_m2", sa.Numeric(8, 2)),
        sa.Column("residents", sa.SmallInteger()),
        sa.Column("household_type", sa.String(32)),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="Asia/Seoul"),
        sa.Column("has_pv", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("pv_kwp", sa.Numeric(8, 2)),
        sa.Column("has_ev", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("electric_heating", sa.Boolean(), nullable=False, server_default=sa.false()),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_households")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_households_user_id_users"), ondelete="SET NULL"
        ),
        _choice("households", "building_type", ["apartment", "detached"]),
        _choice("households", "household_type", ["single", "couple", "family", "elderly"]),
    )
    op.create_index(op.f("ix_households_user_id"), "households", ["user_id"])

    op.create_table(
        "iot_devices",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("household_id", sa.String(64), nullable=False),
        sa.Column("device_type", sa.String(32), nullable=False),
        sa.Column("manufacturer", sa.String(100)),
        sa.Column("model", sa.String(100)),
        sa.Column("protocol", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False, server_default="unknown"),
        _ts("last_seen", nullable=True, default_now=False),
        _ts("installed_at", nullable=True, default_now=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_iot_devices")),
        _hh_fk("iot_devices", "CASCADE"),
        _choice("iot_devices", "device_type", ["smart_meter", "smart_plug", "solar_inverter", "env_sensor"]),
        _choice("iot_devices", "protocol", ["mqtt", "modbus", "http"]),
        _choice("iot_devices", "status", ["online", "offline", "unknown"]),
    )
    op.create_index(op.f("ix_iot_devices_household_id"), "iot_devices", ["household_id"])

    op.create_table(
        "energy_usage_daily",
        sa.Column("id", BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("household_id", sa.String(64), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("total_consumption_kwh", KWH),
        sa.Column("peak_usage_kwh", KWH),
        sa.Column("mid_usage_kwh", KWH),
        sa.Column("off_peak_usage_kwh", KWH),
        sa.Column("solar_generation_kwh", KWH),
        sa.Column("grid_consumption_kwh", KWH),
        sa.Column("cost_krw", KRW),
        sa.Column("carbon_emission_kg", KWH),
        sa.Column("efficiency_score", sa.Numeric(5, 2)),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_energy_usage_daily")),
        _hh_fk("energy_usage_daily", "CASCADE"),
        # Also the index for per-household date ranges (leading column household_id).
        sa.UniqueConstraint("household_id", "date", name=op.f("uq_energy_usage_daily_household_id_date")),
    )
    op.create_index(op.f("ix_energy_usage_daily_date"), "energy_usage_daily", ["date"])

    op.create_table(
        "reward_programs",
        sa.Column("id", BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("rules", JSON, nullable=False, server_default=sa.text("'{}'")),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_programs")),
        sa.UniqueConstraint("code", name=op.f("uq_reward_programs_code")),
        _choice("reward_programs", "kind", ["cashback", "demand_response", "generic"]),
    )

    op.create_table(
        "rewards",
        sa.Column("id", BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("household_id", sa.String(64), nullable=False),
        sa.Column("program_id", BIGINT_ID, nullable=False),
        sa.Column("period", sa.String(64), nullable=False),
        sa.Column("baseline_kwh", KWH),
        sa.Column("actual_kwh", KWH),
        sa.Column("savings_kwh", KWH),
        sa.Column("savings_pct", PCT),
        sa.Column("reward_krw", KRW),
        sa.Column("status", sa.String(32), nullable=False, server_default="pending"),
        sa.Column("reason", sa.Text()),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rewards")),
        _hh_fk("rewards", "CASCADE"),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["reward_programs.id"],
            name=op.f("fk_rewards_program_id_reward_programs"),
            ondelete="RESTRICT",
        ),
        sa.UniqueConstraint(
            "household_id", "program_id", "period", name=op.f("uq_rewards_household_id_program_id_period")
        ),
    )
    op.create_index(op.f("ix_rewards_program_id"), "rewards", ["program_id"])

    op.create_table(
        "points_ledger",
        sa.Column("id", BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("household_id", sa.String(64), nullable=False),
        sa.Column("program_id", BIGINT_ID),
        sa.Column("period", sa.String(64)),
        sa.Column("entry_type", sa.String(32), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("balance_after", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        _ts("created_at"),
        sa.Column("note", sa.Text()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_points_ledger")),
        _hh_fk("points_ledger", "RESTRICT"),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["reward_programs.id"],
            name=op.f("fk_points_ledger_program_id_reward_programs"),
            ondelete="RESTRICT",
        ),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_points_ledger_idempotency_key")),
        _choice("points_ledger", "entry_type", ["accrual", "redemption", "expiry", "adjustment"]),
    )
    op.create_index(
        op.f("ix_points_ledger_household_id_created_at"), "points_ledger", ["household_id", "created_at"]
    )

    op.create_table(
        "notifications",
        sa.Column("id", BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("user_id", BIGINT_ID),
        sa.Column("household_id", sa.String(64)),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text()),
        sa.Column("payload", JSON),
        sa.Column("dedupe_key", sa.String(200)),
        _ts("created_at"),
        _ts("read_at", nullable=True, default_now=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notifications_user_id_users"), ondelete="CASCADE"
        ),
        _hh_fk("notifications", "CASCADE"),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notifications_dedupe_key")),
    )
    op.create_index(op.f("ix_notifications_user_id_read_at"), "notifications", ["user_id", "read_at"])
    op.create_index(
        op.f("ix_notifications_household_id_created_at"), "notifications", ["household_id", "created_at"]
    )

    op.create_table(
        "challenges",
        sa.Column("id", BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("goal_kwh", KWH),
        sa.Column("goal_pct", PCT),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_challenges")),
        sa.UniqueConstraint("code", name=op.f("uq_challenges_code")),
        sa.CheckConstraint(
            "goal_kwh IS NOT NULL OR goal_pct IS NOT NULL", name=op.f("ck_challenges_has_goal")
        ),
        sa.CheckConstraint("ends_on >= starts_on", name=op.f("ck_challenges_dates_ordered")),
    )

    op.create_table(
        "challenge_participants",
        sa.Column("challenge_id", BIGINT_ID, nullable=False),
        sa.Column("household_id", sa.String(64), nullable=False),
        _ts("joined_at"),
        sa.PrimaryKeyConstraint("challenge_id", "household_id", name=op.f("pk_challenge_participants")),
        sa.ForeignKeyConstraint(
            ["challenge_id"],
            ["challenges.id"],
            name=op.f("fk_challenge_participants_challenge_id_challenges"),
            ondelete="CASCADE",
        ),
        _hh_fk("challenge_participants", "CASCADE"),
    )
    op.create_index(
        op.f("ix_challenge_participants_household_id"), "challenge_participants", ["household_id"]
    )


def downgrade() -> None:
    for table in (
        "challenge_participants",
        "challenges",
        "notifications",
        "points_ledger",
        "rewards",
        "reward_programs",
        "energy_usage_daily",
        "iot_devices",
        "households",
        "users",
    ):
        op.drop_table(table)
