"""API latency under 64 concurrent connections: dashboard (cached, uncached), leaderboard, bare route.

Usage:
    python benchmarks/api_latency.py [--profile stack|local] [--workers 2] [--duration 10]
                                     [--rounds 2] [--connections 64] [--threads 1] [--data-dir DIR]

The load generator is ``wrk`` (C, epoll; ``apt-get install wrk``): ``--connections`` keep-alive
connections driven by ``--threads`` threads, each connection sending its next request as soon as
the previous answer arrived (closed loop), for ``--duration`` seconds per endpoint. A small Lua
script picks each request's URL (the cached dashboard and the leaderboard cycle over five
households; the uncached dashboard changes its date range on every request), counts statuses and
``X-Cache`` answers, and prints wrk's latency percentiles as JSON from its ``done()`` hook.

Server: uvicorn (uvloop + httptools, as ``hems serve``) with ``--workers`` processes serving the
HEMS app and, in the same processes and run, a bare Starlette JSON route at ``/bare`` (the
reference: no middleware, no auth, no database) — an ASGI dispatcher in front picks one by path.
Both get the same workers, so the ratio compares the app with the framework floor.

Profiles (see docs/api.md, "Benchmark"):

- ``stack`` (default): what runs with more than one worker — PostgreSQL app DB and warehouse,
  Redis cache and Redis rate limiter shared by the workers, InfluxDB raw store. The demo fleet is
  built once in the embedded profile (``python -m hems.cli demo --no-serve --households 20
  --days 14`` into ``--data-dir``) and copied into throwaway PostgreSQL databases, a throwaway
  InfluxDB database and a throwaway Redis key prefix, all removed at the end.
- ``local``: the embedded profile (SQLite, DuckDB, in-process cache and limiter). Its cache and
  limiter live in one process, so it runs one worker (``--workers`` must be 1).

The rate limit is raised for the run with ``HEMS_API__RATE_LIMIT_REQUESTS`` (every request still
goes through the limiter: one Redis script call in ``stack``).

Endpoints, one after another (after a short warm-up that also fills the caches):

- ``bare``: GET /bare
- ``dashboard_cached``: GET /dashboard/energy?household_id=… (five households of one resident,
  each computed once before timing, so timed requests are cache hits — checked: at least 99 %; two
  of the five have no similar homes, and such degraded answers are kept only a minute)
- ``dashboard_uncached``: the same with a date range that differs on every request (each one
  misses the cache: app DB history + warehouse comparison; today's part is cached a minute)
- ``leaderboard``: GET /community/leaderboard?household_id=…&scope=region

The whole sequence runs ``--rounds`` times (interleaved, so load from other work on the machine
falls on every endpoint alike); an endpoint's req/s is over all its rounds, its latency
percentiles are its worst round's. ``server_cpu_us_per_request``: user + system CPU of every
server process (``/proc``) per request — the figure least disturbed by other work on the machine.
``server_p50_ms``/``server_p99_ms``: exact, from the API's JSON access log (every worker logs
``duration_ms`` of each request; the lines in each phase's time window are taken).
``server_p99_le_ms``: the API's own view (its ``/metrics`` latency histogram, diffed around the
phase: the upper bound of the bucket holding the 99th percentile), i.e. without the client. With
several workers it is the histogram of the worker that the scrape connection is bound to (a
keep-alive connection stays with one worker), a sample of about 1/N of the requests (left out
when the two scrapes of a phase came from different workers). ``access_log_lines``: the JSON
lines the workers wrote (one per request: the log is on, as in production, written by a thread).

stdout: one JSON result line; stderr: a table. Exit status 1 when a target is missed
(p99 ≤ 25 ms cached, cached throughput ≥ 50 % of the bare route).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOUSEHOLDS = [f"hh-{i:05d}" for i in range(1, 6)]  # the demo's ids; the benchmark resident owns these
P99_TARGET_MS = 25.0
THROUGHPUT_TARGET = 0.5
BENCH_EMAIL = "bench-resident@example.kr"
WRK_MISSING = "wrk is not installed: `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`"


# --- the server side (imported by uvicorn in the server processes) ----------------------------


def app_factory() -> Any:
    """The HEMS app and the bare reference route in one ASGI app (``uvicorn --factory``)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from serving.main import create_app

    async def bare_route(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "household_id": "hh-00001", "kwh": 12.5})

    bare = Starlette(routes=[Route("/bare", bare_route)])
    hems = create_app()

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/bare":
            await bare(scope, receive, send)
        else:
            await hems(scope, receive, send)

    return dispatch


