"""Realtime device data for apps: latest readings, device status, and a live WebSocket stream.

Everything here reads the cache kept by :class:`ingest.device_state.DeviceStateTracker` (fed by
the ingest pipeline and the MQTT status topic) and the live bus it publishes to — never the raw
store — so these endpoints stay cheap however often apps poll.

WebSocket protocol (``/ws/households/{id}/readings``): the server first sends
``{"type": "snapshot", ...}`` (the body of ``GET .../readings/latest``), then each update as
``{"type": "readings", "household_id", "readings": [...]}`` or ``{"type": "status", ...}``.
Close codes: 4401 missing/invalid token, 4404 unknown household (or not the caller's), 1011 live
bus lost. The subscription starts before the snapshot is read, so no update falls between the two.

Auth: the HTTP routes use :func:`serving.deps.household_access`. Browsers cannot set headers on
a WebSocket, so it takes the access token as the subprotocol pair ``["bearer", <token>]``
(preferred: it stays out of URLs and logs; the server answers with subprotocol ``bearer``) or as
the query parameter ``?token=<token>``, and applies the same rule
(:func:`serving.deps.authorize_household`).
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, WebSocket
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketState

from hems.errors import ServiceUnavailable
from ingest.device_state import DeviceStateTracker
from serving.deps import (
    HouseholdAccess,
    SettingsDep,
    app_engine,
    authorize_household,
    principal_from_token,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["IoT collector"])

ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
_ID = re.compile(ID_PATTERN)

CLOSE_UNAUTHORIZED = 4401
CLOSE_UNKNOWN_HOUSEHOLD = 4404
WS_AUTH_SUBPROTOCOL = "bearer"
CLOSE_BUS_LOST = 1011


def tracker_dep(settings: SettingsDep) -> DeviceStateTracker:
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


@router.get(
    "/households/{household_id}/readings/latest",
    response_model=LatestReadings,
    summary="Newest reading per device type and per device",
)
def latest_readings(
    household: HouseholdAccess,
    tracker: Annotated[DeviceStateTracker, Depends(tracker_dep)],
) -> dict[str, Any]:
    return tracker.latest_for_household(household.id)


@router.get(
    "/households/{household_id}/devices/status",
    response_model=list[DeviceStatus],
    summary="Online/offline and last_seen of each device",
)
def devices_status(
    household: HouseholdAccess,
    tracker: Annotated[DeviceStateTracker, Depends(tracker_dep)],
) -> list[dict[str, Any]]:
    return tracker.devices_status(household.id)


@router.websocket("/ws/households/{household_id}/readings")
async def live_readings(
    websocket: WebSocket,
    household_id: str,
    tracker: Annotated[DeviceStateTracker, Depends(tracker_dep)],
    settings: SettingsDep,
) -> None:
    offered = websocket.scope.get("subprotocols") or []
    via_subprotocol = len(offered) >= 2 and offered[0] == WS_AUTH_SUBPROTOCOL
    token = offered[1] if via_subprotocol else websocket.query_params.get("token")
    # Accept first, then close with 44xx: a close before accept reaches browsers as a bare 1006.
    await websocket.accept(subprotocol=WS_AUTH_SUBPROTOCOL if via_subprotocol else None)
    try:
        principal = principal_from_token(token, settings)
    except HTTPException:
        await websocket.close(CLOSE_UNAUTHORIZED, "missing or invalid access token")
        return
    known = len(household_id) <= 64 and _ID.fullmatch(household_id) is not None
    try:
        if not known:
            raise HTTPException(404)
        await run_in_threadpool(authorize_household, app_engine(), principal, household_id)
    except HTTPException:
        await websocket.close(CLOSE_UNKNOWN_HOUSEHOLD, "household not found")
        return
    if tracker.live_bus is None:  # from_settings always sets one; guard for hand-built trackers
        await websocket.close(CLOSE_BUS_LOST, "no live bus configured")
        return
    try:
        async with tracker.live_bus.subscribe(household_id) as subscription:
            snapshot = await run_in_threadpool(tracker.latest_for_household, household_id)
            await websocket.send_json({"type": "snapshot", **snapshot})
            # whichever ends first (bus lost, client gone) ends the other; an anyio task group,
            # not bare asyncio tasks, so a server cancelling this handler cancels both cleanly
            lost: list[ServiceUnavailable] = []

            async def forward() -> None:
                try:
                    await _forward(subscription, websocket)
                except ServiceUnavailable as exc:
                    lost.append(exc)
                finally:
                    group.cancel_scope.cancel()

            async def watch() -> None:
                await _until_disconnect(websocket)
                group.cancel_scope.cancel()

            async with anyio.create_task_group() as group:
                group.start_soon(forward)
                group.start_soon(watch)
            if lost:
                raise lost[0]
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
