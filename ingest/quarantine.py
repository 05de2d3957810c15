"""Quarantine: every reading the pipeline rejected, with topic, raw payload, reason, detail and time.

Why in the app database: operators need to ask "what was rejected, why, since when" (counts by
reason) and to look at the payload itself; one small table with indexes on time and reason does
that on PostgreSQL and SQLite alike.  Rows carry a fingerprint (topic + payload + reason)
and inserts skip existing fingerprints, so a message re-delivered after a crash (at-least-once)
is quarantined once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hems.stores.appdb.engine import get_engine, resolve_url, write_connection
from hems.stores.appdb.models import IngestQuarantine

TABLE: sa.Table = IngestQuarantine.__table__  # type: ignore[assignment]
CHUNK = 500


def fingerprint(topic: str, payload: bytes, reason: str) -> str:
    """Identity of a rejected reading: the same bytes on the same topic for the same reason."""
    h = hashlib.blake2b(digest_size=20)
    for part in (topic.encode(), payload, reason.encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


class Quarantine:
    """Rejected readings in the ``ingest_quarantine`` table (migrated by ``hems.stores.appdb.migrate``)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)

    def add(self, rejects: pl.DataFrame, source: str = "mqtt") -> int:
        """Insert rejects (pipeline ``REJECT_SCHEMA``); returns how many were new."""
        if rejects.is_empty():
            return 0
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for r in rejects.iter_rows(named=True):
            payload = r["payload"] or b""
            fp = fingerprint(r["topic"] or "", payload, r["reason"])
            if fp in seen:
                continue
            seen.add(fp)
            rows.append(
                {
                    "fingerprint": fp,
                    "received_at": r["received_at"],
                    "source": source[:16],
                    "topic": (r["topic"] or "")[:1024],
                    "household_id": (r["household_id"] or None) and r["household_id"][:128],
                    "device_id": (r["device_id"] or None) and r["device_id"][:128],
                    "reason": r["reason"][:96],
                    "detail": r["detail"],
                    "payload": payload,
                }
            )
        added = 0
        with write_connection(self.url) as conn:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            for start in range(0, len(rows), CHUNK):
                stmt = insert(TABLE).on_conflict_do_nothing(index_elements=["fingerprint"])
                result = conn.execute(stmt, rows[start : start + CHUNK])
                added += max(result.rowcount or 0, 0)
        return added

    def counts_by_reason(self, since: datetime | None = None) -> dict[str, int]:
        """Rejected readings per reason code (received at or after ``since`` when given)."""
        q = sa.select(TABLE.c.reason, sa.func.count()).group_by(TABLE.c.reason)
        if since is not None:
            q = q.where(TABLE.c.received_at >= since)
        with get_engine(self.url).connect() as conn:
            return {str(reason): int(n) for reason, n in conn.execute(q).tuples()}

    def count(self) -> int:
        with get_engine(self.url).connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(TABLE)).scalar_one())

    def recent(self, limit: int = 100, reason: str | None = None) -> pl.DataFrame:
        """The newest rejects (payload included) for inspection."""
        q = sa.select(TABLE).order_by(TABLE.c.received_at.desc(), TABLE.c.id.desc()).limit(limit)
        if reason is not None:
            q = q.where(TABLE.c.reason == reason)
        with get_engine(self.url).connect() as conn:
            rows = [dict(r) for r in conn.execute(q).mappings()]
        return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
