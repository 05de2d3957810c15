"""Password hashing with Argon2id (pwdlib); verifying never reveals whether the account exists."""

from __future__ import annotations

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

#: argon2-cffi defaults (t=3, m=64 MiB, p=4): above OWASP's minimum, ~0.1 s per hash on 2 cores
_hasher = PasswordHash((Argon2Hasher(),))
#: verified against when the e-mail is unknown, so both paths cost the same time
_DUMMY_HASH = _hasher.hash("not a real password: equalizes timing")

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """(matches, new hash when the stored one uses outdated parameters). ``None`` hash: no account."""
    if password_hash is None:
        _hasher.verify(password, _DUMMY_HASH)
        return False, None
    try:
        return _hasher.verify_and_update(password, password_hash)
    except Exception:  # an unparseable stored hash is a failed login, not a 500
        return False, None
