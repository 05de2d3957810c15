"""AES-256-GCM encryption of personal fields (phone, address) with rotatable keys.

Stored form: ``<kid>:`` + 12-byte random nonce + ciphertext + 16-byte tag. The key id prefix
says which key of ``HEMS_API__FIELD_KEYS`` sealed a value, so keys can rotate: new values are
sealed with the first key, any configured key opens old ones, and
:func:`reencrypt_personal_fields` moves every stored value to the first key before an old key
is removed. The associated data binds a value to its column and user, so a ciphertext copied
into another row or column fails to decrypt instead of showing someone else's phone number.
"""

from __future__ import annotations

import os
from typing import cast

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Engine

from hems.settings import Settings, get_settings
from hems.stores.appdb.models import User
from serving.security.secrets import field_keys

NONCE_BYTES = 12
PERSONAL_FIELDS = ("phone_encrypted", "address_encrypted")
_users = cast(sa.Table, User.__table__)


class FieldDecryptError(Exception):
    """A stored value cannot be opened: unknown key id, or tampered/moved ciphertext."""


class FieldCipher:
    def __init__(self, ring: list[tuple[str, bytes]]) -> None:
        if not ring:
            raise ValueError("at least one key is needed")
        self.current_kid = ring[0][0]
        self._aead = {kid: AESGCM(key) for kid, key in ring}

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> FieldCipher:
        return cls(field_keys(settings or get_settings()))

    @property
    def key_ids(self) -> list[str]:
        return list(self._aead)

    def encrypt(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead[self.current_kid].encrypt(nonce, plaintext.encode(), context.encode())
        return self.current_kid.encode() + b":" + nonce + sealed

    def decrypt(self, blob: bytes, context: str) -> str:
        kid = key_id(blob)
        aead = self._aead.get(kid)
        if aead is None:
            raise FieldDecryptError(
                f"value sealed with key {kid!r}, which HEMS_API__FIELD_KEYS does not hold"
            )
        body = bytes(blob)[len(kid) + 1 :]
        try:
            return aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], context.encode()).decode()
        except (InvalidTag, ValueError):
            raise FieldDecryptError(f"value under key {kid!r} is corrupt or belongs to another row") from None


def key_id(blob: bytes) -> str:
    kid, sep, _ = bytes(blob).partition(b":")
    if not sep:
        raise FieldDecryptError("value has no key id prefix")
    return kid.decode("ascii", errors="replace")


def field_context(column: str, user_id: int) -> str:
    """Associated data of one personal field: table, column and row."""
    return f"users.{column}:{user_id}"


def seal_user_field(cipher: FieldCipher, column: str, user_id: int, value: str | None) -> bytes | None:
    return None if value is None else cipher.encrypt(value, field_context(column, user_id))


def open_user_field(cipher: FieldCipher, column: str, user_id: int, blob: bytes | None) -> str | None:
    return None if blob is None else cipher.decrypt(blob, field_context(column, user_id))


def reencrypt_personal_fields(
    engine: Engine, cipher: FieldCipher | None = None, batch_size: int = 500
) -> int:
    """Re-seal every personal field not under the current key; returns how many values moved.

    Idempotent and restartable (it walks users by id and commits per batch), so it can run
    while the API serves: a value is readable under either key throughout.
    """
    cipher = cipher or FieldCipher.from_settings()
    prefix = (cipher.current_kid + ":").encode()
    moved, last_id = 0, 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(_users.c.id, *(_users.c[c] for c in PERSONAL_FIELDS))
                .where(_users.c.id > last_id)
                .order_by(_users.c.id)
                .limit(batch_size)
            ).all()
        if not rows:
            return moved
        with engine.begin() as conn:
            for row in rows:
                changes: dict[str, bytes] = {}
                for column in PERSONAL_FIELDS:
                    blob = getattr(row, column)
                    if blob is not None and not bytes(blob).startswith(prefix):
                        plain = open_user_field(cipher, column, row.id, blob)
                        changes[column] = cipher.encrypt(cast(str, plain), field_context(column, row.id))
                if changes:
                    # only where the value is still the one read, so a concurrent profile edit wins
                    where = [_users.c.id == row.id, *(_users.c[c] == getattr(row, c) for c in changes)]
                    moved += conn.execute(sa.update(_users).where(*where).values(**changes)).rowcount * len(
                        changes
                    )
        last_id = rows[-1].id
