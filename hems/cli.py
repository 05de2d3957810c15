"""The ``hems`` command: demo, services, simulate, pipeline and the four UIs.

It is the composition root, so it may reach every layer; it imports them inside commands so
``hems --help`` stays instant and a broken optional layer never breaks the others.
Every failure an operator can fix is printed as one line (service, address, fix) with exit 1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hems.errors import HemsError
from hems.settings import PROJECT_ROOT, Profile, Settings, SettingsError, get_settings

# plain tracebacks: rich's traceback renderer (typer's default) loops forever on the cyclic
# exception chains of a failed Dagster run, so `hems demo` hung at 100 % CPU instead of failing
app = typer.Typer(
    help="HEMS data platform", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
)
services_app = typer.Typer(
    help="Stack services: PostgreSQL, Redis, Mosquitto, InfluxDB", no_args_is_help=True
)
app.add_typer(services_app, name="services")
ingest_app = typer.Typer(help="Ingest workers: MQTT subscriber, Modbus TCP poller", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
console = Console()
err = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _default_start(settings: Settings, days: int) -> date:
    """The ``days`` full local days that end yesterday."""
    today = datetime.now(ZoneInfo(settings.domain.timezone)).date()
    return today - timedelta(days=days)


# --- configuration --------------------------------------------------------------------------
@app.command()
def config() -> None:
    """Show the effective configuration (secrets masked)."""
    settings = get_settings()
    console.print_json(settings.model_dump_json())


# --- data ---------------------------------------------------------------------------------
@app.command()
def simulate(
    households: Annotated[int, typer.Option(min=1, help="number of households")] = 20,
    days: Annotated[int, typer.Option(min=1, help="number of local days")] = 14,
    start: Annotated[
        str | None, typer.Option(help="first local day YYYY-MM-DD (default: ends yesterday)")
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same data)")] = 42,
    live: Annotated[
        bool, typer.Option(help="publish live readings over MQTT instead of bulk history")
    ] = False,
    duration: Annotated[float, typer.Option(min=1, help="--live: seconds to publish")] = 60.0,
    speed: Annotated[float, typer.Option(min=1, help="--live: simulated seconds per real second")] = 60.0,
    faults: Annotated[
        str | None,
        typer.Option(help="faults per day, e.g. 'gaps=2,spikes=1' (log: var/simulator/faults.parquet)"),
    ] = None,
) -> None:
    """Simulate households: bulk history into the raw store, or live MQTT publishing."""
    settings = get_settings()
    if live:
        from ingest.simulator import Fleet
        from ingest.simulator.live import publish_live

        fleet = Fleet.generate(n_households=households, seed=seed, timezone=settings.domain.timezone)
        console.print(
            f"publishing {households} households to mqtt://{settings.mqtt.host}:{settings.mqtt.port}"
        )
        stats = publish_live(fleet, settings.mqtt, duration_s=duration, speed=speed)
        console.print(f"published: {stats}")
        return
    first = _parse_day(start) if start else _default_start(settings, days)
    summary = _simulate_history(settings, households, days, first, seed, _fault_plan(faults))
    console.print(
        f"simulated {summary.households} households × {summary.days} days "
        f"({summary.first_day} … {summary.last_day}): {summary.readings:,} points, "
        f"ground truth {summary.truth_import_kwh:,.1f} kWh → {summary.truth_path}"
    )


def _fault_plan(spec: str | None):
    """Parse 'gaps=2,spikes=1' into a FaultPlan; a bad spec is a usage error naming the part."""
    if not spec:
        return None
    from ingest.simulator.faults import FaultPlan

    counts: dict[str, Any] = {}
    for part in spec.split(","):
        name, _, value = part.partition("=")
        if not value.strip().isdigit():
            raise typer.BadParameter(f"{part!r} is not NAME=COUNT", param_hint="--faults")
        counts[name.strip()] = int(value)
    try:
        return FaultPlan(**counts)
    except TypeError:
        raise typer.BadParameter(f"unknown fault in {spec!r}", param_hint="--faults") from None


def _simulate_history(settings: Settings, households: int, days: int, first: date, seed: int, faults=None):
    from ingest.history import simulate_history

    with _progress() as progress:
        task = progress.add_task(f"simulating {households} households", total=days)
        return simulate_history(
            settings,
            households,
            days,
            first,
            seed,
            progress=lambda i, n: progress.update(task, completed=i),
            faults=faults,
        )


def _parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date in YYYY-MM-DD form") from None


@app.command()
def pipeline(
    start: Annotated[str, typer.Option(help="first local day YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="last local day YYYY-MM-DD (inclusive)")],
) -> None:
    """Land raw readings for a range of local days, then build and publish the marts."""
    from orchestration.lib.runner import run_energy_pipeline

    first, last = _parse_day(start), _parse_day(end)
    if last < first:
        raise typer.BadParameter(f"end {last} is before start {first}")
    with console.status("running the energy pipeline (landing → dbt → publish)"):
        result = run_energy_pipeline(first, last, get_settings())
    console.print(
        f"landed {result.landed_rows:,} readings over {result.landed_partitions} days; "
        f"runs {', '.join(result.run_ids)}"
    )


@app.command()
def bill(
    kwh: Annotated[float, typer.Option(min=0, help="kWh used in the month")],
    month: Annotated[str, typer.Option(help="billing month YYYY-MM")],
    as_json: Annotated[bool, typer.Option("--json", help="print machine-readable JSON")] = False,
) -> None:
    """KEPCO residential low-voltage bill breakdown (the same code and tariff rows as the marts)."""
    from hems.domain.tariff import kepco_bill

    try:
        breakdown = kepco_bill(kwh, month)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--month") from None
    if as_json:
        print(json.dumps(breakdown.to_dict(), ensure_ascii=False))
        return

    def num(value) -> str:  # 1,200 / 32,297.3: thousands separators, no trailing zeros
        return f"{value:,.4f}".rstrip("0").rstrip(".")

    b = breakdown
    table = Table(
        "component", "kWh", "rate", "KRW", title=f"KEPCO residential low voltage, {month} ({b.season})"
    )
    table.add_row(f"base charge (tier {b.tier})", "", "", num(b.base_charge))
    for block in b.blocks:
        name = "super-user (>1,000 kWh)" if block.is_super_user else f"energy block {block.block}"
        table.add_row(f"  {name}", num(block.kwh), num(block.rate), num(block.amount))
    table.add_row("energy charge", num(b.kwh), "", num(b.energy_charge))
    table.add_row("climate-environment", "", num(b.climate_rate), num(b.climate_charge))
    table.add_row("fuel-cost adjustment", "", num(b.fuel_rate), num(b.fuel_charge))
    table.add_row("subtotal", "", "", num(b.subtotal))
    table.add_row("VAT", "", f"{b.vat_rate:.1%}", num(b.vat))
    table.add_row("power-industry fund", "", f"{b.fund_rate:.1%}", num(b.fund))
    table.add_row("[bold]total[/]", "", "", f"[bold]{num(b.total)}[/]")
    console.print(table)


@app.command()
def baseline(
    meter: Annotated[Path, typer.Option(help="meter CSV: a timestamp and a kWh column (hourly or daily)")],
    reporting_start: Annotated[str, typer.Option(help="first reporting day YYYY-MM-DD (CBL: the event day)")],
    temperature: Annotated[
        Path | None, typer.Option(help="temperature CSV: a timestamp and a temperature column")
    ] = None,
    method: Annotated[
        str, typer.Option(help="caltrack-daily | cashback | cbl-mid-6-10 | cbl-max-4-5")
    ] = "caltrack-daily",
    temperature_unit: Annotated[str, typer.Option(help="C or F")] = "C",
    as_json: Annotated[bool, typer.Option("--json", help="print machine-readable JSON")] = False,
) -> None:
    """Baseline, counterfactual, savings and verdict for your own meter data (docs/incentives.md)."""
    from transforms.meter_files import METHODS, MeterFileError, baseline_report

    if method not in METHODS:
        raise typer.BadParameter(f"{method!r} is not one of {', '.join(METHODS)}", param_hint="--method")
    if temperature_unit.upper() not in ("C", "F"):
        raise typer.BadParameter(f"{temperature_unit!r} is not C or F", param_hint="--temperature-unit")
    start = _parse_day(reporting_start)
    try:
        report = baseline_report(
            meter, temperature, start, method, temperature_unit, timezone=get_settings().domain.timezone
        )
    except MeterFileError as exc:  # a bad input file is a usage error: one line, exit 2
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True, markup=True)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    verdict = "[green]qualified[/]" if report["qualified"] else f"[red]not qualified[/]: {report['reason']}"
    table = Table("figure", "value", title=f"baseline ({method}) from {meter.name}")
    for key, value in report.items():
        if key in ("hourly", "qualified", "reason"):
            continue
        if value is None:
            text = "—"
        elif isinstance(value, float):
            text = f"{value:,.4f}".rstrip("0").rstrip(".")
        else:
            text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        table.add_row(key, text)
    table.add_row("verdict", verdict)
    console.print(table)
    if report.get("hourly"):
        hours = Table("hour", "CBL kWh", "actual kWh", title="event day, hour by hour")
        for row in report["hourly"]:
            cbl = "—" if row["cbl_kwh"] is None else f"{row['cbl_kwh']:.3f}"
            hours.add_row(f"{row['hour']:02d}", cbl, f"{row['actual_kwh']:.3f}")
        console.print(hours)


# --- ingest workers -------------------------------------------------------------------------
def _device_tracker(settings: Settings):
    """Device state (latest readings, last_seen, offline notifications) with its sweeper thread."""
    import threading

    from ingest.device_state import DeviceStateTracker

    tracker = DeviceStateTracker.from_settings(settings)
    stop = threading.Event()
    threading.Thread(target=tracker.run_sweeper, args=(stop,), daemon=True, name="device-sweeper").start()
    return tracker, stop


@ingest_app.command("mqtt")
def ingest_mqtt(
    metrics_port: Annotated[int | None, typer.Option(help="serve Prometheus /metrics on this port")] = None,
    client_id: Annotated[str | None, typer.Option(help="MQTT client id (stable: persistent session)")] = None,
    retire: Annotated[
        bool,
        typer.Option(
            help="leave the shared group for good: unsubscribe, drain what the broker queued for "
            "this client id, end its session, exit (scale-in; see docs/ingest.md)"
        ),
    ] = False,
) -> None:
    """Subscribe to device telemetry and status, validate, land in the raw store (Ctrl-C stops)."""
    from ingest.mqtt import run_worker

    settings = get_settings()
    tracker, stop = _device_tracker(settings)
    try:
        stats = run_worker(
            settings,
            metrics_port=metrics_port,
            client_id=client_id,
            on_valid=tracker.observe,
            on_status=tracker.on_status,
            retire=retire,
        )
    finally:
        stop.set()
    console.print(f"stopped: {stats}")


@ingest_app.command("modbus")
def ingest_modbus(
    config: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="devices YAML (see docs/modbus.md)")
    ],
) -> None:
    """Poll Modbus TCP meters concurrently; readings go through the same pipeline as MQTT."""
    from datetime import UTC

    import polars as pl

    from hems.stores.raw_store import get_raw_store
    from ingest.modbus import run_forever
    from ingest.pipeline import REJECT_SCHEMA, IngestPipeline
    from ingest.quarantine import Quarantine

    settings = get_settings()
    tracker, stop = _device_tracker(settings)
    quarantine = Quarantine(settings.app_database_url)
    pipeline = IngestPipeline(
        get_raw_store(settings), quarantine, settings=settings, on_valid=tracker.observe
    )

    def on_reject(device_id: str, field: str, value: float, reason: str) -> None:
        row = {
            "topic": f"modbus/{device_id}",
            "payload": f"{field}={value!r}".encode(),
            "reason": f"{reason}:{field}",
            "detail": f"register value {value!r} for {field}",
            "received_at": datetime.now(UTC),
            "household_id": None,
            "device_id": device_id,
            "index": None,
        }
        quarantine.add(pl.DataFrame([row], schema=REJECT_SCHEMA), source="modbus")

    try:
        stats = run_forever(
            config, sink=lambda frame: pipeline.process_readings(frame, "modbus"), on_reject=on_reject
        )
    finally:
        stop.set()
    console.print(f"stopped: {stats}")


# --- stack services -------------------------------------------------------------------------
def _services_table(rows) -> Table:
    table = Table("service", "address", "state", "detail")
    for s in rows:
        table.add_row(s.name, s.address, s.state, s.detail or "")
    return table


@services_app.command("up")
def services_up() -> None:
    """Use running services; start private ones on loopback; install InfluxDB when missing."""
    from hems import services

    console.print(_services_table(services.up(get_settings())))


@services_app.command("status")
def services_status() -> None:
    """Show which stack services answer."""
    from hems import services

    console.print(_services_table(services.status(get_settings())))


@services_app.command("down")
def services_down() -> None:
    """Stop the private services this project started (never the machine's shared ones)."""
    from hems import services

    console.print(_services_table(services.down(get_settings())))


# --- UIs ----------------------------------------------------------------------------------
def _ui_commands(settings: Settings, *, api_workers: int = 1) -> dict[str, tuple[list[str], int, str]]:
    py = sys.executable
    bin_dir = Path(py).parent
    mlflow_dir = settings.mlflow_dir
    return {
        "api": (
            [
                py,
                "-m",
                "uvicorn",
                "serving.main:app",
                "--host",
                settings.api.host,
                "--port",
                str(settings.api.port),
                "--workers",
                str(api_workers),
            ],
            settings.api.port,
            "/docs",
        ),
        "dashboards": (
            [
                py,
                "-m",
                "streamlit",
                "run",
                str(PROJECT_ROOT / "dashboards" / "streamlit_app.py"),
                "--server.port",
                str(settings.ui.dashboards),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            settings.ui.dashboards,
            "/",
        ),
        "dagster": (
            [
                str(bin_dir / "dagster"),
                "dev",
                "-m",
                "orchestration.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(settings.ui.dagster),
            ],
            settings.ui.dagster,
            "/",
        ),
        "mlflow": (
            [
                str(bin_dir / "mlflow"),
                "server",
                "--backend-store-uri",
                settings.mlflow_tracking_uri,
                "--artifacts-destination",
                str(mlflow_dir / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(settings.ui.mlflow),
                "--workers",
                "1",
            ],
            settings.ui.mlflow,
            "/",
        ),
    }


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child: get SIGTERM if `hems` itself is killed (Linux), so no UI outlives it."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _serve(names: list[str], settings: Settings, *, api_workers: int = 1) -> None:
    """Start the named UIs, wait until each answers, print their URLs, stop them all on Ctrl-C."""
    from orchestration.lib.runner import prepare_dagster_home

    prepare_dagster_home(settings)
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    commands = _ui_commands(settings, api_workers=api_workers)
    busy = [f"{n} port {commands[n][1]}" for n in names if _port_open(commands[n][1])]
    if busy:
        raise HemsError(
            f"already in use: {', '.join(busy)}; stop what runs there or set HEMS_UI__* / HEMS_API__PORT"
        )
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}

    def _stop(signum: int, _frame: object) -> None:
        # the first signal starts the shutdown; repeats (make, uv and the terminal may each
        # forward one) must not interrupt it half-way and orphan the UIs
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    # Ctrl-C, a supervisor's SIGTERM or a closed terminal all stop the UIs; SIGINT is set here too
    # because a shell's background job inherits it ignored
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)
    try:
        for name in names:
            cmd, _port, _path = commands[name]
            log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
            procs[name] = subprocess.Popen(
                cmd,
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + 120
        pending = set(names)
        with console.status("starting " + ", ".join(names)):
            while pending and time.monotonic() < deadline:
                for name in list(pending):
                    if procs[name].poll() is not None:
                        raise HemsError(f"{name} exited at start; see {logs / (name + '.log')}")
                    if _port_open(commands[name][1]):
                        pending.discard(name)
                time.sleep(0.5)
        if pending:
            raise HemsError(f"{', '.join(sorted(pending))} did not answer within 120 s; see {logs}")
        table = Table("UI", "URL", "for")
        purpose = {
            "api": "apps (OpenAPI)",
            "dashboards": "analysts",
            "dagster": "data engineers",
            "mlflow": "ML engineers",
        }
        for name in names:
            table.add_row(name, f"http://127.0.0.1:{commands[name][1]}{commands[name][2]}", purpose[name])
        console.print(table)
        console.print(f"logs in {logs}; press Ctrl-C to stop")
        while all(p.poll() is None for p in procs.values()):
            time.sleep(1)
        dead = [n for n, p in procs.items() if p.poll() is not None]
        raise HemsError(f"{', '.join(dead)} stopped; see {logs}")
    except KeyboardInterrupt:
        console.print("stopping …")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@app.command()
def serve(
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="API worker processes (stack profile: one per core; the embedded profile's cache "
            "and rate limiter live in one process, so it runs 1)",
        ),
    ] = 1,
) -> None:
    """Start the serving API (apps; OpenAPI at /docs)."""
    settings = get_settings()
    if workers > 1 and settings.profile is not Profile.stack:
        raise HemsError(
            f"--workers {workers} needs HEMS_PROFILE=stack: the embedded profile's cache and rate "
            "limiter are per process, so several workers would each keep their own"
        )
    _serve(["api"], settings, api_workers=workers)