# --- the demo data -----------------------------------------------------------------------------


def ensure_demo(data_dir: Path) -> None:
    """The embedded demo fleet in ``data_dir`` (built once; later runs reuse it)."""
    if (data_dir / "demo.json").exists():
        return
    print(f"building the demo fleet in {data_dir} (a few minutes) ...", file=sys.stderr)
    env = {**os.environ, "HEMS_PROFILE": "local", "HEMS_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-m", "hems.cli", "demo", "--no-serve", "--households", "20", "--days", "14"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=sys.stderr,
    )


def make_resident() -> str:
    """A resident owning HOUSEHOLDS in the current settings' app DB; returns an access token."""
    import sqlalchemy as sa

    from hems.settings import get_settings
    from hems.stores import appdb
    from hems.stores.appdb.models import Role
    from serving.security import create_access_token, create_user, hash_password

    settings = get_settings()
    engine = appdb.get_engine(settings.app_database_url)
    with engine.connect() as conn:
        user_id = conn.execute(sa.text("SELECT id FROM users WHERE email = :e"), {"e": BENCH_EMAIL}).scalar()
    if user_id is None:
        user_id = create_user(
            engine, BENCH_EMAIL, role=Role.resident, password_hash=hash_password("bench password 1")
        )
    appdb.upsert_households(
        [{"id": h, "user_id": user_id} for h in HOUSEHOLDS], url=settings.app_database_url
    )
    return create_access_token(int(user_id), Role.resident, settings)[0]


def demo_span() -> tuple[dt.date, dt.date]:
    from hems.stores.warehouse import get_warehouse

    frame = get_warehouse().query("SELECT min(date) AS lo, max(date) AS hi FROM marts.energy_usage_daily")
    lo, hi = frame["lo"][0], frame["hi"][0]
    return (lo if isinstance(lo, dt.date) else dt.date.fromisoformat(str(lo))), (
        hi if isinstance(hi, dt.date) else dt.date.fromisoformat(str(hi))
    )


