"""The shipped Mosquitto config renders with its placeholders filled, and overrides replace a
setting's value or fail loudly (a misspelt override must not leave the shipped value in force)."""

from __future__ import annotations

import re

import pytest

from ingest.broker import render_config


def test_renders_the_shipped_settings(tmp_path) -> None:
    text = render_config(tmp_path, 18_831).read_text()
    assert "listener 18831 127.0.0.1" in text
    assert f"persistence_location {tmp_path}/" in text
    assert "${" not in text
    assert re.search(r"^max_queued_messages 1000000$", text, re.MULTILINE)


def test_an_override_replaces_the_value(tmp_path) -> None:
    text = render_config(tmp_path, 18_831, overrides={"max_inflight_messages": "400"}).read_text()
    assert re.findall(r"^max_inflight_messages .*$", text, re.MULTILINE) == ["max_inflight_messages 400"]


def test_an_unknown_override_is_an_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="max_inflight_mesages"):
        render_config(tmp_path, 18_831, overrides={"max_inflight_mesages": "400"})
