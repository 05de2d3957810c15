"""Short-lived JWT access tokens (HS256): who the caller is and their role, checked without I/O.

Only HS256 is accepted when decoding, so ``alg: none`` and algorithm-confusion tokens fail; the
issuer, audience, expiry, subject and token type are all required. Role changes and
deactivation take effect at the next refresh (at most ``access_token_ttl_s`` later), which is
why access tokens are short-lived and refresh tokens are checked against the database.
"""

from __future__ import annotations

import datetime as dt
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


def decode_access_token(token: str, settings: Settings) -> Principal:
    try:
        claims = jwt.decode(
            token,
            jwt_secret(settings),
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
        return Principal(
            user_id=int(claims["sub"]), role=Role(str(claims.get("role"))), token_id=str(claims.get("jti"))
        )
    except (ValueError, TypeError):
        raise InvalidToken("invalid token: bad subject or role") from None
