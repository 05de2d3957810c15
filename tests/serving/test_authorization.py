"""Authorization matrix: each role × each household-scoped endpoint × own / other / unowned / missing.

Alice (resident) owns hh-1, Bob owns hh-2, hh-3 has no owner, ``nope`` does not exist. A
resident asking for a household that is not theirs gets exactly the 404 of a missing one —
same status, same title, no household data in the body.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from hems.settings import Settings
from hems.stores import appdb
from hems.stores.appdb.models import Challenge
from tests.serving.conftest import Account, write_marts
from tests.serving.test_rewards import reward_rows, seed_incentives
from transforms import ledger

TARGETS = ["hh-1", "hh-2", "hh-3", "nope"]
READ_ENDPOINTS = {
    "dashboard": ("GET", "/dashboard/energy?household_id={hh}"),
    "household": ("GET", "/households/{hh}"),
    "devices": ("GET", "/households/{hh}/devices"),
    "devices_status": ("GET", "/households/{hh}/devices/status"),
    "latest_readings": ("GET", "/households/{hh}/readings/latest"),
    "challenge_progress": ("GET", "/community/challenges/1/progress?household_id={hh}"),
    "rewards": ("GET", "/households/{hh}/rewards"),
    "points": ("GET", "/households/{hh}/points"),
    "points_history": ("GET", "/households/{hh}/points/history"),
    "leaderboard_as": ("GET", "/community/leaderboard?household_id={hh}"),
    "predictions_history": ("GET", "/predictions/history?household_id={hh}"),
    "optimization_tips": ("GET", "/optimization/tips?household_id={hh}"),
}
WRITE_ENDPOINTS = {
    "challenge_join": ("POST", "/community/challenges/2/join?household_id={hh}"),
    "redeem": ("POST", "/households/{hh}/points/redeem"),
}
#: body and headers of write endpoints that need them
WRITE_REQUESTS = {"redeem": {"json": {"points": 1}, "headers": {"Idempotency-Key": "matrix-{role}-{hh}"}}}
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}


@pytest.fixture
def client(embedded_api: Settings, accounts: dict[str, Account]) -> Iterator[TestClient]:
    from serving.main import create_app

    url = embedded_api.app_database_url
    today = dt.date.today()
    with appdb.session_scope(url) as session:
        for code in ("progress", "join"):
            session.add(
                Challenge(
                    code=code,
                    title=code,
                    goal_kwh=100.0,
                    starts_on=today,
                    ends_on=today + dt.timedelta(days=7),
                )
            )
        session.flush()
        session.add_all(
            [appdb.ChallengeParticipant(challenge_id=1, household_id=h) for h in ("hh-1", "hh-2", "hh-3")]
        )
    # every household has points to redeem, and the marts a leaderboard week
    seed_incentives(embedded_api)
    engine = appdb.get_engine(url)
    ledger.record_rewards(
        engine,
        reward_rows(
            [
                {
                    "household_id": h,
                    "period": "2025-09",
                    "points": 100,
                    "reward_krw": 100,
                    "status": "qualified",
                }
                for h in ("hh-1", "hh-2", "hh-3")
            ]
        ),
    )
    write_marts(embedded_api)
    with TestClient(create_app()) as c:
        yield c


def _expected(role: str, target: str, write: bool) -> int:
    if role == "anonymous":
        return 401
    if target == "nope":
        return 404
    if role == "alice":
        return 200 if target == "hh-1" else 404
    if role == "analyst" and write:
        return 403
    return 200


@pytest.mark.parametrize("role", ["anonymous", "alice", "analyst", "admin"])
@pytest.mark.parametrize("endpoint", [*READ_ENDPOINTS, *WRITE_ENDPOINTS])
def test_matrix(client: TestClient, accounts: dict[str, Account], role: str, endpoint: str) -> None:
    write = endpoint in WRITE_ENDPOINTS
    method, template = (WRITE_ENDPOINTS if write else READ_ENDPOINTS)[endpoint]
    headers = {} if role == "anonymous" else accounts[role].headers
    got = {}
    bodies = {}
    extra = WRITE_REQUESTS.get(endpoint, {})
    for target in TARGETS:
        more = {k: v.format(role=role, hh=target) for k, v in extra.get("headers", {}).items()}
        r = client.request(
            method, template.format(hh=target), headers={**headers, **more}, json=extra.get("json")
        )
        got[target] = 200 if r.status_code in (200, 201) else r.status_code
        bodies[target] = r
    assert got == {t: _expected(role, t, write) for t in TARGETS}
    for target, r in bodies.items():
        if got[target] >= 400:
            assert r.headers["content-type"].startswith("application/problem+json")
            assert set(r.json()) <= PROBLEM_KEYS  # a problem, never data
    if role == "alice":  # another's household is indistinguishable from a missing one
        for target in ("hh-2", "hh-3"):
            assert bodies[target].json()["title"] == bodies["nope"].json()["title"] == "Not Found"
            assert bodies[target].json()["detail"] == f"household {target!r} not found"


@pytest.mark.parametrize("role", ["anonymous", "alice", "analyst", "admin"])
def test_websocket_matrix(client: TestClient, accounts: dict[str, Account], role: str) -> None:
    for target in TARGETS:
        expected = _expected(role, target, write=False)
        protocols = [] if role == "anonymous" else ["bearer", accounts[role].token]
        with client.websocket_connect(f"/ws/households/{target}/readings", subprotocols=protocols) as ws:
            if expected == 200:
                assert ws.receive_json()["type"] == "snapshot"
                continue
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == {401: 4401, 404: 4404}[expected], (role, target)


def test_websocket_token_in_query_and_bad_tokens(client: TestClient, accounts: dict[str, Account]) -> None:
    token = accounts["alice"].token
    with client.websocket_connect(f"/ws/households/hh-1/readings?token={token}") as ws:
        assert ws.receive_json()["type"] == "snapshot"
    for path, protocols in [
        (f"/ws/households/hh-1/readings?token={token}x", []),
        ("/ws/households/hh-1/readings", ["bearer", token[:-3] + "abc"]),
        ("/ws/households/hh-1/readings", ["bearer"]),
    ]:
        with (
            client.websocket_connect(path, subprotocols=protocols) as ws,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            ws.receive_json()
        assert closed.value.code == 4401


def test_household_list_is_scoped(client: TestClient, accounts: dict[str, Account]) -> None:
    def ids(who: str) -> list[str]:
        return [h["id"] for h in client.get("/households", headers=accounts[who].headers).json()["items"]]

    assert ids("alice") == ["hh-1"]
    assert ids("bob") == ["hh-2"]
    assert ids("analyst") == ids("admin") == ["hh-1", "hh-2", "hh-3"]


#: AI routes that take the household in a JSON body. The matrix app has no trained models, so a
#: caller who may read the household gets past the scope check to the model: 503 "no champion".
#: Whoever may not gets the 404 of a missing household — the check runs before any model work.
BODY_ENDPOINTS = {
    "predict_energy": ("/predict/energy", {"household_id": "{hh}", "horizon_hours": 24}),
    "anomaly_detect": (
        "/anomaly/detect",
        {"household_id": "{hh}", "start": "2025-07-01", "end": "2025-07-02"},
    ),
}


@pytest.mark.parametrize("role", ["anonymous", "alice", "analyst", "admin"])
@pytest.mark.parametrize("endpoint", list(BODY_ENDPOINTS))
def test_body_scoped_matrix(
    client: TestClient, accounts: dict[str, Account], role: str, endpoint: str
) -> None:
    path, body = BODY_ENDPOINTS[endpoint]
    headers = {} if role == "anonymous" else accounts[role].headers
    got = {}
    for target in TARGETS:
        r = client.post(path, headers=headers, json={k: v.format(hh=target) if isinstance(v, str) else v
                                                     for k, v in body.items()})  # fmt: skip
        got[target] = r.status_code
        assert r.headers["content-type"].startswith("application/problem+json")
        assert set(r.json()) <= PROBLEM_KEYS | {"model"}  # a problem, never data
    reached = {
        t: 503 if _expected(role, t, write=False) == 200 else _expected(role, t, write=False) for t in TARGETS
    }
    assert got == reached
