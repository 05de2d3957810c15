"""User accounts: create one (register, tests, operators making an analyst/admin) and authenticate."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine, Row

from hems.stores.appdb.models import Role, User
from serving.security.field_crypto import FieldCipher, seal_user_field
from serving.security.passwords import hash_password, verify_password

_users = cast(sa.Table, User.__table__)


class EmailTaken(Exception):
    pass


def normalize_email(email: str) -> str:
    return email.strip().lower()


def create_user(
    engine: Engine,
    email: str,
    password: str | None = None,
    *,
    role: Role = Role.resident,
    full_name: str | None = None,
    phone: str | None = None,
    address: str | None = None,
    cipher: FieldCipher | None = None,
    password_hash: str | None = None,
) -> int:
    """Insert a user (phone/address sealed) and return the id; :class:`EmailTaken` on a duplicate.

    ``password_hash`` lets tests and imports skip the deliberately slow Argon2 step.
    """
    if password_hash is None:
        if password is None:
            raise ValueError("a password or a password_hash is needed")
        password_hash = hash_password(password)
    cipher = cipher or FieldCipher.from_settings()
    try:
        with engine.begin() as conn:
            user_id = int(
                conn.execute(
                    sa.insert(_users)
                    .values(
                        email=normalize_email(email),
                        password_hash=password_hash,
                        full_name=full_name,
                        role=Role(role).value,
                    )
                    .returning(_users.c.id)
                ).scalar_one()
            )
            if phone is not None or address is not None:  # sealing binds to the id, known only now
                conn.execute(
                    sa.update(_users)
                    .where(_users.c.id == user_id)
                    .values(
                        phone_encrypted=seal_user_field(cipher, "phone_encrypted", user_id, phone),
                        address_encrypted=seal_user_field(cipher, "address_encrypted", user_id, address),
                    )
                )
    except sa.exc.IntegrityError:
        raise EmailTaken(email) from None
    return user_id


def authenticate(engine: Engine, email: str, password: str) -> Row | None:
    """The active user with this e-mail and password, else None (same cost either way)."""
    with engine.connect() as conn:
        user = conn.execute(
            sa.select(_users.c.id, _users.c.role, _users.c.password_hash, _users.c.is_active).where(
                _users.c.email == normalize_email(email)
            )
        ).first()
    ok, new_hash = verify_password(password, user.password_hash if user else None)
    if not ok or user is None or not user.is_active:
        return None
    if new_hash:  # parameters were raised since this hash was made: upgrade it in place
        with engine.begin() as conn:
            conn.execute(sa.update(_users).where(_users.c.id == user.id).values(password_hash=new_hash))
    return user
