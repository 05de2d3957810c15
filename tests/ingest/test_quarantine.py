"""Quarantine on SQLite: rejects stored with reason and payload, counted by reason, never duplicated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hems.settings import Settings
from hems.stores import appdb
from ingest.pipeline import IngestPipeline, Message
from ingest.quarantine import Quarantine
from ingest.simulator.faults import malformed_payloads

NOW = datetime(2025, 7, 1, 12, 5, tzinfo=UTC)


def test_rejects_are_stored_once_and_counted(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    appdb.migrate(url)
    try:
        q = Quarantine(url)
        pipe = IngestPipeline(None, q, settings=Settings(), clock=lambda: NOW)  # type: ignore[arg-type]
        cases = malformed_payloads(
            "hh-1", prefix="hems/v1", ts=NOW, kinds=["negative_power", "empty", "bad_topic"]
        )
        rejects = pipe.prepare([Message(c.topic, c.payload, NOW) for c in cases]).rejects
        assert q.add(rejects) == 3
        assert q.add(rejects) == 0  # a re-delivered batch adds nothing
        assert q.counts_by_reason() == {"out_of_range:power_w": 1, "empty_payload": 1, "bad_topic": 1}
        assert q.counts_by_reason(since=NOW + timedelta(seconds=1)) == {}
        row = q.recent(reason="out_of_range:power_w").row(0, named=True)
        assert row["payload"] == cases[0].payload and row["household_id"] == "hh-1"
        assert "-500" in row["detail"]
    finally:
        appdb.dispose_engine(url)
