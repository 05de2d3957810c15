"""Register, log in, refresh (rotation and reuse detection), log out; personal fields at rest."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hems.settings import Settings
from hems.stores import appdb
from tests.serving.conftest import PASSWORD

USER = {
    "email": "Jiwoo@Example.kr",
    "password": PASSWORD,
    "full_name": "Kim Jiwoo",
    "phone": "+82 10-1234-5678",
    "address": "Seoul, Mapo-gu, World Cup-ro 1",
}


@pytest.fixture
def client(embedded_api: Settings) -> Iterator[TestClient]:
    from serving.main import create_app

    with TestClient(create_app()) as c:
        yield c


def _login(client: TestClient, email: str = "jiwoo@example.kr", password: str = PASSWORD) -> dict:
    r = client.post("/auth/token", data={"username": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()


def _problem(r, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["detail"]
    return body


def test_register_login_and_personal_fields_encrypted_at_rest(
    client: TestClient, embedded_api: Settings
) -> None:
    r = client.post("/auth/register", json=USER)
    assert r.status_code == 201, r.text
    profile = r.json()
    assert profile["email"] == "jiwoo@example.kr" and profile["role"] == "resident"
    assert (profile["phone"], profile["address"]) == (USER["phone"], USER["address"])

    with appdb.get_engine(embedded_api.app_database_url).connect() as conn:
        row = (
            conn.execute(sa.text("SELECT * FROM users WHERE id = :id"), {"id": profile["id"]})
            .mappings()
            .one()
        )
    assert row["phone_encrypted"].startswith(b"ka:") and b"1234" not in row["phone_encrypted"]
    assert b"Mapo" not in row["address_encrypted"]
    assert row["password_hash"].startswith("$argon2id$")

    tokens = _login(client, "JIWOO@example.kr")  # e-mail is case-insensitive
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    me = client.get("/users/profile", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json()["phone"] == USER["phone"]


def test_register_twice_is_409(client: TestClient) -> None:
    assert client.post("/auth/register", json=USER).status_code == 201
    _problem(client.post("/auth/register", json={**USER, "email": "jiwoo@EXAMPLE.kr"}), 409)


@pytest.mark.parametrize(
    "change",
    [
        {"email": "not-an-email"},
        {"password": "short"},
        {"password": "x" * 129},
        {"phone": "call me"},
        {"full_name": "x" * 201},
    ],
)
def test_register_validation(client: TestClient, change: dict) -> None:
    body = _problem(client.post("/auth/register", json={**USER, **change}), 422)
    assert body["errors"]


@pytest.mark.parametrize(
    ("email", "password"), [("jiwoo@example.kr", "wrong password!"), ("nobody@example.kr", PASSWORD)]
)
def test_bad_login_is_401_without_saying_which(client: TestClient, email: str, password: str) -> None:
    client.post("/auth/register", json=USER)
    r = client.post("/auth/token", data={"username": email, "password": password})
    assert _problem(r, 401)["detail"] == "wrong e-mail or password"
    assert r.headers["www-authenticate"] == "Bearer"


def test_login_needs_form_fields(client: TestClient) -> None:
    _problem(client.post("/auth/token", data={"username": "x@example.kr"}), 422)
    _problem(client.post("/auth/token", json={"username": "x", "password": "y"}), 422)


def test_refresh_rotates_and_reuse_revokes_the_family(client: TestClient) -> None:
    client.post("/auth/register", json=USER)
    first = _login(client)
    second = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (
        client.get(
            "/users/profile", headers={"Authorization": f"Bearer {second['access_token']}"}
        ).status_code
        == 200
    )
    third = client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]}).json()

    # an attacker replays the spent first token: refused, and the live third one dies with it
    replay = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert "already used" in _problem(replay, 401)["detail"]
    assert 'error="invalid_token"' in replay.headers["www-authenticate"]
    assert (
        "revoked"
        in _problem(client.post("/auth/refresh", json={"refresh_token": third["refresh_token"]}), 401)[
            "detail"
        ]
    )

    # another login (another family) is untouched
    other = _login(client)
    assert client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]}).status_code == 200


def test_logout_revokes_the_session(client: TestClient) -> None:
    client.post("/auth/register", json=USER)
    tokens = _login(client)
    rotated = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
    assert client.post("/auth/logout", json={"refresh_token": rotated["refresh_token"]}).status_code == 204
    _problem(client.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]}), 401)
    assert client.post("/auth/logout", json={"refresh_token": rotated["refresh_token"]}).status_code == 204
    assert (
        client.post("/auth/logout", json={"refresh_token": "x" * 43}).status_code == 204
    )  # unknown: same answer


def test_expired_and_unknown_refresh_tokens(client: TestClient, embedded_api: Settings) -> None:
    client.post("/auth/register", json=USER)
    tokens = _login(client)
    with appdb.get_engine(embedded_api.app_database_url).begin() as conn:
        conn.execute(sa.text("UPDATE refresh_tokens SET expires_at = :t"), {"t": dt.datetime(2020, 1, 1)})
    assert (
        "expired"
        in _problem(client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)[
            "detail"
        ]
    )
    assert (
        "unknown" in _problem(client.post("/auth/refresh", json={"refresh_token": "y" * 43}), 401)["detail"]
    )
    _problem(client.post("/auth/refresh", json={"refresh_token": "short"}), 422)


def test_disabled_account_cannot_log_in_or_refresh(client: TestClient, embedded_api: Settings) -> None:
    client.post("/auth/register", json=USER)
    tokens = _login(client)
    with appdb.get_engine(embedded_api.app_database_url).begin() as conn:
        conn.execute(sa.text("UPDATE users SET is_active = false"))
    _problem(client.post("/auth/token", data={"username": USER["email"], "password": PASSWORD}), 401)
    assert (
        "disabled"
        in _problem(client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)[
            "detail"
        ]
    )


def test_refresh_tokens_are_stored_hashed(client: TestClient, embedded_api: Settings) -> None:
    client.post("/auth/register", json=USER)
    tokens = _login(client)
    with appdb.get_engine(embedded_api.app_database_url).connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash FROM refresh_tokens")).scalars().all()
    assert len(stored) == 1 and tokens["refresh_token"] not in stored[0] and len(stored[0]) == 64


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer not.a.token",
        "Basic dXNlcjpwYXNz",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
    ],
)
def test_protected_routes_need_a_valid_token(client: TestClient, header: str | None) -> None:
    r = client.get("/users/profile", headers={"Authorization": header} if header else {})
    _problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
