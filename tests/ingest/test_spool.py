"""The spool keeps batches durably in order, refuses when full, and replays once the store is back."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from hems.errors import ServiceUnavailable
from ingest.pipeline import Message
from ingest.spool import Replayer, Spool

AT = datetime(2025, 7, 1, tzinfo=UTC)


def batch(k: int) -> list[Message]:
    return [Message(f"t/{k}", f"payload-{k}-{i}".encode(), AT) for i in range(3)]


def test_append_read_in_order_and_survive_restart(tmp_path) -> None:
    spool = Spool(tmp_path)
    for k in range(3):
        assert spool.append(batch(k))
    (tmp_path / ".tmp-batch-000000000009.parquet").write_bytes(b"half")  # a crash mid-write
    again = Spool(tmp_path)
    assert len(again) == 3 and not list(tmp_path.glob(".tmp-*"))
    path = again.oldest()
    assert path is not None and again.read(path) == batch(0)
    again.remove(path)
    assert again.append(batch(3))
    assert [again.read(p)[0].topic for p in sorted(again._files)] == ["t/1", "t/2", "t/3"]


def test_full_spool_says_no_once(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, max_files=2)
    assert spool.append(batch(0)) and spool.append(batch(1))
    with caplog.at_level(logging.ERROR):
        assert not spool.append(batch(2))
        assert not spool.append(batch(3))
    assert sum("spool FULL" in r.message for r in caplog.records) == 1


def test_replayer_retries_until_the_store_is_back(tmp_path) -> None:
    spool = Spool(tmp_path)
    for k in range(3):
        spool.append(batch(k))
    calls: list[str] = []
    failures = iter([True, True, False, False, False])

    def process(messages: list[Message]) -> None:
        if next(failures):
            raise ServiceUnavailable("InfluxDB", "here", "start it")
        calls.append(messages[0].topic)

    replayer = Replayer(spool, process, max_backoff_s=0.05)
    assert replayer.drain() == 3
    assert calls == ["t/0", "t/1", "t/2"] and len(spool) == 0


def test_a_batch_that_fails_for_another_reason_is_set_aside(tmp_path) -> None:
    spool = Spool(tmp_path)
    spool.append(batch(0))
    spool.append(batch(1))

    def process(messages: list[Message]) -> None:
        if messages[0].topic == "t/0":
            raise ValueError("bad data")

    assert Replayer(spool, process).drain() == 2
    assert len(spool) == 0 and len(list((tmp_path / "failed").iterdir())) == 1
