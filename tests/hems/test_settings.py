"""Settings: every value overridable from HEMS_ variables; wrong values give one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hems.settings import Profile, Settings, SettingsError, get_settings


def _fresh(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        return get_settings()
    finally:
        get_settings.cache_clear()


def test_defaults_are_the_embedded_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEMS_PROFILE", raising=False)
    settings = _fresh(monkeypatch)
    assert settings.profile is Profile.local
    assert settings.app_database_url.startswith("sqlite:///")
    assert settings.domain.timezone == "Asia/Seoul"


def test_nested_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _fresh(
        monkeypatch,
        HEMS_PROFILE="stack",
        HEMS_POSTGRES__HOST="db.internal",
        HEMS_POSTGRES__PORT="6543",
        HEMS_POSTGRES__APP_DATABASE="apps",
        HEMS_REDIS__KEY_PREFIX="x:",
        HEMS_INFLUX__DATABASE="tsdb",
        HEMS_MQTT__PORT="8883",
    )
    assert settings.profile is Profile.stack
    assert settings.app_database_url == "postgresql+psycopg://postgres@db.internal:6543/apps"
    assert settings.redis.key_prefix == "x:"
    assert settings.influx.database == "tsdb"
    assert settings.mqtt.port == 8883


def test_wrong_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEMS_PROFILE", "cloud")
    monkeypatch.setenv("HEMS_REDIS__PORT", "70000")
    monkeypatch.setenv("HEMS_DOMAIN__TIMEZONE", "Mars/Olympus")
    get_settings.cache_clear()
    with pytest.raises(SettingsError) as info:
        get_settings()
    get_settings.cache_clear()
    message = str(info.value)
    assert "\n" not in message
    assert "HEMS_PROFILE='cloud'" in message
    assert "HEMS_REDIS__PORT" in message
    assert "HEMS_DOMAIN__TIMEZONE" in message


def test_secrets_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _fresh(
        monkeypatch, HEMS_POSTGRES__PASSWORD="hunter2-secret", HEMS_REDIS__PASSWORD="r3dis-secret"
    )
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in settings.model_dump_json()
    assert "r3dis-secret" not in str(settings.model_dump())
    # but the URL handed to the driver carries it, escaped
    assert "hunter2-secret" in settings.postgres.url("x")


def test_secret_in_a_bad_value_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEMS_POSTGRES__PORT", "not-a-port")
    monkeypatch.setenv("HEMS_INFLUX__TIMEOUT_S", "-1")
    get_settings.cache_clear()
    with pytest.raises(SettingsError) as info:
        get_settings()
    get_settings.cache_clear()
    assert "HEMS_POSTGRES__PORT='not-a-port'" in str(info.value)
    assert "HEMS_INFLUX__TIMEOUT_S" in str(info.value)


def test_cli_prints_one_line_for_a_wrong_value(tmp_path) -> None:
    env = {"HEMS_PROFILE": "nope", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "hems.cli", "config"], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "HEMS_PROFILE='nope'" in lines[0]
    assert "Traceback" not in proc.stderr
