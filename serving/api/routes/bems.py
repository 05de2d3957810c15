"""BEMS connector (seed port 8009): sync status and triggers (:mod:`serving.bems_sync`).

``GET /bems/sync/status`` (analysts, admins): per data source how far the warehouse is synced
and what is pending, and the marts' last refresh. ``POST /bems/sync`` (admins): land and rebuild
local days in a background ``hems pipeline`` run — ``202`` with the job and its status URL,
``409`` while another sync runs. ``GET /bems/sync/{job_id}``: the job's state and log tail.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from hems.stores.appdb.models import Role
from serving import bems_sync
from serving.deps import (
    CacheDep,
    EngineDep,
    RawStoreDep,
    SettingsDep,
    require_role,
)
from serving.problems import problem
from serving.security.tokens import Principal

router = APIRouter(tags=["BEMS connector"])

_staff = require_role(Role.analyst, Role.admin)
_admin = require_role(Role.admin)
MAX_SYNC_DAYS = 31
JOB_ID_PATTERN = r"^\d{8}T\d{6}-[0-9a-f]{8}$"


class SourceStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    source: str
    origin: str
    target: str
    state: str = Field(description="synced, never_synced or unavailable")
    error: str | None = None


class JobOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "20250716T010203-1a2b3c4d",
                    "state": "running",
                    "start": "2025-07-15",
                    "end": "2025-07-15",
                    "status_url": "/bems/sync/20250716T010203-1a2b3c4d",
                    "created_at": "2025-07-16T01:02:03Z",
                    "finished_at": None,
                    "attempts": 1,
                    "exit_code": None,
                    "error": None,
                    "command": "python -m hems.cli pipeline --start 2025-07-15 --end 2025-07-15",
                    "log_path": "var/bems/logs/20250716T010203-1a2b3c4d.log",
                    "log_tail": "",
                }
            ]
        }
    )

    id: str
    state: str = Field(description="running, succeeded, failed, timed_out or lost")
    start: dt.date
    end: dt.date
    status_url: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    attempts: int = Field(description="runs made (a run blocked by the warehouse write lock is retried)")
    exit_code: int | None
    error: str | None
    command: str
    log_path: str
    log_tail: str = Field(description="the last 4 kB of the run's output")


class SyncStatusOut(BaseModel):
    checked_at: dt.datetime
    sources: list[SourceStatus]
    marts: dict[str, Any] = Field(description="last mart day, households, last refresh (the marts version)")
    running: JobOut | None = Field(description="the sync in progress, if any")
    last_job: JobOut | None = Field(description="the newest sync job")


def _job_out(job: bems_sync.SyncJob) -> JobOut:
    return JobOut(
        id=job.id,
        state=job.state,
        start=job.start,
        end=job.end,
        status_url=f"/bems/sync/{job.id}",
        created_at=job.created_at,
        finished_at=job.finished_at,
        attempts=job.attempts,
        exit_code=job.exit_code,
        error=job.error,
        command=" ".join(["python", *job.command[1:]]),
        log_path=job.log_path,
        log_tail=job.log_tail(),
    )


@router.get(
    "/bems/sync/status",
    response_model=SyncStatusOut,
    summary="How far each data source is synced into the warehouse, and the marts' last refresh",
    responses={403: {"description": "residents"}},
)
def sync_status(
    principal: Annotated[Principal, Depends(_staff)],
    settings: SettingsDep,
    raw: RawStoreDep,
    engine: EngineDep,
    cache: CacheDep,
) -> SyncStatusOut:
    status = bems_sync.sync_status(settings, raw, engine, cache)
    latest = bems_sync.runner_for(settings).latest()
    return SyncStatusOut(
        checked_at=status["checked_at"],
        sources=[SourceStatus.model_validate(s) for s in status["sources"]],
        marts=status["marts"],
        running=_job_out(latest) if latest is not None and latest.state == "running" else None,
        last_job=_job_out(latest) if latest is not None else None,
    )


class SyncIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"start": "2025-07-15"}, {"start": "2025-07-01", "end": "2025-07-07"}]
        },
    )

    start: dt.date = Field(description="first local day to land and rebuild")
    end: dt.date | None = Field(None, description="last local day, inclusive (default: start)")

    @model_validator(mode="after")
    def _range(self) -> SyncIn:
        end = self.end or self.start
        if end < self.start:
            raise ValueError(f"end {end} is before start {self.start}")
        if (end - self.start).days + 1 > MAX_SYNC_DAYS:
            raise ValueError(f"at most {MAX_SYNC_DAYS} days per sync")
        return self


@router.post(
    "/bems/sync",
    response_model=JobOut,
    status_code=202,
    summary="Land local days and rebuild the marts in the background (admins); poll the status URL",
    responses={
        403: {"description": "analysts and residents"},
        409: {"description": "a sync is already running (the problem names its job)"},
        422: {"description": "end before start, more than 31 days, days in the future"},
    },
)
async def trigger_sync(
    request: Request,
    response: Response,
    body: Annotated[SyncIn, Body()],
    principal: Annotated[Principal, Depends(_admin)],
    settings: SettingsDep,
) -> Any:
    end = body.end or body.start
    today = dt.datetime.now(ZoneInfo(settings.domain.timezone)).date()
    if end > today:
        raise HTTPException(
            422, f"end {end} is in the future (today is {today} in {settings.domain.timezone})"
        )
    runner = bems_sync.runner_for(settings)
    try:
        job = await run_in_threadpool(runner.submit, body.start, end, principal.user_id)
    except bems_sync.SyncBusy as exc:
        return problem(
            409, str(exc), title="Sync Already Running", instance=request.url.path, running=exc.running
        )
    response.headers["Location"] = f"/bems/sync/{job.id}"
    return _job_out(job)


@router.get(
    "/bems/sync/{job_id}",
    response_model=JobOut,
    summary="A sync job's state and the tail of its log",
    responses={403: {"description": "residents"}, 404: {"description": "no such job"}},
)
def sync_job(
    job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN, description="the id POST /bems/sync returned")],
    principal: Annotated[Principal, Depends(_staff)],
    settings: SettingsDep,
) -> JobOut:
    job = bems_sync.runner_for(settings).get(job_id)
    if job is None:
        raise HTTPException(404, f"no sync job {job_id!r}")
    return _job_out(job)
