"""On-disk spool: batches that could not be written while a store was down, replayed in order.

Why: the worker acknowledges a message to the broker only once it is durable.  When the raw
store (or the quarantine database) is unreachable, "durable" means a Parquet file here — written
to a temporary name, fsynced and renamed, so a crash never leaves half a batch.  The spool keeps the
*messages* (topic, payload, arrival time), not the validated rows, so a replay takes exactly the
path a live batch takes; raw writes and quarantine inserts are idempotent, so replaying a batch
that was partly written before a crash never double-counts.

The spool is bounded by bytes and files.  When it is full :meth:`Spool.append` says no, the worker
stops acknowledging, and the broker keeps the messages (its queue is sized for that).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from tenacity import Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential

from hems.errors import ServiceUnavailable
from ingest.pipeline import Message

log = logging.getLogger(__name__)

_NAME = re.compile(r"^batch-(\d{12})\.parquet$")
SPOOL_SCHEMA: dict[str, pl.DataType] = {
    "topic": pl.String(),
    "payload": pl.Binary(),
    "received_at": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class SpoolDepth:
    files: int
    bytes: int


class Spool:
    """A directory of ``batch-<seq>.parquet`` files, oldest first; safe to share between threads."""

    def __init__(self, directory: Path | str, *, max_bytes: int = 1 << 30, max_files: int = 10_000) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_files = max_bytes, max_files
        self._lock = threading.RLock()
        for tmp in self.dir.glob(".tmp-*"):  # a crash mid-write: that batch was never acknowledged
            tmp.unlink(missing_ok=True)
        self._files: dict[Path, int] = {p: p.stat().st_size for p in self._scan()}
        self._seq = max((int(_NAME.match(p.name).group(1)) for p in self._files), default=0)  # type: ignore[union-attr]
        self._full_logged = False

    def _scan(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir() if _NAME.match(p.name))

    # --- state --------------------------------------------------------------------------
    @property
    def lock(self) -> threading.RLock:
        """Hold it to make "is the spool empty? then write directly" atomic with appends."""
        return self._lock

    def depth(self) -> SpoolDepth:
        with self._lock:
            return SpoolDepth(len(self._files), sum(self._files.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)

    def oldest(self) -> Path | None:
        with self._lock:
            return min(self._files, default=None)

    # --- write / read -------------------------------------------------------------------
    def append(self, messages: Sequence[Message]) -> bool:
        """Store a batch durably; False (and one log line) when the spool is full."""
        frame = pl.DataFrame(
            {
                "topic": [m.topic for m in messages],
                "payload": [m.payload for m in messages],
                "received_at": [m.received_at for m in messages],
            },
            schema=SPOOL_SCHEMA,
        )
        with self._lock:
            depth = self.depth()
            if depth.files >= self.max_files or depth.bytes >= self.max_bytes:
                if not self._full_logged:
                    log.error(
                        "ingest spool FULL at %s (%d files, %d bytes; limits %d files, %d bytes): "
                        "no longer acknowledging MQTT messages, the broker keeps them until the raw "
                        "store is back",
                        self.dir,
                        depth.files,
                        depth.bytes,
                        self.max_files,
                        self.max_bytes,
                    )
                    self._full_logged = True
                return False
            self._seq += 1
            final = self.dir / f"batch-{self._seq:012d}.parquet"
            tmp = self.dir / f".tmp-{final.name}"
            frame.write_parquet(tmp, compression="lz4")
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            _fsync_dir(self.dir)
            self._files[final] = final.stat().st_size
            return True

    def read(self, path: Path) -> list[Message]:
        frame = pl.read_parquet(path)
        return [
            Message(t, p, r)
            for t, p, r in zip(frame["topic"], frame["payload"], frame["received_at"], strict=True)
        ]

    def remove(self, path: Path) -> None:
        with self._lock:
            path.unlink(missing_ok=True)
            self._files.pop(path, None)
            if (
                self._full_logged
                and self.depth().bytes < self.max_bytes
                and len(self._files) < self.max_files
            ):
                log.warning("ingest spool has room again at %s", self.dir)
                self._full_logged = False

    def quarantine_file(self, path: Path, why: str) -> None:
        """Move a batch that fails for a reason other than an outage aside (never replayed in a loop)."""
        with self._lock:
            failed = self.dir / "failed"
            failed.mkdir(exist_ok=True)
            os.replace(path, failed / path.name)
            self._files.pop(path, None)
        log.error("spooled batch %s moved to %s: %s", path.name, failed, why)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Replayer:
    """Background thread: replays spooled batches oldest first, backing off while the store is down."""

    def __init__(
        self,
        spool: Spool,
        process: Callable[[list[Message]], object],
        *,
        on_replayed: Callable[[int], None] | None = None,
        max_backoff_s: float = 15.0,
    ) -> None:
        self.spool, self.process, self.on_replayed = spool, process, on_replayed
        self.max_backoff_s = max_backoff_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-spool-replay", daemon=True)

    def start(self) -> Replayer:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def replay_one(self) -> bool:
        """Replay the oldest batch; False when the spool is empty. Raises ServiceUnavailable."""
        path = self.spool.oldest()
        if path is None:
            return False
        try:
            messages = self.spool.read(path)
        except Exception as exc:  # unreadable file: keep it for a person, go on with the rest
            self.spool.quarantine_file(path, f"unreadable: {exc}")
            return True
        try:
            self.process(messages)
        except ServiceUnavailable:
            raise
        except Exception as exc:
            self.spool.quarantine_file(path, f"replay failed: {exc}")
            return True
        self.spool.remove(path)
        if self.on_replayed is not None:
            self.on_replayed(len(messages))
        return True

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def drain(self) -> int:
        """Replay until the spool is empty (or stopped); retries with exponential backoff on outages."""
        done = 0
        retrying = Retrying(
            retry=retry_if_exception_type(ServiceUnavailable),
            wait=wait_exponential(multiplier=0.25, max=self.max_backoff_s),
            stop=stop_when_event_set(self._stop),
            sleep=self._sleep,
            before_sleep=lambda rs: log.warning(
                "spool replay waiting for the store (%s); %d batches spooled",
                rs.outcome.exception() if rs.outcome else "",
                len(self.spool),
            ),
            reraise=True,
        )
        while not self._stop.is_set():
            try:
                more = retrying(self.replay_one)
            except ServiceUnavailable:
                break  # stopped while the store was down
            if not more:
                break
            done += 1
        return done

    def _run(self) -> None:
        while not self._stop.is_set():
            if len(self.spool):
                try:
                    n = self.drain()
                    if n:
                        log.info("spool replayed %d batches", n)
                except Exception:
                    log.exception("spool replay failed; retrying")
                    self._stop.wait(1.0)
            self._wake.wait(1.0)
            self._wake.clear()
