"""Realtime device data for apps: latest readings, device status, and a live WebSocket stream.

Everything here reads the cache kept by :class:`ingest.device_state.DeviceStateTracker` (fed by
the ingest pipeline and the MQTT status topic) and the live bus it publishes to — never the raw
store — so these endpoints stay cheap however often apps poll.

WebSocket protocol (``/ws/households/{id}/readings``): the server first sends
``{"type": "snapshot", ...}`` (the body of ``GET .../readings/latest``), then each update as
``{"type": "readings", "household_id", "readings": [...]}`` or ``{"type": "status", ...}``.
Close codes: 4404 unknown household, 1011 live bus lost. The subscription starts before the
snapshot is read, so no update falls between the two.

Auth: none yet. JWT and "a resident sees only their households" come with the API issue; these
routes must then check the household against the token (the WebSocket via a token query
parameter or the first message, since browsers cannot set headers on WebSockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, WebSocket
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketState

from hems.errors import ServiceUnavailable
from hems.settings import Settings
from ingest.device_state import DeviceStateTracker
from serving.deps import settings_dep

log = logging.getLogger(__name__)

router = APIRouter(tags=["IoT collector"])

ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
_ID = re.compile(ID_PATTERN)
HouseholdId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]

CLOSE_UNKNOWN_HOUSEHOLD = 4404
CLOSE_BUS_LOST = 1011


def tracker_dep(settings: Annotated[Settings, Depends(settings_dep)]) -> DeviceStateTracker:
    """Cheap to build: the cache and the live bus are process-wide (their factories cache them)."""
    return DeviceStateTracker.from_settings(settings)


class DeviceReading(BaseModel):
    device_id: str
    device_type: str | None
    status: str
    last_seen: str | None
    reading: dict[str, Any] | None


class LatestReadings(BaseModel):
    household_id: str
    as_of: str | None
    by_type: dict[str, dict[str, Any]]
    devices: list[DeviceReading]


class DeviceStatus(BaseModel):
    device_id: str
    device_type: str | None
    status: str
    last_seen: str | None
    offline_since: str | None
    registered: bool


def _require_household(tracker: DeviceStateTracker, household_id: str) -> None:
    if not tracker.household_exists(household_id):
        raise HTTPException(404, f"household {household_id!r} not found")


@router.get(
    "/households/{household_id}/readings/latest",
    response_model=LatestReadings,
    summary="Newest reading per device type and per device",
)
def latest_readings(
    household_id: HouseholdId, tracker: Annotated[DeviceStateTracker, Depends(tracker_dep)]
) -> dict[str, Any]:
    _require_household(tracker, household_id)
    return tracker.latest_for_household(household_id)


@router.get(
    "/households/{household_id}/devices/status",
    response_model=list[DeviceStatus],
    summary="Online/offline and last_seen of each device",
)
def devices_status(
    household_id: HouseholdId, tracker: Annotated[DeviceStateTracker, Depends(tracker_dep)]
) -> list[dict[str, Any]]:
    _require_household(tracker, household_id)
    return tracker.devices_status(household_id)


@router.websocket("/ws/households/{household_id}/readings")
async def live_readings(
    websocket: WebSocket, household_id: str, tracker: Annotated[DeviceStateTracker, Depends(tracker_dep)]
) -> None:
    # Accept first, then close with 4404: a close before accept reaches browsers as a bare 1006.
    await websocket.accept()
    known = len(household_id) <= 64 and _ID.fullmatch(household_id) is not None
    if not known or not await run_in_threadpool(tracker.household_exists, household_id):
        await websocket.close(CLOSE_UNKNOWN_HOUSEHOLD, "household not found")
        return
    if tracker.live_bus is None:  # from_settings always sets one; guard for hand-built trackers
        await websocket.close(CLOSE_BUS_LOST, "no live bus configured")
        return
    try:
        async with tracker.live_bus.subscribe(household_id) as subscription:
            snapshot = await run_in_threadpool(tracker.latest_for_household, household_id)
            await websocket.send_json({"type": "snapshot", **snapshot})
            forward = asyncio.create_task(_forward(subscription, websocket))
            watch = asyncio.create_task(_until_disconnect(websocket))
            done, pending = await asyncio.wait({forward, watch}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            error = forward.exception() if forward in done else None
            if isinstance(error, ServiceUnavailable):
                raise error
    except ServiceUnavailable as exc:
        log.warning("live stream of %s ended: %s", household_id, exc)
        await _close(websocket, CLOSE_BUS_LOST, "live bus unavailable")
        return
    await _close(websocket, 1000, "")


async def _forward(subscription: Any, websocket: WebSocket) -> None:
    async for payload in subscription:
        await websocket.send_json(payload)


async def _until_disconnect(websocket: WebSocket) -> None:
    """Apps send nothing we need; reading is how a disconnect is noticed (then we unsubscribe)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state is WebSocketState.CONNECTED and (
        websocket.client_state is WebSocketState.CONNECTED
    ):
        with contextlib.suppress(RuntimeError):
            await websocket.close(code, reason)
