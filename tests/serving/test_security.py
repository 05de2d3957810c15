"""Security core: access tokens (tampering, expiry, alg none), passwords, secrets, field encryption."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from hems.settings import Profile, Settings, SettingsError
from hems.stores import appdb
from hems.stores.appdb.models import Role
from serving.security import (
    FieldCipher,
    FieldDecryptError,
    InvalidToken,
    create_access_token,
    create_user,
    decode_access_token,
    field_keys,
    hash_password,
    jwt_secret,
    open_user_field,
    reencrypt_personal_fields,
    verify_password,
)
from serving.security.field_crypto import key_id
from tests.serving.conftest import JWT_SECRET, KEY_A, KEY_B, password_hash


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        profile=Profile.local,
        data_dir=tmp_path / "var",
        api={"jwt_secret": JWT_SECRET, "field_keys": KEY_A},
    )


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- access tokens ---------------------------------------------------------------------------


def test_token_round_trip(settings: Settings) -> None:
    token, ttl = create_access_token(7, Role.analyst, settings)
    principal = decode_access_token(token, settings)
    assert (principal.user_id, principal.role, ttl) == (7, Role.analyst, 900)
    assert principal.sees_all_households


def test_tampered_token_refused(settings: Settings) -> None:
    token, _ = create_access_token(7, Role.resident, settings)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"  # privilege escalation attempt, signature kept
    with pytest.raises(InvalidToken, match="Signature verification failed"):
        decode_access_token(f"{header}.{_b64(claims)}.{signature}", settings)
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(InvalidToken):
        decode_access_token(f"{header}.{payload}.{flipped}", settings)


def test_token_signed_with_another_secret_refused(settings: Settings) -> None:
    other = settings.model_copy(
        update={"api": settings.api.model_copy(update={"jwt_secret": SecretStr("y" * 40)})}
    )
    token, _ = create_access_token(7, Role.admin, other)
    with pytest.raises(InvalidToken, match="Signature"):
        decode_access_token(token, settings)


def test_alg_none_refused(settings: Settings) -> None:
    claims = {
        "iss": "hems",
        "aud": "hems-api",
        "sub": "7",
        "role": "admin",
        "typ": "access",
        "iat": int(dt.datetime.now(dt.UTC).timestamp()),
        "exp": int(dt.datetime.now(dt.UTC).timestamp()) + 600,
    }
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    with pytest.raises(InvalidToken, match="alg"):
        decode_access_token(unsigned, settings)
    # also with pyjwt's own encoder for "none"
    with pytest.raises(InvalidToken):
        decode_access_token(jwt.encode(claims, None, algorithm="none"), settings)


def test_other_hmac_algorithm_refused(settings: Settings) -> None:
    token = jwt.encode({"sub": "7", "role": "admin"}, JWT_SECRET, algorithm="HS512")
    with pytest.raises(InvalidToken, match="alg"):
        decode_access_token(token, settings)


def test_expired_token_refused(settings: Settings) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settings.api.access_token_ttl_s + 1)
    token, _ = create_access_token(7, Role.resident, settings, now=long_ago)
    with pytest.raises(InvalidToken, match="expired"):
        decode_access_token(token, settings)


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "someone-else"},
        {"iss": "evil"},
        {"typ": "refresh"},
        {"role": "superuser"},
        {"sub": "not-a-number"},
        {"exp": None},
    ],
)
def test_wrong_claims_refused(settings: Settings, change: dict) -> None:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = {"iss": "hems", "aud": "hems-api", "sub": "7", "role": "admin", "typ": "access", "iat": now}
    claims["exp"] = now + 600
    claims.update(change)
    claims = {k: v for k, v in claims.items() if v is not None}
    with pytest.raises(InvalidToken):
        decode_access_token(jwt.encode(claims, JWT_SECRET, algorithm="HS256"), settings)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x", "é.é.é"])
def test_garbage_refused(settings: Settings, garbage: str) -> None:
    with pytest.raises(InvalidToken):
        decode_access_token(garbage, settings)


# --- passwords -------------------------------------------------------------------------------


def test_password_hash_is_argon2id_and_salted() -> None:
    stored = password_hash()
    assert stored.startswith("$argon2id$")
    assert verify_password("correct horse battery", stored) == (True, None)
    assert verify_password("correct horse batterz", stored)[0] is False
    assert verify_password("anything", None) == (False, None)  # unknown account
    assert verify_password("anything", "not a hash") == (False, None)
    assert hash_password("same") != hash_password("same")


# --- secrets ---------------------------------------------------------------------------------


def test_short_jwt_secret_is_a_settings_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least 32"):
        Settings(api={"jwt_secret": "short"})


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("nokid", "kid:base64key"),
        ("bad kid:" + base64.b64encode(bytes(32)).decode(), "kid:base64key"),
        ("k1:" + base64.b64encode(bytes(16)).decode(), "16 bytes"),
        ("k1:!!!", "base64|bytes"),
        (f"{KEY_A},{KEY_A}", "twice"),
    ],
)
def test_bad_field_keys_are_settings_errors(keys: str, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        Settings(api={"field_keys": keys})


def test_local_profile_generates_secrets_once(tmp_path: Path) -> None:
    local = Settings(profile=Profile.local, data_dir=tmp_path / "var")
    secret = jwt_secret(local)
    ring = field_keys(local)
    assert len(secret) >= 32 and len(ring) == 1 and len(ring[0][1]) == 32
    assert jwt_secret(local) == secret and field_keys(local) == ring  # kept, not regenerated
    path = tmp_path / "var" / "secrets" / "jwt_secret"
    assert path.stat().st_mode & 0o777 == 0o600


def test_stack_profile_refuses_to_run_without_secrets(tmp_path: Path) -> None:
    stack = Settings(profile=Profile.stack, data_dir=tmp_path / "var")
    with pytest.raises(SettingsError, match="HEMS_API__JWT_SECRET is not set"):
        jwt_secret(stack)
    with pytest.raises(SettingsError, match="HEMS_API__FIELD_KEYS is not set"):
        field_keys(stack)
    assert not (tmp_path / "var" / "secrets").exists()


# --- field encryption ------------------------------------------------------------------------


def test_field_encryption_round_trip_and_binding(settings: Settings) -> None:
    cipher = FieldCipher.from_settings(settings)
    sealed = cipher.encrypt("+82 10-1234-5678", "users.phone_encrypted:1")
    assert sealed.startswith(b"ka:") and b"1234" not in sealed
    assert cipher.decrypt(sealed, "users.phone_encrypted:1") == "+82 10-1234-5678"
    assert cipher.encrypt("same", "c") != cipher.encrypt("same", "c")  # random nonce
    with pytest.raises(FieldDecryptError, match="another row"):  # copied to another user's row
        cipher.decrypt(sealed, "users.phone_encrypted:2")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(FieldDecryptError, match="corrupt"):
        cipher.decrypt(tampered, "users.phone_encrypted:1")
    with pytest.raises(FieldDecryptError, match="no key id"):
        cipher.decrypt(b"garbage", "users.phone_encrypted:1")


def test_key_rotation(settings: Settings) -> None:
    """Seal under A; configure B,A: old values open, new ones seal under B; re-encrypt; drop A."""
    url = settings.app_database_url
    appdb.migrate(url)
    engine = appdb.get_engine(url)
    try:
        old = FieldCipher.from_settings(settings)
        ids = [
            create_user(
                engine,
                f"u{i}@example.kr",
                password_hash=password_hash(),
                phone=f"010-0000-000{i}",
                address=f"Seoul {i}" if i % 2 else None,
                cipher=old,
            )
            for i in range(5)
        ]
        both = FieldCipher([*field_keys(_with_keys(settings, KEY_B)), *field_keys(settings)])
        assert both.current_kid == "kb" and both.key_ids == ["kb", "ka"]
        users = sa.table(
            "users", sa.column("id"), sa.column("phone_encrypted"), sa.column("address_encrypted")
        )

        def blobs() -> dict[int, tuple[bytes | None, bytes | None]]:
            with engine.connect() as conn:
                return {
                    r[0]: (r[1], r[2])
                    for r in conn.execute(
                        sa.select(users.c.id, users.c.phone_encrypted, users.c.address_encrypted)
                    )
                }

        assert {key_id(p) for p, _ in blobs().values() if p} == {"ka"}
        assert open_user_field(both, "phone_encrypted", ids[3], blobs()[ids[3]][0]) == "010-0000-0003"

        moved = reencrypt_personal_fields(engine, both, batch_size=2)
        assert moved == 5 + 2  # five phones, two addresses
        assert {key_id(b) for pair in blobs().values() for b in pair if b} == {"kb"}
        assert reencrypt_personal_fields(engine, both) == 0  # idempotent

        only_b = FieldCipher(field_keys(_with_keys(settings, KEY_B)))
        for i, user_id in enumerate(ids):
            phone, address = blobs()[user_id]
            assert open_user_field(only_b, "phone_encrypted", user_id, phone) == f"010-0000-000{i}"
            assert open_user_field(only_b, "address_encrypted", user_id, address) == (
                f"Seoul {i}" if i % 2 else None
            )
        with pytest.raises(FieldDecryptError, match="'kb', which HEMS_API__FIELD_KEYS does not hold"):
            open_user_field(old, "phone_encrypted", ids[0], blobs()[ids[0]][0])
    finally:
        appdb.dispose_engine(url)


def _with_keys(settings: Settings, keys: str) -> Settings:
    return settings.model_copy(
        update={"api": settings.api.model_copy(update={"field_keys": SecretStr(keys)})}
    )
