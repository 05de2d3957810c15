"""Schemathesis against the OpenAPI schema, in-process (ASGI): no input may produce a 5xx.

Runs as an admin (the role that reaches the most code: every household, ingest, creating
households for others) on a seeded embedded profile; the rate limit is lifted for the run.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from hems.settings import Settings
from hems.stores import appdb
from hems.stores.appdb.models import Challenge
from tests.serving.conftest import Account, write_marts
from tests.serving.test_rewards import seed_incentives

MAX_EXAMPLES = 12


@pytest.fixture
def api_schema(embedded_api: Settings, accounts: dict[str, Account], monkeypatch: pytest.MonkeyPatch) -> Any:
    from hems.settings import get_settings
    from serving.main import create_app

    monkeypatch.setenv("HEMS_API__RATE_LIMIT_REQUESTS", "1000000")
    # POST /bems/sync is fuzzed up to the job (validation, 202, 409) without a real pipeline run:
    # that is tests/serving/test_bems.py's job, and would outlive this test in a subprocess
    monkeypatch.setattr("serving.bems_sync.SyncRunner._attempt", lambda self, job: (0, "ok"))
    get_settings.cache_clear()
    today = dt.date.today()
    with appdb.session_scope(embedded_api.app_database_url) as s:
        s.add(
            Challenge(
                code="c", title="c", goal_pct=5.0, starts_on=today, ends_on=today + dt.timedelta(days=3)
            )
        )
    seed_incentives(embedded_api)  # programs, rewards and points for the incentive routes
    write_marts(
        embedded_api,
        households=[
            {"household_id": "hh-1", "region": "Seoul", "building_type": "apartment", "residents": 2}
        ],
        leaderboard=[
            {
                "household_id": "hh-1",
                "week_start": today - dt.timedelta(days=today.weekday()),
                "saved_ratio": 0.1,
            }
        ],
    )
    return schemathesis.openapi.from_asgi("/openapi.json", create_app())


def test_no_server_errors(api_schema: Any, accounts: dict[str, Account]) -> None:
    headers = accounts["admin"].headers
    failures: list[str] = []
    calls: list[int] = []
    succeeded: set[tuple[str, str]] = set()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            # every other case names a seeded household, so the data paths are fuzzed too
            calls.append(1)
            if len(calls) % 2:
                for params in (case.path_parameters, case.query):
                    if params is not None and "household_id" in params:
                        params["household_id"] = "hh-1"
            response = case.call(headers=headers)
            if response.status_code < 300:
                succeeded.add((case.method, case.operation.path))
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                )

        run()
    assert failures == []
    assert len(succeeded) >= 20, sorted(set((o.method.upper(), o.path) for o in operations) - succeeded)
