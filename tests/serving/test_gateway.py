"""Gateway middleware: request ids, JSON access logs, Prometheus metrics, readiness, CORS, crashes."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from hems.settings import RedisSettings, Settings, SettingsError, get_settings
from hems.stores.cache import RedisCache
from tests.serving.conftest import Account


@pytest.fixture
def client(embedded_api: Settings, accounts: dict[str, Account]) -> Iterator[TestClient]:
    from serving.main import create_app

    app = create_app()

    @app.get("/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("kaput")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    given = client.get("/health", headers={"X-Request-ID": "app-1234.abc"})
    assert given.headers["x-request-id"] == "app-1234.abc"
    made = client.get("/health").headers["x-request-id"]
    assert len(made) == 32 and made != client.get("/health").headers["x-request-id"]
    for bad in ("x" * 129, "two words", 'a"b', "<script>"):
        replaced = client.get("/health", headers={"X-Request-ID": bad})
        assert replaced.headers["x-request-id"] != bad and len(replaced.headers["x-request-id"]) == 32
    problem = client.get("/households/hh-1", headers={"X-Request-ID": "trace-1"})
    assert problem.status_code == 401 and problem.json()["request_id"] == "trace-1"


def test_access_log_is_one_json_line_without_query(
    client: TestClient, accounts: dict[str, Account], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hems.api.access"):
        client.get(
            "/dashboard/energy",
            params={"household_id": "hh-1", "token": "secret-in-query"},
            headers={**accounts["alice"].headers, "X-Request-ID": "log-1"},
        )
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "hems.api.access"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "log-1" and line["status"] == 200 and line["method"] == "GET"
    assert line["path"] == "/dashboard/energy" and line["route"] == "/dashboard/energy"
    assert line["who"] == f"user:{accounts['alice'].id}" and line["duration_ms"] > 0
    assert "secret-in-query" not in caplog.text


def test_metrics_histogram_per_route_template(client: TestClient, accounts: dict[str, Account]) -> None:
    for hh in ("hh-1", "hh-2"):
        client.get(f"/households/{hh}", headers=accounts["admin"].headers)
    client.get("/no/such/path/123")
    text = client.get("/metrics").text
    assert (
        'hems_api_request_duration_seconds_count{method="GET",route="/households/{household_id}"} 2.0' in text
    )
    assert 'hems_api_requests_total{method="GET",route="/households/{household_id}",status="200"} 2.0' in text
    assert 'route="<unmatched>",status="404"' in text
    assert "hh-1" not in text  # one series per route, not per household
    assert (
        'hems_api_request_duration_seconds_bucket{le="0.025",method="GET",route="/households/{household_id}"}'
        in text
    )


def test_crash_is_a_problem_with_the_request_id(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        r = client.get("/boom", headers={"X-Request-ID": "crash-1"})
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["x-request-id"] == "crash-1"
    assert r.json()["request_id"] == "crash-1" and "kaput" not in r.text  # no internals leak
    assert "kaput" in caplog.text  # but the log has them
    assert 'route="/boom",status="500"' in client.get("/metrics").text


def test_ready_names_the_dependency_that_is_down(client: TestClient) -> None:
    from serving.deps import cache_dep

    assert client.get("/ready").json()["checks"] == {"app_database": "ok", "raw_store": "ok", "cache": "ok"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client.app.dependency_overrides[cache_dep] = lambda: RedisCache(RedisSettings(port=port))  # type: ignore[attr-defined]
    r = client.get("/ready")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["app_database"] == checks["raw_store"] == "ok"
    assert checks["cache"].startswith("down: Redis") and str(port) in checks["cache"]


def test_cors_from_settings(client: TestClient) -> None:
    origin = get_settings().api.cors_origins[0]
    r = client.get("/health", headers={"Origin": origin})
    assert r.headers["access-control-allow-origin"] == origin
    assert "X-Request-ID" in r.headers["access-control-expose-headers"]
    assert (
        "access-control-allow-origin"
        not in client.get("/health", headers={"Origin": "https://evil.example"}).headers
    )
    preflight = client.options(
        "/households", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 200 and preflight.headers.get("x-ratelimit-remaining") is None


def test_openapi_documents_every_route_with_auth(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert (
        spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"]
        == "/auth/token"
    )
    secured = spec["paths"]["/households/{household_id}"]["get"]
    assert secured["security"] == [{"OAuth2PasswordBearer": []}]
    assert "examples" in json.dumps(spec["components"]["schemas"]["HouseholdIn"])
    assert client.get("/docs").status_code == 200


def test_stack_profile_refuses_to_start_without_secrets(
    monkeypatch: pytest.MonkeyPatch, embedded_api: Settings
) -> None:
    from serving.main import create_app

    monkeypatch.setenv("HEMS_PROFILE", "stack")
    monkeypatch.delenv("HEMS_API__JWT_SECRET")
    get_settings.cache_clear()
    with pytest.raises(SettingsError, match="HEMS_API__JWT_SECRET is not set"), TestClient(create_app()):
        pass
