"""Accounts and sessions: register, OAuth2 password login, refresh-token rotation, logout.

Access tokens are short-lived JWTs; refresh tokens are opaque, single-use and rotate on every
refresh (see :mod:`serving.security.refresh`). Password checks are deliberately slow (Argon2),
so these handlers are plain ``def``: FastAPI runs them in its thread pool, off the event loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict, Field

from serving.api.routes.users import Profile, load_profile
from serving.deps import EngineDep, SettingsDep, unauthorized
from serving.security import (
    EmailTaken,
    InvalidRefreshToken,
    authenticate,
    create_access_token,
    create_user,
    issue_refresh_token,
    revoke_refresh_token,
    rotate_refresh_token,
)
from serving.security.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

router = APIRouter(prefix="/auth", tags=["auth"])

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$"
PHONE_PATTERN = r"^\+?[0-9][0-9 -]{6,19}$"


class Registration(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "jiwoo@example.kr",
                    "password": "correct horse battery",
                    "full_name": "Kim Jiwoo",
                    "phone": "+82 10-1234-5678",
                    "address": "Seoul, Mapo-gu, World Cup-ro 1",
                }
            ]
        }
    )

    email: str = Field(max_length=320, pattern=EMAIL_PATTERN)
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
    full_name: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, pattern=PHONE_PATTERN, description="stored encrypted (AES-256-GCM)")
    address: str | None = Field(None, max_length=500, description="stored encrypted (AES-256-GCM)")


class TokenPair(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
                    "token_type": "bearer",
                    "expires_in": 900,
                    "refresh_token": "q2J9xv0dQ0mP4lF3sQ8bC1nR7tY5uW2eZ6aK8hG0jL4",
                    "refresh_expires_in": 1209600,
                }
            ]
        }
    )

    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="access token lifetime, seconds")
    refresh_token: str
    refresh_expires_in: int = Field(description="refresh token lifetime, seconds")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"refresh_token": "q2J9xv0dQ0mP4lF3sQ8bC1nR7tY5uW2eZ6aK8hG0jL4"}]}
    )

    refresh_token: str = Field(min_length=16, max_length=256)


@router.post(
    "/register",
    status_code=201,
    response_model=Profile,
    summary="Create a resident account",
    responses={409: {"description": "the e-mail is already registered"}},
)
def register(body: Registration, engine: EngineDep) -> Profile:
    """New accounts are residents; analysts and admins are made by an operator."""
    try:
        user_id = create_user(
            engine,
            body.email,
            body.password,
            full_name=body.full_name,
            phone=body.phone,
            address=body.address,
        )
    except EmailTaken:
        raise HTTPException(409, "this e-mail is already registered") from None
    return load_profile(engine, user_id)


@router.post(
    "/token",
    response_model=TokenPair,
    summary="Log in (OAuth2 password flow): e-mail as username, form-encoded",
    responses={401: {"description": "wrong e-mail or password"}},
)
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    engine: EngineDep,
    settings: SettingsDep,
) -> TokenPair:
    if len(form.password) > MAX_PASSWORD_LENGTH or len(form.username) > 320:
        raise unauthorized("wrong e-mail or password", invalid=False)
    user = authenticate(engine, form.username, form.password)
    if user is None:
        raise unauthorized("wrong e-mail or password", invalid=False)
    access, ttl = create_access_token(user.id, user.role, settings)
    refresh, refresh_ttl = issue_refresh_token(engine, user.id, settings)
    return TokenPair(
        access_token=access, expires_in=ttl, refresh_token=refresh, refresh_expires_in=refresh_ttl
    )


@router.post(
    "/refresh",
    response_model=TokenPair,
    summary="Trade a refresh token for a new pair (the old one is spent)",
    responses={401: {"description": "unknown, expired, revoked or reused refresh token"}},
)
def refresh(
    body: RefreshRequest,
    engine: EngineDep,
    settings: SettingsDep,
) -> TokenPair:
    """Presenting an already-spent token revokes its whole session: log in again."""
    try:
        rotated = rotate_refresh_token(engine, body.refresh_token, settings)
    except InvalidRefreshToken as exc:
        raise unauthorized(str(exc)) from None
    access, ttl = create_access_token(rotated.user_id, rotated.role, settings)
    return TokenPair(
        access_token=access,
        expires_in=ttl,
        refresh_token=rotated.refresh_token,
        refresh_expires_in=rotated.expires_in,
    )


@router.post("/logout", status_code=204, summary="End the session of a refresh token")
def logout(body: RefreshRequest, engine: EngineDep) -> Response:
    """Revokes the token and every token rotated from the same login; idempotent. The access
    token stays valid until it expires (``expires_in``): clients drop it."""
    revoke_refresh_token(engine, body.refresh_token)
    return Response(status_code=204)
