"""Ingest quarantine: readings the pipeline rejected, with topic, raw payload, reason and time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ingest_quarantine",
        sa.Column("id", BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("topic", sa.String(1024), nullable=False),
        sa.Column("household_id", sa.String(128)),
        sa.Column("device_id", sa.String(128)),
        sa.Column("reason", sa.String(96), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_quarantine")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_ingest_quarantine_fingerprint")),
    )
    op.create_index(op.f("ix_ingest_quarantine_received_at"), "ingest_quarantine", ["received_at"])
    op.create_index(op.f("ix_ingest_quarantine_reason"), "ingest_quarantine", ["reason"])


def downgrade() -> None:
    op.drop_index(op.f("ix_ingest_quarantine_reason"), table_name="ingest_quarantine")
    op.drop_index(op.f("ix_ingest_quarantine_received_at"), table_name="ingest_quarantine")
    op.drop_table("ingest_quarantine")
