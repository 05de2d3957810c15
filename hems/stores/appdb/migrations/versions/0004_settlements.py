"""Settlements: totals of one reward-program period, with the export's file name and SHA-256;
an index on points_ledger (program_id, period) for settlement and re-run reads.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "settlements",
        sa.Column("id", BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("program_id", BIGINT_ID, nullable=False),
        sa.Column("period", sa.String(64), nullable=False),
        sa.Column("households", sa.Integer(), nullable=False),
        sa.Column("households_paid", sa.Integer(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("reward_krw", sa.Numeric(16, 2), nullable=False),
        sa.Column("savings_kwh", sa.Numeric(16, 3), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("export_file", sa.String(255)),
        sa.Column("export_sha256", sa.String(64)),
        sa.Column("settled_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlements")),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["reward_programs.id"],
            name=op.f("fk_settlements_program_id_reward_programs"),
            ondelete="RESTRICT",
        ),
        sa.UniqueConstraint("program_id", "period", name=op.f("uq_settlements_program_id_period")),
    )
    op.create_index(op.f("ix_points_ledger_program_id_period"), "points_ledger", ["program_id", "period"])


def downgrade() -> None:
    op.drop_index(op.f("ix_points_ledger_program_id_period"), table_name="points_ledger")
    op.drop_table("settlements")