class StackCopy:
    """The embedded demo copied into throwaway stack stores (PostgreSQL app DB and warehouse,
    InfluxDB database, Redis key prefix); :meth:`drop` removes them all."""

    MART_TABLES = ("dim_households", "energy_usage_daily", "fct_community_leaderboard")
    APP_TABLES = ("households", "energy_usage_daily")  # the rows the timed routes read

    def __init__(self, data_dir: Path) -> None:
        tag = f"hems_bench_{os.getpid()}_{secrets.token_hex(3)}"
        self.data_dir = data_dir
        self.app_db, self.warehouse_db, self.influx_db = f"{tag}_app", f"{tag}_wh", tag
        self.redis_prefix = f"{tag}:"
        self.env = {
            "HEMS_PROFILE": "stack",
            "HEMS_POSTGRES__APP_DATABASE": self.app_db,
            "HEMS_POSTGRES__WAREHOUSE_DATABASE": self.warehouse_db,
            "HEMS_INFLUX__DATABASE": self.influx_db,
            "HEMS_REDIS__KEY_PREFIX": self.redis_prefix,
            # the stack profile refuses to start without secrets: fresh ones for the run
            "HEMS_API__JWT_SECRET": secrets.token_urlsafe(48),
            "HEMS_API__FIELD_KEYS": "bench:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        }

    def create(self) -> None:
        import duckdb
        import httpx
        import psycopg
        import sqlalchemy as sa

        from hems.settings import Settings, get_settings
        from hems.stores import appdb
        from hems.stores.appdb.models import Base

        stack = get_settings()  # the caller set self.env
        pg = stack.postgres
        with psycopg.connect(pg.url("postgres", driver="postgresql"), autocommit=True) as con:
            for name in (self.app_db, self.warehouse_db):
                con.execute(f'CREATE DATABASE "{name}"')
        httpx.post(
            f"{stack.influx.url}/query", params={"q": f'CREATE DATABASE "{self.influx_db}"'}
        ).raise_for_status()
        # app DB: schema by the migrations, then the demo's households and daily usage
        appdb.migrate(stack.app_database_url)
        local = Settings(profile="local", data_dir=self.data_dir)
        source, target = appdb.get_engine(local.app_database_url), appdb.get_engine(stack.app_database_url)
        for name in self.APP_TABLES:
            table = Base.metadata.tables[name]
            with source.connect() as con:
                rows = [dict(r._mapping) for r in con.execute(sa.select(table))]
            if name == "households":
                for row in rows:
                    row["user_id"] = None  # the demo's accounts are not copied; the bench resident is
            with target.begin() as con:
                con.execute(sa.insert(table), rows)
        appdb.dispose_engine(local.app_database_url)
        # warehouse: the marts the API reads, from the embedded warehouse's serving snapshot
        with (
            duckdb.connect(str(local.warehouse_snapshot_path), read_only=True) as src,
            psycopg.connect(pg.url(self.warehouse_db, driver="postgresql")) as dst,
        ):
            dst.execute("CREATE SCHEMA marts")
            for name in self.MART_TABLES:
                described = src.execute(f"DESCRIBE marts.{name}").fetchall()
                columns = [(c[0], c[1]) for c in described]
                ddl = ", ".join(f'"{c}" {_pg_type(t)}' for c, t in columns)
                dst.execute(f"CREATE TABLE marts.{name} ({ddl})")
                rows = src.execute(f"SELECT * FROM marts.{name}").fetchall()
                cols = ", ".join(f'"{c}"' for c, _ in columns)
                with dst.cursor() as cur, cur.copy(f"COPY marts.{name} ({cols}) FROM STDIN") as cp:
                    for row in rows:
                        cp.write_row(row)
            dst.execute("CREATE INDEX ON marts.energy_usage_daily (household_id, date)")

    def drop(self) -> None:
        import httpx
        import psycopg
        import redis

        from hems.settings import get_settings
        from hems.stores import appdb

        stack = get_settings()
        appdb.dispose_engine(stack.app_database_url)
        pg = stack.postgres
        with psycopg.connect(pg.url("postgres", driver="postgresql"), autocommit=True) as con:
            for name in (self.app_db, self.warehouse_db):
                con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        httpx.post(f"{stack.influx.url}/query", params={"q": f'DROP DATABASE "{self.influx_db}"'})
        client = redis.Redis(host=stack.redis.host, port=stack.redis.port, db=stack.redis.db)
        keys = list(client.scan_iter(match=self.redis_prefix + "*", count=1000))
        if keys:
            client.delete(*keys)


def _pg_type(duck: str) -> str:
    duck = duck.upper()
    if duck.startswith(("VARCHAR", "STRING")):
        return "TEXT"
    if duck.startswith("DECIMAL"):
        return "NUMERIC"
    return {
        "DOUBLE": "DOUBLE PRECISION",
        "FLOAT": "REAL",
        "HUGEINT": "NUMERIC",
        "UBIGINT": "NUMERIC",
        "UINTEGER": "BIGINT",
        "TINYINT": "SMALLINT",
        "UTINYINT": "SMALLINT",
        "USMALLINT": "INTEGER",
        "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ",
    }.get(duck, duck)


# --- the server --------------------------------------------------------------------------------


def start_server(env: dict[str, str], port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    """uvicorn with ``workers`` processes; its stderr (the API's JSON access log, one line per
    request, and uvicorn's own messages) goes to ``log``."""
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "benchmarks.api_latency:app_factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        # wrk keeps its connections for the whole phase; scrapes reuse one connection between phases
        "--timeout-keep-alive",
        "75",
        "--log-level",
        "warning",
    ]
    with log.open("ab") as sink:
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stderr=sink)
    import httpx

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                time.sleep(1.0 if workers > 1 else 0)  # the other workers finish starting
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
        if server.poll() is not None:
            raise SystemExit(f"uvicorn exited with {server.returncode}:\n{log.read_text()[-3000:]}")
    stop_server(server)
    raise SystemExit("uvicorn did not answer /health within 90 s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# --- wrk -----------------------------------------------------------------------------------------

#: The Lua side of one phase. ``request`` builds each URL (``cycle``: PATHS in turn; ``uncached``:
#: a new date range each time, distinct across threads), ``response`` counts statuses and
#: X-Cache values, ``done`` prints one JSON line (latencies in µs, wrk's own histogram).
_LUA = r"""
local mode = "%(mode)s"
local paths = {%(paths)s}
local households = {%(households)s}
local first_ts, last_ts = %(first_ts)d, %(last_ts)d
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  thread:set("nthreads", %(threads)d)
  table.insert(threads, thread)
end

counter, statuses, cache = 0, {}, {}  -- globals: done() reads them through thread:get

function init(args)
  counter = %(offset)d + tid
end

local function day(ts) return os.date("!%%Y-%%m-%%d", ts) end

function request()
  local path
  if mode == "uncached" then
    -- every (household, k) once: start moves back a day per round of households; after 500
    -- rounds the end moves forward a day (the range stays under the 3-year limit); the end is
    -- always after the cached phase's, so no range is one that phase or the warm-up computed
    local k = math.floor(counter / #households)
    local hh = households[(counter %% #households) + 1]
    local start_day = day(first_ts - (1 + k %% 500) * 86400)
    local end_day = day(last_ts + (1 + math.floor(k / 500)) * 86400)
    path = "/dashboard/energy?household_id=" .. hh .. "&start=" .. start_day .. "&end=" .. end_day
  else
    path = paths[(counter %% #paths) + 1]
  end
  counter = counter + nthreads
  return wrk.format("GET", path)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local tag = headers["x-cache"] or headers["X-Cache"]
  if tag then cache[tag] = (cache[tag] or 0) + 1 end
end

function done(summary, latency, requests)
  local st, ca = {}, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do st[tostring(k)] = (st[tostring(k)] or 0) + v end
    for k, v in pairs(t:get("cache")) do ca[k] = (ca[k] or 0) + v end
  end
  local function obj(t)
    local parts = {}
    for k, v in pairs(t) do table.insert(parts, string.format('"%%s": %%d', k, v)) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, '
    .. '"max_us": %%d, "errors": {"connect": %%d, "read": %%d, "write": %%d, "status": %%d, '
    .. '"timeout": %%d}, "statuses": %%s, "x_cache": %%s}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    obj(st), obj(ca)))
end
"""


def lua_script(
    mode: str, paths: list[str], threads: int, span: tuple[dt.date, dt.date], offset: int = 0
) -> str:
    """The phase's script; ``offset``: where its request counter starts (each round of the
    uncached phase starts 10 days further on, so no range repeats an earlier round's)."""

    def epoch(day: dt.date) -> int:
        return int(dt.datetime.combine(day, dt.time(12), dt.UTC).timestamp())

    return _LUA % {
        "mode": mode,
        "paths": ", ".join(json.dumps(p) for p in paths),
        "households": ", ".join(json.dumps(h) for h in HOUSEHOLDS),
        "first_ts": epoch(span[0]),
        "last_ts": epoch(span[1]),
        "threads": threads,
        "offset": offset,
    }


def run_wrk(
    base: str,
    script: Path,
    *,
    connections: int,
    threads: int,
    duration_s: float,
    headers: dict[str, str],
) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        *[arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")],
        base,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    raw = json.loads(line[len("WRKJSON ") :])
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "seconds": seconds,
        "rps": round(raw["requests"] / seconds, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "statuses": raw["statuses"],
        "errors": {k: v for k, v in raw["errors"].items() if v},
        "x_cache": raw["x_cache"] or None,
    }


# --- the server's own view ---------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants (uvicorn's supervisor, its workers and their helpers)."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (Linux /proc; 0 where unreadable)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


ROUTES = {
    "dashboard_cached": "/dashboard/energy",
    "dashboard_uncached": "/dashboard/energy",
    "leaderboard": "/community/leaderboard",
}


def server_histogram(client: Any, route: str) -> dict[float, float]:
    """Cumulative bucket counts of the API's latency histogram for ``route`` (GET)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "hems_api_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("route") == route:
                buckets[float(sample.labels["le"])] = sample.value
    return buckets


def bucket_p99_ms(before: dict[float, float], after: dict[float, float], requests: int) -> float | None:
    """The upper bound of the bucket holding the phase's 99th percentile; None when the two scrapes
    did not come from the same worker (a reconnected scrape may land on another one)."""
    counts = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    total = counts.get(float("inf"), 0.0)
    if not total or min(counts.values()) < 0 or total > requests:
        return None
    return next(le * 1000 for le, n in counts.items() if n >= 0.99 * total)


def access_log_latency(
    log: Path, windows: dict[str, list[tuple[str, str, str]]]
) -> dict[str, dict[str, float]]:
    """Per phase, from every worker's access log (``duration_ms`` of each request of the phase's
    route whose ``ts`` falls in the phase's window): the server's exact p50/p99, no client."""
    durations: dict[str, list[float]] = {name: [] for name in windows}
    with log.open("rb") as f:
        for line in f:
            if not line.startswith(b'{"ts"'):
                continue
            entry = json.loads(line)
            for name, spans in windows.items():
                for route, start, end in spans:
                    if entry["route"] == route and start <= entry["ts"] <= end:
                        durations[name].append(entry["duration_ms"])
    out = {}
    for name, values in durations.items():
        if len(values) >= 100:
            q = statistics.quantiles(values, n=100, method="inclusive")
            out[name] = {"server_p50_ms": round(q[49], 2), "server_p99_ms": round(q[98], 2)}
    return out


def _utc_ms() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


# --- the run -------------------------------------------------------------------------------------


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One endpoint's rounds as one figure: requests and time summed (so req/s is over all of
    them), latency percentiles the worst round's, server CPU per request over all of them."""
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)

    def summed(key: str) -> dict[str, int] | None:
        total: dict[str, int] = {}
        for r in runs:
            for k, v in (r[key] or {}).items():
                total[k] = total.get(k, 0) + v
        return total or None

    bounds = [r["server_p99_le_ms"] for r in runs if r.get("server_p99_le_ms") is not None]
    return {
        "requests": requests,
        "rps": round(requests / seconds, 1),
        **{k: max(r[k] for r in runs) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
        "rounds_rps": [r["rps"] for r in runs],
        "rounds_p99_ms": [r["p99_ms"] for r in runs],
        "statuses": summed("statuses"),
        "x_cache": summed("x_cache"),
        "server_cpu_us_per_request": round(sum(r["server_cpu_s"] for r in runs) / max(requests, 1) * 1e6, 1),
        **({"server_p99_le_ms": max(bounds)} if bounds else {}),
    }


def run_phases(
    server: subprocess.Popen[bytes],
    port: int,
    token: str,
    span: tuple[dt.date, dt.date],
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    import httpx

    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    last = span[1]
    dash = [f"/dashboard/energy?household_id={h}&end={last}" for h in HOUSEHOLDS]
    board = [f"/community/leaderboard?household_id={h}&scope=region" for h in HOUSEHOLDS]
    phases: dict[str, tuple[str, list[str], dict[str, str]]] = {
        "bare": ("cycle", ["/bare"], {}),
        "dashboard_cached": ("cycle", dash, auth),
        "dashboard_uncached": ("uncached", dash, auth),
        "leaderboard": ("cycle", board, auth),
    }
    scripts: dict[tuple[str, int], Path] = {}
    for rnd in range(args.rounds):
        for name, (mode, paths, _) in phases.items():
            offset = rnd * 25_000 if mode == "uncached" else 0
            scripts[name, rnd] = workdir / f"{name}-{rnd}.lua"
            scripts[name, rnd].write_text(lua_script(mode, paths, args.threads, span, offset))
    wrk = {"connections": args.connections, "threads": args.threads, "headers": {}}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in phases}
    windows: dict[str, list[tuple[str, str, str]]] = {}
    # one keep-alive connection for the checks and scrapes: it stays with one worker
    with httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_connections=1)) as client:
        # fill the caches (the first dashboard of a household computes it, later ones hit) and
        # warm every worker's code paths with a short run of each cached endpoint
        for url in [*dash, *board, "/bare"]:
            first = client.get(url, headers=auth)
            if first.status_code != 200:
                raise SystemExit(f"warm-up {url}: {first.status_code} {first.text[:300]}")
        for name in ("bare", "dashboard_cached", "leaderboard"):
            run_wrk(base, scripts[name, 0], **{**wrk, "headers": phases[name][2]}, duration_s=args.warmup)
        # the phases one after another, the whole sequence ``--rounds`` times: what else runs on
        # the machine changes by the second, and interleaving spreads that over every endpoint
        for rnd in range(args.rounds):
            for name, (_, _, headers) in phases.items():
                route = ROUTES.get(name)
                before = server_histogram(client, route) if route else {}
                pids = process_tree(server.pid)
                cpu_before = cpu_seconds(pids)
                started = _utc_ms()
                result = run_wrk(
                    base, scripts[name, rnd], **{**wrk, "headers": headers}, duration_s=args.duration
                )
                if route:
                    windows.setdefault(name, []).append((route, started, _utc_ms()))
                result["server_cpu_s"] = cpu_seconds(pids) - cpu_before
                if set(result["statuses"]) != {"200"} or result["errors"]:
                    raise SystemExit(f"{name}: statuses {result['statuses']}, errors {result['errors']}")
                if route:
                    after = server_histogram(client, route)
                    result["server_p99_le_ms"] = bucket_p99_ms(before, after, result["requests"])
                rounds[name].append(result)
                print(
                    f"round {rnd + 1} {name:20s} {result['rps']:9.1f} req/s  p50 {result['p50_ms']:7.2f}"
                    f"  p99 {result['p99_ms']:7.2f} ms  server CPU"
                    f" {result['server_cpu_s'] / max(result['requests'], 1) * 1e6:6.1f} us/req",
                    file=sys.stderr,
                )
    results = {name: combine(runs) for name, runs in rounds.items()}
    results["_windows"] = windows
    cached, uncached = (
        results["dashboard_cached"]["x_cache"] or {},
        results["dashboard_uncached"]["x_cache"] or {},
    )
    # hh-00002 and hh-00003 have no similar homes in the demo: such degraded answers are kept a
    # minute only (then retried), so each worker rebuilds them once a minute — a few misses
    if cached.get("miss", 0) > 0.01 * sum(cached.values()) or "hit" not in cached:
        raise SystemExit(f"dashboard_cached was not (99 %) cache hits: {cached}")
    if set(uncached) != {"miss"}:
        raise SystemExit(f"dashboard_uncached was not all cache misses: {uncached}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=("stack", "local"), default="stack")
    parser.add_argument("--workers", type=int, help="uvicorn workers (default: 2 with stack, 1 with local)")
    parser.add_argument("--data-dir", type=Path, help="embedded demo data dir (default: a new temporary one)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per endpoint")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of warm-up load per cached endpoint"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=2, help="times the sequence of endpoints is run")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        return 2
    workers = args.workers or (2 if args.profile == "stack" else 1)
    if args.profile == "local" and workers != 1:
        parser.error(
            "the local profile's cache and rate limiter are per process: use --workers 1 (or --profile stack)"
        )

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="hems-api-bench-"))
    ensure_demo(data_dir)
    env = {
        "HEMS_PROFILE": "local",
        "HEMS_DATA_DIR": str(data_dir),
        # the limit is 100 requests / 15 min per user; the benchmark sends far more as one user
        "HEMS_API__RATE_LIMIT_REQUESTS": "1000000000",
    }
    stack = StackCopy(data_dir) if args.profile == "stack" else None
    if stack:
        env.update(stack.env)
    os.environ.update(env)
    from hems.settings import get_settings

    get_settings.cache_clear()
    try:
        if stack:
            stack.create()
        token = make_resident()
        span = demo_span()
        load_before = round(os.getloadavg()[0], 2)  # other work on the machine skews every figure
        with tempfile.TemporaryDirectory(prefix="hems-wrk-") as workdir:
            log = Path(workdir) / "server.log"
            server = start_server({**os.environ, "PYTHONPATH": str(ROOT)}, args.port, workers, log)
            try:
                results = run_phases(server, args.port, token, span, args, Path(workdir))
            finally:
                stop_server(server)
            # the API logged every request (a feature, not a cost the benchmark skips): the
            # server's own latency of each phase, from every worker, comes from those lines
            with log.open("rb") as f:
                access_lines = sum(1 for line in f if line.startswith(b'{"ts"'))
            for name, figures in access_log_latency(log, results.pop("_windows")).items():
                results[name].update(figures)
    finally:
        if stack:
            stack.drop()
    bare, cached = results["bare"], results["dashboard_cached"]
    ratio = cached["rps"] / bare["rps"]
    targets = {
        "dashboard_cached_p99_le_25ms": cached["p99_ms"] <= P99_TARGET_MS,
        "cached_rps_ge_50pct_of_bare": ratio >= THROUGHPUT_TARGET,
    }
    print(
        f"\n{'endpoint':20s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'server p99':>10s}"
        f" {'CPU us/req':>10s}",
        file=sys.stderr,
    )
    for name, r in results.items():
        print(
            f"{name:20s} {r['rps']:9.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}"
            f" {r.get('server_p99_ms', float('nan')):10.2f} {r['server_cpu_us_per_request']:10.1f}",
            file=sys.stderr,
        )
    cpu_ratio = cached["server_cpu_us_per_request"] / bare["server_cpu_us_per_request"]
    print(
        f"cached/bare throughput {ratio:.3f} (server CPU per request {cpu_ratio:.1f}x); targets {targets}",
        file=sys.stderr,
    )
    line = {
        "benchmark": "api_latency",
        "profile": args.profile,
        "server": f"uvicorn (uvloop, httptools), {workers} worker{'s' if workers > 1 else ''}",
        "client": f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, {args.rounds} rounds",
        "connections": args.connections,
        "cpus": os.cpu_count(),
        "load_avg_1m_before": load_before,
        **results,
        "access_log_lines": access_lines,
        "cached_vs_bare_rps": round(ratio, 3),
        "cached_vs_bare_server_cpu": round(cpu_ratio, 2),
        "targets_met": targets,
    }
    print(json.dumps(line))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
