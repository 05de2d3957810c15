"""Short-lived JWT access tokens (HS256): who the caller is and their role, checked without I/O.

Only HS256 is accepted when decoding, so ``alg: none`` and algorithm-confusion tokens fail; the
issuer, audience, expiry, subject and token type are all required. Role changes and
deactivation take effect at the next refresh (at most ``access_token_ttl_s`` later), which is
why access tokens are short-lived and refresh tokens are checked against the database.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from dataclasses import dataclass

import jwt

from hems.settings import Settings
from hems.stores.appdb.models import Role
from serving.security.secrets import jwt_secret

ALGORITHM = "HS256"
TOKEN_TYPE = "access"


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or of the wrong kind (the message says which)."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, from a verified access token."""

    user_id: int
    role: Role
    token_id: str

    @property
    def sees_all_households(self) -> bool:
        return self.role in (Role.analyst, Role.admin)


def create_access_token(
    user_id: int, role: Role | str, settings: Settings, *, now: dt.datetime | None = None
) -> tuple[str, int]:
    """(token, lifetime in seconds)."""
    now = now or dt.datetime.now(dt.UTC)
    ttl = settings.api.access_token_ttl_s
    claims = {
        "iss": settings.api.jwt_issuer,
        "aud": settings.api.jwt_audience,
        "sub": str(user_id),
        "role": Role(role).value,
        "typ": TOKEN_TYPE,
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, jwt_secret(settings), algorithm=ALGORITHM), ttl


#: Tokens verified recently: (token, secret, issuer, audience) → (principal, exp). Verifying
#: an HS256 token with PyJWT costs ~0.2 ms, about as much as serving a cached dashboard; the
#: result for the same token string under the same secret never changes except by expiry,
#: which is checked on every use exactly as PyJWT checks it (valid while now < exp).
_VERIFIED_MAX = 10_000
_verified: dict[tuple[str, str, str, str], tuple[Principal, int]] = {}
_verified_lock = threading.Lock()


def decode_access_token(token: str, settings: Settings) -> Principal:
    """The principal of a valid access token, else :class:`InvalidToken` (the message says why)."""
    key = (token, jwt_secret(settings), settings.api.jwt_issuer, settings.api.jwt_audience)
    known = _verified.get(key)
    if known is not None:
        if time.time() < known[1]:
            return known[0]
        with _verified_lock:
            _verified.pop(key, None)
        raise InvalidToken("token expired")
    principal, exp = _verify(token, key[1], settings)
    with _verified_lock:
        if len(_verified) >= _VERIFIED_MAX:  # evict the expired, else start over
            now = time.time()
            for stale in [k for k, (_, e) in _verified.items() if e <= now] or list(_verified):
                del _verified[stale]
        _verified[key] = (principal, exp)
    return principal


def _verify(token: str, secret: str, settings: Settings) -> tuple[Principal, int]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=settings.api.jwt_audience,
            issuer=settings.api.jwt_issuer,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"invalid token: {exc}") from None
    if claims.get("typ") != TOKEN_TYPE:
        raise InvalidToken("invalid token: not an access token")
    try:
        principal = Principal(
            user_id=int(claims["sub"]), role=Role(str(claims.get("role"))), token_id=str(claims.get("jti"))
        )
        return principal, int(claims["exp"])
    except (ValueError, TypeError):
        raise InvalidToken("invalid token: bad subject or role") from None
