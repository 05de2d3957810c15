"""Rotating refresh tokens with reuse detection, kept in the app database as SHA-256 hashes.

A refresh token is 256 random bits (opaque, not a JWT): only its hash is stored, so a leaked
table cannot be replayed. Each use marks the token used and issues a successor in the same
family; a used or revoked token presented again revokes the whole family, so a thief and the
victim are both logged out of that session and the victim's next login starts a clean family.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hems.settings import Settings
from hems.stores.appdb.models import RefreshToken, Role, User

_tokens = cast(sa.Table, RefreshToken.__table__)
_users = cast(sa.Table, User.__table__)


class InvalidRefreshToken(Exception):
    """Unknown, expired, revoked or reused (then the family has been revoked)."""


@dataclass(frozen=True)
class Rotated:
    user_id: int
    role: Role
    refresh_token: str
    expires_in: int


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write(engine: Engine) -> Connection:
    # SQLite: BEGIN IMMEDIATE so two rotations of one token serialize instead of both reading "unused"
    return engine.connect().execution_options(sqlite_begin="IMMEDIATE")


def issue(
    conn: Connection, user_id: int, settings: Settings, family_id: str | None = None
) -> tuple[str, int]:
    """Store a new token (a new family unless given) inside the caller's transaction."""
    token = secrets.token_urlsafe(32)
    ttl = settings.api.refresh_token_ttl_s
    now = _now()
    conn.execute(
        sa.insert(_tokens).values(
            user_id=user_id,
            family_id=family_id or str(uuid.uuid4()),
            token_hash=token_hash(token),
            issued_at=now,
            expires_at=now + dt.timedelta(seconds=ttl),
        )
    )
    return token, ttl


def issue_refresh_token(engine: Engine, user_id: int, settings: Settings) -> tuple[str, int]:
    """A new family for a fresh login: (token, lifetime in seconds)."""
    with _write(engine) as conn, conn.begin():
        return issue(conn, user_id, settings)


def rotate_refresh_token(engine: Engine, token: str, settings: Settings) -> Rotated:
    """Spend ``token`` and return its successor; reuse revokes the family and raises."""
    now = _now()
    with _write(engine) as conn:
        with conn.begin():
            row = conn.execute(sa.select(_tokens).where(_tokens.c.token_hash == token_hash(token))).first()
            if row is None:
                raise InvalidRefreshToken("unknown refresh token")
            if row.revoked_at is not None:
                raise InvalidRefreshToken("refresh token revoked")
            reused = row.used_at is not None
            if not reused:
                if row.expires_at <= now:
                    raise InvalidRefreshToken("refresh token expired")
                spent = conn.execute(
                    sa.update(_tokens)
                    .where(
                        _tokens.c.id == row.id, _tokens.c.used_at.is_(None), _tokens.c.revoked_at.is_(None)
                    )
                    .values(used_at=now)
                ).rowcount
                reused = spent == 0  # a concurrent request spent it first
            user = None
            if not reused:
                user = conn.execute(
                    sa.select(_users.c.id, _users.c.role, _users.c.is_active).where(
                        _users.c.id == row.user_id
                    )
                ).first()
                if user is not None and user.is_active:
                    new_token, ttl = issue(conn, row.user_id, settings, family_id=row.family_id)
                    return Rotated(row.user_id, Role(user.role), new_token, ttl)
        # reuse, or the account is gone or disabled: end the whole session family (own transaction)
        with conn.begin():
            _revoke_family(conn, row.family_id, now)
    if reused:
        raise InvalidRefreshToken("refresh token already used: the session has been revoked")
    raise InvalidRefreshToken("account disabled")


def revoke_refresh_token(engine: Engine, token: str) -> bool:
    """Log out: revoke the family of ``token``. False when the token is unknown."""
    with _write(engine) as conn, conn.begin():
        family = conn.execute(
            sa.select(_tokens.c.family_id).where(_tokens.c.token_hash == token_hash(token))
        ).scalar()
        if family is None:
            return False
        _revoke_family(conn, family, _now())
        return True


def revoke_all_for_user(engine: Engine, user_id: int) -> int:
    """Every session of a user (password change, account compromise)."""
    with _write(engine) as conn, conn.begin():
        return conn.execute(
            sa.update(_tokens)
            .where(_tokens.c.user_id == user_id, _tokens.c.revoked_at.is_(None))
            .values(revoked_at=_now())
        ).rowcount


def _revoke_family(conn: Connection, family_id: str, now: dt.datetime) -> None:
    conn.execute(
        sa.update(_tokens)
        .where(_tokens.c.family_id == family_id, _tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
