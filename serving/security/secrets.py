"""Where the API's secrets come from: the environment, or (``local`` profile only) generated files.

Why generated files for ``local``: a developer's embedded profile should work with no setup, and
encrypted personal fields must stay readable across restarts, so a random key is made once and
kept under ``<HEMS_DATA_DIR>/secrets/`` (mode 0600). The ``stack`` profile never does this: a
missing secret there is a configuration error naming the variable.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path

from hems.settings import Profile, Settings, SettingsError, parse_field_keys

log = logging.getLogger(__name__)


def jwt_secret(settings: Settings) -> str:
    """The HS256 signing secret (``HEMS_API__JWT_SECRET``)."""
    value = settings.api.jwt_secret.get_secret_value()
    if value:
        return value
    return _local_secret(settings, "HEMS_API__JWT_SECRET", "jwt_secret", lambda: secrets.token_urlsafe(48))


def field_keys(settings: Settings) -> list[tuple[str, bytes]]:
    """The AES-256-GCM key ring (``HEMS_API__FIELD_KEYS``), first = the encrypting key."""
    text = settings.api.field_keys.get_secret_value()
    if not text:
        text = _local_secret(
            settings,
            "HEMS_API__FIELD_KEYS",
            "field_keys",
            lambda: "local1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        )
    return _parsed(text)


def check_configured(settings: Settings) -> None:
    """Raise :class:`SettingsError` when the stack profile lacks a secret (called at start-up)."""
    jwt_secret(settings)
    field_keys(settings)


@lru_cache(maxsize=8)
def _parsed(text: str) -> list[tuple[str, bytes]]:
    try:
        return parse_field_keys(text)
    except ValueError as exc:
        raise SettingsError(f"invalid configuration: HEMS_API__FIELD_KEYS=***: {exc}") from None


def _local_secret(settings: Settings, variable: str, name: str, make: object) -> str:
    if settings.profile is not Profile.local:
        raise SettingsError(
            f"invalid configuration: {variable} is not set; the {settings.profile.value} profile "
            "needs it in the environment (see docs/api.md, 'Secrets')"
        )
    path = Path(settings.data_dir) / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            assert callable(make)
            with os.fdopen(fd, "w") as fh:
                fh.write(str(make()))
            log.warning("%s is not set: generated one for the local profile in %s", variable, path)
    value = _read_secret(path)
    if not value:
        raise SettingsError(f"{path} is empty; delete it to generate a new {variable}, or set {variable}")
    return value


_read: dict[Path, tuple[tuple[int, int, int], str]] = {}


def _read_secret(path: Path) -> str:
    """The file's text, read again only when the file changed (a stat, not a read, per request:
    the signing secret is needed for every token checked)."""
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
    known = _read.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    value = path.read_text().strip()
    _read[path] = (stamp, value)
    return value