@app.command()
def dashboards() -> None:
    """Start the Streamlit dashboards (analysts)."""
    _serve(["dashboards"], get_settings())


@app.command()
def dagster() -> None:
    """Start the Dagster UI and daemon (data engineers)."""
    _serve(["dagster"], get_settings())


@app.command()
def mlflow() -> None:
    """Start the MLflow UI (ML engineers)."""
    _serve(["mlflow"], get_settings())


# --- demo -----------------------------------------------------------------------------------
@app.command()
def demo(
    households: Annotated[
        int | None, typer.Option(min=1, help="households (default HEMS_DEMO__HOUSEHOLDS)")
    ] = None,
    days: Annotated[int | None, typer.Option(min=1, help="days (default HEMS_DEMO__DAYS)")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    serve_uis: Annotated[
        bool, typer.Option("--serve/--no-serve", help="start the UIs after the pipeline")
    ] = True,
    reset: Annotated[bool, typer.Option(help="delete earlier demo data first")] = False,
) -> None:
    """Simulate a fleet, run every asset, then start Dagster, the API, the dashboards and MLflow."""
    settings = get_settings()
    n = households or settings.demo.households
    d = days or settings.demo.days
    s = settings.demo.seed if seed is None else seed
    first = _default_start(settings, d)
    last = first + timedelta(days=d - 1)
    marker = settings.data_dir / "demo.json"
    wanted = {
        "profile": settings.profile.value,
        "households": n,
        "days": d,
        "seed": s,
        "first_day": first.isoformat(),
    }
    if reset:
        _reset_demo(settings)
    started = time.monotonic()
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        console.print(
            f"demo data for {n} households × {d} days already built ({marker}); use --reset to rebuild"
        )
    else:
        summary = _simulate_history(settings, n, d, first, s)
        console.print(
            f"simulated {summary.readings:,} points; ground truth {summary.truth_import_kwh:,.1f} kWh"
        )
        from orchestration.lib.runner import run_energy_pipeline

        with console.status("running the energy pipeline in Dagster (landing → dbt build → publish)"):
            # the simulator's final boundary reading sits at 00:00 of the day after `last`
            result = run_energy_pipeline(first, last + timedelta(days=1), settings)
        console.print(f"landed {result.landed_rows:,} readings over {result.landed_partitions} days")
        _demo_incentives_and_ml(settings, first, last)
        marker.write_text(json.dumps(wanted))
    _demo_accounts(settings)
    _print_summary(settings)
    console.print(f"pipeline ready in {time.monotonic() - started:,.1f} s")
    if serve_uis:
        _serve(["dagster", "api", "dashboards", "mlflow"], settings)


ML_MIN_DEMO_DAYS = 14
#: demo sign-ins (the demo's data only; a real deployment creates its own accounts)
DEMO_PASSWORD = "hems-demo-2026"
DEMO_ACCOUNTS = (("analyst@demo.hems", "analyst"), ("resident@demo.hems", "resident"))


def _demo_accounts(settings: Settings) -> None:
    """An analyst (every household) and a resident who owns the first household, so the API can be
    tried at once: ``POST /auth/token`` with these, then ``GET /dashboard/energy``."""
    import sqlalchemy as sa

    from hems.stores import appdb
    from serving.security import create_user
    from serving.security.accounts import EmailTaken

    engine = appdb.get_engine(settings.app_database_url)
    for email, role in DEMO_ACCOUNTS:
        try:
            user_id = create_user(engine, email, DEMO_PASSWORD, role=appdb.Role(role))
        except EmailTaken:
            continue
        if role == "resident":
            with engine.begin() as con:
                first = con.execute(sa.text("SELECT min(id) FROM households")).scalar()
                con.execute(
                    sa.text("UPDATE households SET user_id = :u WHERE id = :h"), {"u": user_id, "h": first}
                )
    console.print(
        f"demo sign-ins (password {DEMO_PASSWORD!r}): "
        + ", ".join(f"{email} ({role})" for email, role in DEMO_ACCOUNTS)
    )


def _demo_incentives_and_ml(settings: Settings, first: date, last: date) -> None:
    """Rewards for the demo's months and one demand-response event (17–20 h on its last weekday),
    then the four ML models trained, registered and promoted — so every UI has something real.
    ML needs ML_MIN_DEMO_DAYS of history (8 days before a holdout, the holdout itself): a shorter
    demo skips it and says so."""
    from orchestration.defs.incentives.partitions import dr_event_key
    from orchestration.lib.runner import run_incentive_pipeline, run_ml_pipeline

    months = sorted({date(d.year, d.month, 1) for d in (first, last)})
    event_day = last
    while event_day.weekday() >= 5:
        event_day -= timedelta(days=1)
    with console.status("rewards: cashback, weather-normalized savings, a DR event → points ledger"):
        incentives = run_incentive_pipeline(months, [dr_event_key(event_day, 17, 20)], settings)
    console.print(
        f"rewards paid: {sum(incentives.paid_krw.values()):,} KRW over {len(incentives.run_ids)} runs"
    )
    days = (last - first).days + 1
    if days < ML_MIN_DEMO_DAYS:
        console.print(f"ML skipped: {days} days of data, the models need at least {ML_MIN_DEMO_DAYS}")
        return
    with console.status("ML: features → train → evaluate → promote → predictions (MLflow)"):
        ml = run_ml_pipeline(settings)
    console.print(f"ML models trained; checks passed: {sum(ml.checks.values())}/{len(ml.checks)}")


def _reset_demo(settings: Settings) -> None:
    from hems.stores.raw_store import get_raw_store
    from hems.stores.warehouse import get_warehouse

    get_raw_store(settings).drop()
    get_warehouse(settings).drop()
    (settings.data_dir / "demo.json").unlink(missing_ok=True)
    if settings.profile.value == "local":
        (settings.data_dir / "app.sqlite3").unlink(missing_ok=True)
        shutil.rmtree(settings.dagster_home, ignore_errors=True)
        shutil.rmtree(settings.mlflow_dir, ignore_errors=True)
    shutil.rmtree(settings.data_dir / "exports", ignore_errors=True)


def _print_summary(settings: Settings) -> None:
    from hems.stores.warehouse import get_warehouse

    daily = get_warehouse(settings).query(
        "SELECT count(DISTINCT household_id) AS households, count(*) AS household_days, "
        "min(date) AS first_day, max(date) AS last_day, sum(total_consumption_kwh) AS kwh, "
        "sum(peak_usage_kwh) AS peak_kwh, sum(off_peak_usage_kwh) AS off_peak_kwh "
        "FROM marts.energy_usage_daily"
    )
    row = daily.row(0, named=True)
    table = Table("energy_usage_daily", "value")
    for key, value in row.items():
        table.add_row(key, f"{value:,.1f}" if isinstance(value, float) else str(value))
    console.print(table)


def main() -> None:
    """Entry point: typer reports usage errors itself (exit 2); known failures become one line."""
    try:
        app()
    except (HemsError, SettingsError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
