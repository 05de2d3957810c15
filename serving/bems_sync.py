"""BEMS connector: how far each data source has been synced, and a one-at-a-time sync trigger.

A sync lands local days from the raw store into the warehouse and rebuilds the marts — the same
work as ``hems pipeline --start D --end D``, run as exactly that command in a **subprocess**:

* serving never imports ``orchestration`` (DESIGN §2), and
* DuckDB allows one writing process per file: the pipeline's writes stay out of the API process,
  which only ever opens the warehouse's read-only serving snapshot.

Outside calls are bounded: the subprocess has a timeout (:data:`SYNC_TIMEOUT_S`, then SIGTERM,
then SIGKILL of its process group), and a run that failed because another process held the
warehouse's write lock is retried with exponential backoff (tenacity, 3 attempts). Status reads
(warehouse snapshot, raw store, app DB) are retried briefly on transient errors; one source
failing is reported on that source, not as a 500.

Jobs are files under ``<HEMS_DATA_DIR>/bems/``: ``jobs/<id>.json`` (state) and
``logs/<id>.log`` (the command's output), so every API worker can answer for every job. One
sync at a time, across workers, by an exclusive ``flock`` on ``bems/sync.lock`` held for the
run; the OS releases it if the process dies, and a job still marked running without the lock
held is reported ``lost``.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tenacity import (
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from hems.contracts import ENERGY_CONSUMPTION
from hems.errors import HemsError
from hems.settings import PROJECT_ROOT, Settings
from hems.stores.cache import Cache, marts_version
from hems.stores.raw_store import RawStore
from hems.stores.warehouse import RAW_READINGS_TABLE, DuckDBWarehouse, get_warehouse

#: the longest one pipeline run may take before it is stopped
SYNC_TIMEOUT_S = 1800.0
#: attempts of a run that failed on the warehouse's write lock, and the backoff between them
LOCK_RETRY_ATTEMPTS = 3
LOCK_RETRY_WAIT_S = (5.0, 60.0)
LOCKED_MARKER = "locked by another writing process"
LOG_TAIL_BYTES = 4000
State = Literal["running", "succeeded", "failed", "timed_out", "lost"]
T = TypeVar("T")


class SyncBusy(RuntimeError):
    """Another sync holds the lock."""

    def __init__(self, running: str | None) -> None:
        self.running = running
        super().__init__(f"a sync is already running (job {running or 'unknown'}); wait for it to finish")


@dataclass
class SyncJob:
    id: str
    start: date
    end: date
    state: State
    requested_by: int
    created_at: datetime
    command: list[str]
    log_path: str
    finished_at: datetime | None = None
    exit_code: int | None = None
    attempts: int = 0
    error: str | None = None
    pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> SyncJob:
        raw = json.loads(text)
        for key in ("start", "end"):
            raw[key] = date.fromisoformat(raw[key])
        for key in ("created_at", "finished_at"):
            raw[key] = datetime.fromisoformat(raw[key]) if raw[key] else None
        return cls(**raw)

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - LOG_TAIL_BYTES))
                return fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


class SyncRunner:
    """Starts ``hems pipeline`` runs in the background, one at a time, and reports on them."""

    def __init__(self, data_dir: Path, timeout_s: float | None = None) -> None:
        self.root = Path(data_dir) / "bems"
        self.timeout_s = SYNC_TIMEOUT_S if timeout_s is None else timeout_s

    @property
    def _lock_path(self) -> Path:
        return self.root / "sync.lock"

    def _job_path(self, job_id: str) -> Path:
        return self.root / "jobs" / f"{job_id}.json"

    def _save(self, job: SyncJob) -> None:
        path = self._job_path(job.id)
        tmp = path.with_name(f".{job.id}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(job.to_json(), encoding="utf-8")
        os.replace(tmp, path)  # readers see the old state or the new one

    def submit(self, start: date, end: date, user_id: int) -> SyncJob:
        """Start a sync of local days ``start..end``; :class:`SyncBusy` when one is running."""
        for sub in ("jobs", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        lock = open(self._lock_path, "a+")  # noqa: SIM115 - held by the worker thread until the run ends
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            running = lock.read().strip() or None
            lock.close()
            raise SyncBusy(running) from None
        job_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        lock.seek(0)
        lock.truncate()
        lock.write(job_id)
        lock.flush()
        command = [
            sys.executable,
            "-m",
            "hems.cli",
            "pipeline",
            "--start",
            start.isoformat(),
            "--end",
            end.isoformat(),
        ]
        job = SyncJob(
            id=job_id,
            start=start,
            end=end,
            state="running",
            requested_by=user_id,
            created_at=datetime.now(UTC),
            command=command,
            log_path=str(self.root / "logs" / f"{job_id}.log"),
        )
        self._save(job)
        threading.Thread(target=self._run, args=(job, lock), name=f"bems-sync-{job_id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> SyncJob | None:
        try:
            job = SyncJob.from_json(self._job_path(job_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if job.state == "running" and not self._lock_held():
            # re-read: the run may have finished between the two reads
            job = SyncJob.from_json(self._job_path(job_id).read_text(encoding="utf-8"))
            if job.state == "running":
                job.state, job.error = "lost", "the API process running this sync stopped before it finished"
        return job

    def latest(self) -> SyncJob | None:
        folder = self.root / "jobs"
        names = sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []
        return self.get(names[-1]) if names else None

    def _lock_held(self) -> bool:
        if not self._lock_path.exists():
            return False
        with open(self._lock_path, "a+") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(probe, fcntl.LOCK_UN)
            return False

    # --- the run ---------------------------------------------------------------------------
    def _run(self, job: SyncJob, lock: IO[str]) -> None:
        try:
            low, high = LOCK_RETRY_WAIT_S
            outcome = Retrying(
                retry=retry_if_result(lambda r: r[1] == "locked"),
                stop=stop_after_attempt(LOCK_RETRY_ATTEMPTS),
                wait=wait_exponential(multiplier=low, max=high),
                retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
            )(self._attempt, job)
            code, why = outcome
            job.exit_code = code
            job.state = "succeeded" if why == "ok" else "timed_out" if why == "timeout" else "failed"
            if job.state != "succeeded":
                job.error = {
                    "timeout": f"stopped after {self.timeout_s:g} s",
                    "locked": "the warehouse stayed locked by another writer",
                }.get(why, f"the pipeline exited with code {code}; see the log")
        except Exception as exc:  # the job must never stay 'running' because of a bug here
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.finished_at = datetime.now(UTC)
            job.pid = None
            self._save(job)
            lock.close()  # releases the flock

    def _attempt(self, job: SyncJob) -> tuple[int | None, str]:
        """One run of the command, output appended to the job's log: (exit code, ok/failed/locked/timeout)."""
        job.attempts += 1
        with open(job.log_path, "ab") as log:
            started = datetime.now(UTC).isoformat()
            log.write(f"--- attempt {job.attempts} at {started}: {' '.join(job.command)}\n".encode())
            log.flush()
            offset = log.tell()
            proc = subprocess.Popen(
                job.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=PROJECT_ROOT,
                env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
                start_new_session=True,  # its own process group, so a timeout stops dbt too
            )
            job.pid = proc.pid
            self._save(job)
            try:
                code: int | None = proc.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                _stop(proc)
                return None, "timeout"
        if code == 0:
            return 0, "ok"
        with open(job.log_path, "rb") as fh:
            fh.seek(offset)
            locked = LOCKED_MARKER in fh.read().decode("utf-8", "replace")
        return code, "locked" if locked else "failed"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


