"""`POST /ingest/readings`: a batch of readings from apps or gateways, through the ingest pipeline.

Same validation, normalization, de-duplication and quarantine as MQTT (``ingest.pipeline``), so a
reading is judged the same whichever way it arrives.  Each rejected reading is reported by its
position in the body with its reason code; the valid ones are written.

Who may post: an **admin** (gateways and integrations run under an admin service account) for
any household, and a **resident** for households they own — a reading naming any other
household is rejected by index with reason ``forbidden:household_id`` (not quarantined: it is
not bad data, just not theirs) and the rest of the batch is processed. **Analysts** are
read-only (403). Devices speaking MQTT authenticate at the broker instead (per-device ACLs).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hems.settings import get_settings
from hems.stores.appdb.models import Role
from ingest.device_state import DeviceStateTracker
from ingest.pipeline import IngestPipeline
from ingest.quarantine import Quarantine
from serving.deps import (
    EngineDep,
    RawStoreDep,
    SettingsDep,
    owned_household_ids,
    require_role,
)
from serving.problems import problem
from serving.security import Principal

router = APIRouter(tags=["IoT collector"])

#: body size limit, bytes (a 10,000-reading batch is about 2 MB)
MAX_BODY_BYTES = 8 << 20


class ReadingError(BaseModel):
    index: int
    reason: str
    detail: str | None = None


class IngestResult(BaseModel):
    received: int
    written: int
    rejected: int
    duplicates: int
    unknown_fields: int
    errors: list[ReadingError]


_pipelines: dict[tuple[int, str], IngestPipeline] = {}

FORBIDDEN = "forbidden:household_id"


def _effective_household(item: Any) -> Any:
    """The household_id the pipeline will use: top level wins over ``fields`` (as in prepare)."""
    if not isinstance(item, dict):
        return None
    if "household_id" in item:
        return item["household_id"]
    nested = item.get("fields")
    return nested.get("household_id") if isinstance(nested, dict) else None


def split_by_ownership(items: list[Any], owned: set[str]) -> tuple[list[int], list[int]]:
    """(indexes to process, indexes naming a household the caller does not own). Readings with
    no household_id go to the pipeline, which rejects them with the usual reason."""
    keep: list[int] = []
    forbidden: list[int] = []
    for i, item in enumerate(items):
        hh = _effective_household(item)
        (keep if hh is None or (isinstance(hh, str) and hh in owned) else forbidden).append(i)
    return keep, forbidden


def pipeline_dep(raw: RawStoreDep, settings: SettingsDep) -> IngestPipeline:
    """One pipeline per raw store and app database (built on first use)."""
    key = (id(raw), settings.app_database_url)
    if key not in _pipelines:
        # readings posted here update device state and stream to WebSocket clients like MQTT ones
        tracker = DeviceStateTracker.from_settings(settings)
        _pipelines[key] = IngestPipeline(
            raw, Quarantine(settings.app_database_url), settings=settings, on_valid=tracker.observe
        )
    return _pipelines[key]


@router.post(
    "/ingest/readings",
    response_model=IngestResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["household_id", "device_id", "device_type", "ts"],
                            "description": "a reading: ids, device_type, ts (RFC 3339 with offset or "
                            "epoch ms/s) and fields in canonical units (power_w, energy_import_kwh, ...), "
                            "at the top level or under `fields`",
                        },
                    }
                }
            },
        }
    },
)
async def ingest_readings(
    request: Request,
    pipeline: Annotated[IngestPipeline, Depends(pipeline_dep)],
    principal: Annotated[Principal, Depends(require_role(Role.admin, Role.resident))],
    engine: EngineDep,
) -> Any:
    """Validate and write a JSON array of readings; per-reading errors by index."""
    path = request.url.path
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return problem(413, f"body larger than {MAX_BODY_BYTES} bytes; send smaller batches", instance=path)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return problem(413, f"body larger than {MAX_BODY_BYTES} bytes; send smaller batches", instance=path)
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return problem(422, f"body is not JSON: {exc}", instance=path)
    if not isinstance(items, list):
        return problem(422, "body must be a JSON array of reading objects", instance=path)
    limit = get_settings().ingest.http_max_readings
    if len(items) > limit:
        return problem(413, f"{len(items)} readings; at most {limit} per request", instance=path)
    keep, forbidden = list(range(len(items))), list[int]()
    if principal.role is not Role.admin:
        owned = await run_in_threadpool(owned_household_ids, engine, principal.user_id)
        keep, forbidden = split_by_ownership(items, owned)
    result = await run_in_threadpool(pipeline.process_readings, [items[i] for i in keep], "http")
    errors = [
        ReadingError(index=keep[r["index"]], reason=r["reason"], detail=r["detail"])
        for r in result.rejects.iter_rows(named=True)
    ]
    errors += [
        ReadingError(index=i, reason=FORBIDDEN, detail="not one of your households") for i in forbidden
    ]
    errors.sort(key=lambda e: e.index)
    out = IngestResult(
        received=len(items),
        written=result.written,
        rejected=result.rejected + len(forbidden),
        duplicates=result.stats.duplicates,
        unknown_fields=sum(result.stats.unknown_fields.values()),
        errors=errors,
    )
    return JSONResponse(out.model_dump())