_runners: dict[str, SyncRunner] = {}
_runners_lock = threading.Lock()


def runner_for(settings: Settings) -> SyncRunner:
    """The runner of the settings' data dir (one per process and data dir)."""
    key = str(settings.data_dir)
    with _runners_lock:
        if key not in _runners:
            _runners[key] = SyncRunner(settings.data_dir)
        return _runners[key]


# --------------------------------------------------------------------------- status
def _brief_retry(fn: Callable[[], T]) -> T:
    """Transient read errors (a file being swapped, a dropped connection): 3 tries within ~1 s."""
    import duckdb

    for attempt in Retrying(
        retry=retry_if_exception_type((duckdb.IOException, OSError, sa.exc.OperationalError)),
        stop=stop_after_attempt(3) | stop_after_delay(1.0),
        wait=wait_exponential(multiplier=0.05, max=0.5),
        reraise=True,
    ):
        with attempt:
            return fn()
    raise AssertionError("unreachable")  # pragma: no cover


def _guarded(what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``fn()``, or the reason it failed (one source down does not hide the others)."""
    try:
        return _brief_retry(fn)
    except HemsError as exc:
        return {"state": "unavailable", "error": str(exc)}
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "does not exist" in text or "Catalog Error" in text:
            return {"state": "never_synced", "error": f"{what} not built yet: run a sync"}
        return {"state": "unavailable", "error": f"{type(exc).__name__}: {text[:300]}"}


def version_time(token: str) -> datetime | None:
    """When a cache version token (``<time_ns hex>-<random>``) was made; None for ``"0"``/unknown."""
    head = token.split("-", 1)[0]
    try:
        return datetime.fromtimestamp(int(head, 16) / 1e9, UTC) if token != "0" else None
    except ValueError:
        return None


def sync_status(settings: Settings, raw: RawStore, engine: Engine, cache: Cache) -> dict[str, Any]:
    """Per data source: what the warehouse holds, what the source has that it does not; the marts."""
    warehouse = get_warehouse(settings)
    tz = settings.domain.timezone
    now = datetime.now(UTC)

    # embedded: the API reads only the serving snapshot, which the first marts run publishes
    unpublished = isinstance(warehouse, DuckDBWarehouse) and not warehouse.snapshot_path.exists()

    def readings() -> dict[str, Any]:
        row: dict[str, Any] = {"last_ts": None, "n": 0, "households": 0}
        if not unpublished:
            row = warehouse.query(
                f"SELECT max(ts) AS last_ts, count(*) AS n, count(DISTINCT household_id) AS households "
                f"FROM {RAW_READINGS_TABLE}"
            ).row(0, named=True)
        last = row["last_ts"]
        # nothing landed yet: everything since the pipeline's first partition is pending
        first = datetime.combine(date.fromisoformat(settings.pipeline_start_date), datetime.min.time(), UTC)
        since = last + timedelta(microseconds=1) if last is not None else first
        pending = raw.count_points(ENERGY_CONSUMPTION.name, since, now + timedelta(days=1))
        return {
            "state": "synced" if last is not None else "never_synced",
            "last_landed_ts": last,
            "last_landed_day": last.astimezone(_zone(tz)).date() if last is not None else None,
            "rows": int(row["n"]),
            "households": int(row["households"]),
            "pending_points": pending,
            "pending_since": since,
        }

    def reference(table: str, app_table: str) -> Callable[[], dict[str, Any]]:
        def read() -> dict[str, Any]:
            with engine.connect() as con:
                source = int(con.execute(sa.text(f"SELECT count(*) FROM {app_table}")).scalar_one())
            if unpublished:
                return {"state": "never_synced", "rows": 0, "source_rows": source, "pending": source}
            landed = int(warehouse.query(f"SELECT count(*) AS n FROM raw.{table}")["n"][0])
            return {
                "state": "synced",
                "rows": landed,
                "source_rows": source,
                "pending": max(source - landed, 0),
            }

        return read

    def marts() -> dict[str, Any]:
        if unpublished:
            return {"state": "never_synced", "last_day": None, "households": 0, "last_refresh": None}
        row = warehouse.query(
            "SELECT min(date) AS first_day, max(date) AS last_day, "
            "count(DISTINCT household_id) AS households FROM marts.energy_usage_daily"
        ).row(0, named=True)
        token = marts_version(cache)
        return {
            "state": "built" if row["last_day"] is not None else "empty",
            "first_day": row["first_day"],
            "last_day": row["last_day"],
            "households": int(row["households"]),
            "version": token,
            "last_refresh": version_time(token),
        }

    sources = [
        {"source": "energy_consumption", "origin": f"raw store ({raw.name})", "target": RAW_READINGS_TABLE,
         **_guarded(RAW_READINGS_TABLE, readings)},
        {"source": "households", "origin": "app database households", "target": "raw.households",
         **_guarded("raw.households", reference("households", "households"))},
        {"source": "devices", "origin": "app database iot_devices", "target": "raw.devices",
         **_guarded("raw.devices", reference("devices", "iot_devices"))},
    ]  # fmt: skip
    return {"checked_at": now, "sources": sources, "marts": _guarded("marts.energy_usage_daily", marts)}


def _zone(tz: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(tz)


__all__ = ["SYNC_TIMEOUT_S", "SyncBusy", "SyncJob", "SyncRunner", "runner_for", "sync_status", "version_time"]
