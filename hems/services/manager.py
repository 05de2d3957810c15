"""Bring the stack services up, report them, and stop the ones we started.

Why this exists: the stack profile needs PostgreSQL, Redis, Mosquitto and InfluxDB. Development and
CI machines already run the first three; InfluxDB (Debian's 1.6 package) is installed and started
by the project. A service that already listens is used as is and never stopped by us; a missing
loopback service is started privately with its data, pid and log under
``settings.data_dir / "services" / <name>``, so ``down`` can stop exactly those and nothing else.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from string import Template

import httpx

from hems.errors import HemsError, ServiceUnavailable
from hems.settings import Settings

RUNNING_EXISTING = "running (existing)"
RUNNING_PRIVATE = "running (private)"
STARTED_PRIVATE = "started (private)"
STOPPED = "stopped"
DOWN = "down"
ERROR = "error"

SERVICE_NAMES = ("postgresql", "redis", "mosquitto", "influxdb")
PG_START_FIX = "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
INFLUX_READY_TIMEOUT_S = 30.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ServiceStatus:
    """One row of `hems services status`: what runs where, and the fix when it does not."""

    name: str
    address: str
    state: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in (RUNNING_EXISTING, RUNNING_PRIVATE, STARTED_PRIVATE)

    @property
    def private(self) -> bool:
        return self.state in (RUNNING_PRIVATE, STARTED_PRIVATE)

    def line(self) -> str:
        return f"{self.name:<11} {self.address:<21} {self.state:<19} {self.detail}".rstrip()


class ServicesError(HemsError):
    """Some services are not usable; ``statuses`` holds every row for the CLI table."""

    def __init__(self, statuses: list[ServiceStatus]) -> None:
        self.statuses = statuses
        super().__init__("; ".join(s.detail for s in statuses if not s.ok))


# --- small helpers -------------------------------------------------------------------------------
def listening(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for private services in tests)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _pid_alive(pid: int) -> bool:
    """Alive and not a zombie (an orphaned daemon may linger as one until reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _log_tail(path: Path, lines: int = 3, width: int = 400) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "no log"
    tail = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return (" | ".join(tail) or "empty log")[:width]


def _which(binary: str) -> str | None:
    """PATH lookup that also sees /usr/sbin (mosquitto lives there; sbin is not on every PATH)."""
    found = shutil.which(binary)
    if found is None and Path("/usr/sbin", binary).exists():
        found = str(Path("/usr/sbin", binary))
    return found


def _wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --- services ------------------------------------------------------------------------------------
class _Service:
    """A stack service: how to tell it runs, how to start a private one, what it needs created."""

    name: str
    label: str
    binary: str
    env: str  # settings group in HEMS_<GROUP>__HOST

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings, self.host, self.port = settings, host, port
        self.dir = settings.data_dir / "services" / self.name
        self.pid_file = self.dir / f"{self.name}.pid"
        self.log_file = self.dir / f"{self.name}.log"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def unavailable(self, fix: str, cause: object | None = None) -> ServiceUnavailable:
        return ServiceUnavailable(self.label, self.address, fix, cause)

    def down_fix(self) -> str:
        if not _is_loopback(self.host):
            return (
                f"the remote server is down or HEMS_{self.env}__HOST/PORT is wrong "
                "(hems starts private services on loopback only)"
            )
        return "start it with `hems services up`"

    # pid of the private instance we started (None when not ours or gone)
    def private_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if not _pid_alive(pid) or self.binary not in _cmdline(pid):
            return None
        return pid

    def running_detail(self) -> str:
        return ""

    def private_detail(self, pid: int) -> str:
        return f"pid {pid}, data in {self.dir}"

    def status(self) -> ServiceStatus:
        if listening(self.host, self.port):
            pid = self.private_pid()
            if pid is not None:
                return ServiceStatus(self.name, self.address, RUNNING_PRIVATE, self.private_detail(pid))
            return ServiceStatus(self.name, self.address, RUNNING_EXISTING, self.running_detail())
        return ServiceStatus(self.name, self.address, DOWN, str(self.unavailable(self.down_fix())))

    def start(self, progress: Progress) -> None:
        raise NotImplementedError

    def ensure(self) -> None:
        """Create what the project needs inside the running service (databases)."""

    def stop(self) -> int | None:
        pid = self.private_pid()
        if pid is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait(lambda: not _pid_alive(pid), 15.0):
            os.kill(pid, signal.SIGKILL)
            _wait(lambda: not _pid_alive(pid), 5.0)
        self.pid_file.unlink(missing_ok=True)
        return pid

    # shared start plumbing
    def _prepare_start(self) -> str:
        if not _is_loopback(self.host):
            raise self.unavailable(self.down_fix())
        exe = _which(self.binary)
        if exe is None:
            raise self.unavailable(self.install_fix(), f"{self.binary} is not installed")
        self.stop()  # a stale private instance from an older configuration
        self.dir.mkdir(parents=True, exist_ok=True)
        return exe

    def install_fix(self) -> str:
        return f"install it (`apt-get install -y {self.binary}`) or start one at {self.address}"

    def _wait_listening(self, timeout: float = 10.0) -> None:
        if not _wait(lambda: listening(self.host, self.port, 0.2), timeout):
            raise self.unavailable(f"see {self.log_file}", f"did not start: {_log_tail(self.log_file)}")


class _Postgres(_Service):
    name, label, binary, env = "postgresql", "PostgreSQL", "postgres", "POSTGRES"

    def down_fix(self) -> str:
        if not _is_loopback(self.host):
            return super().down_fix()
        return PG_START_FIX

    def start(self, progress: Progress) -> None:
        # initdb'ing a private cluster would hide a broken machine setup; say how to start the real one
        raise self.unavailable(self.down_fix())

    def _connect(self):  # -> psycopg.Connection (imported lazily: `status` must stay fast)
        import psycopg

        pg = self.settings.postgres
        try:
            return psycopg.connect(
                host=pg.host,
                port=pg.port,
                user=pg.user,
                password=pg.password.get_secret_value() or None,
                dbname="postgres",
                autocommit=True,
                connect_timeout=5,
            )
        except psycopg.OperationalError as exc:
            cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise self.unavailable(
                f"check HEMS_POSTGRES__USER / HEMS_POSTGRES__PASSWORD or {PG_START_FIX.split('with ', 1)[1]}",
                cause,
            ) from None

    def ensure(self) -> None:
        import psycopg
        from psycopg import sql

        pg = self.settings.postgres
        wanted = [pg.app_database, pg.warehouse_database, pg.dagster_database, pg.mlflow_database]
        with self._connect() as con:
            have = {
                r[0] for r in con.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", [wanted])
            }
            for db in dict.fromkeys(wanted):
                if db in have:
                    continue
                try:
                    con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
                except psycopg.errors.DuplicateDatabase:
                    pass  # created concurrently by another `up`
                except psycopg.Error as exc:
                    raise HemsError(
                        f"PostgreSQL at {self.address}: cannot create database {db!r}: {str(exc).strip()}"
                    ) from None


class _Redis(_Service):
    name, label, binary, env = "redis", "Redis", "redis-server", "REDIS"

    def install_fix(self) -> str:
        return f"install it (`apt-get install -y redis-server`) or start one at {self.address}"

    def start(self, progress: Progress) -> None:
        exe = self._prepare_start()
        progress(f"starting a private Redis at {self.address}")
        bind = "127.0.0.1" if self.host == "localhost" else self.host  # redis binds addresses, not names
        args = [
            exe,
            "--port",
            str(self.port),
            "--bind",
            bind,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--pidfile",
            str(self.pid_file),
            "--dir",
            str(self.dir),
            "--logfile",
            str(self.log_file),
        ]
        password = self.settings.redis.password.get_secret_value()
        if password:
            args += ["--requirepass", password]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise self.unavailable(f"see {self.log_file}", (proc.stderr or proc.stdout).strip()[-300:])
        self._wait_listening()
        _wait(lambda: self.private_pid() is not None, 2.0)


class _Mosquitto(_Service):
    name, label, binary, env = "mosquitto", "Mosquitto", "mosquitto", "MQTT"

    def start(self, progress: Progress) -> None:
        exe = self._prepare_start()
        progress(f"starting a private Mosquitto at {self.address}")
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            "# generated by `hems services up`: a private loopback broker for this project\n"
            f"user {getpass.getuser()}\n"  # keep root when root, so the data dir stays writable
            f"pid_file {self.pid_file}\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            f"log_dest file {self.log_file}\n"
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "connection_messages false\n"  # our readiness probes would fill the log
        )
        proc = subprocess.run([exe, "-d", "-c", str(conf)], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise self.unavailable(
                f"see {self.log_file}",
                (proc.stderr or proc.stdout).strip()[-300:] or _log_tail(self.log_file),
            )
        self._wait_listening()
        _wait(lambda: self.private_pid() is not None, 2.0)


class _Influx(_Service):
    name, label, binary, env = "influxdb", "InfluxDB", "influxd", "INFLUX"

    @property
    def url(self) -> str:
        return self.settings.influx.url

    @property
    def rpc_port(self) -> int:
        """RPC (backup/restore) port: HTTP port + 2, so 8086 gives the usual 8088."""
        return self.port + 2

    def _ping(self) -> httpx.Response | None:
        try:
            return httpx.get(f"{self.url}/ping", timeout=2.0)
        except httpx.HTTPError:
            return None

    def running_detail(self) -> str:
        resp = self._ping()
        version = resp.headers.get("X-Influxdb-Version", "") if resp is not None else ""
        return f"version {version}" if version else ""

    def private_detail(self, pid: int) -> str:
        version = self.running_detail()
        return super().private_detail(pid) + (f", {version}" if version else "")

    def install_fix(self) -> str:
        return "install it: `apt-get install -y influxdb`"

    def find_influxd(self) -> str | None:
        return _which("influxd") or ("/usr/bin/influxd" if Path("/usr/bin/influxd").exists() else None)

    def install(self, progress: Progress) -> str:
        """Install Debian's influxdb package without prompts (refresh the lists only when needed)."""
        progress("installing InfluxDB (Debian package `influxdb`, apt-get) ...")
        prefix: list[str] = []
        if os.geteuid() != 0:
            if shutil.which("sudo") is None:
                raise self.unavailable(
                    "install it as root: `apt-get install -y influxdb`", "influxd not found"
                )
            prefix = ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [
            *prefix,
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-o",
            "DPkg::Lock::Timeout=300",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "influxdb",
        ]

        def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
            try:
                return subprocess.run(
                    cmd, capture_output=True, text=True, env=env, timeout=900, stdin=subprocess.DEVNULL
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise self.unavailable("install it: `apt-get install -y influxdb`", exc) from None

        proc = run(install)
        out = proc.stdout + proc.stderr
        if proc.returncode != 0 and ("Unable to locate package" in out or "no installation candidate" in out):
            progress("refreshing apt package lists (apt-get update) ...")
            run([*prefix, "apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"])
            proc = run(install)
            out = proc.stdout + proc.stderr
        exe = self.find_influxd()
        if exe is None:  # a failing postinst (no init system) is harmless as long as the binary landed
            last = [ln for ln in out.splitlines() if ln.strip()][-1:] or ["no output"]
            raise self.unavailable(
                "install it: `apt-get install -y influxdb`", f"apt-get failed: {last[0].strip()}"
            )
        return exe

    def render_config(self) -> Path:
        template = Template((Path(__file__).parent / "influxdb.conf").read_text())
        conf = self.dir / "influxdb.conf"
        conf.write_text(
            template.substitute(
                data_dir=str(self.dir),
                http_bind=f"{self.host}:{self.port}",
                rpc_bind=f"{self.host}:{self.rpc_port}",
            )
        )
        return conf

    def start(self, progress: Progress) -> None:
        if not _is_loopback(self.host):
            raise self.unavailable(self.down_fix())
        if self.find_influxd() is None:
            self.install(progress)
            if listening(self.host, self.port):  # the package's init script started the system instance
                return
        exe = self._prepare_start()
        if listening(self.host, self.rpc_port):
            raise self.unavailable(
                f"free port {self.rpc_port} (InfluxDB RPC = HTTP port + 2) or change HEMS_INFLUX__PORT",
                f"port {self.rpc_port} is taken",
            )
        conf = self.render_config()
        progress(f"starting a private InfluxDB at {self.address}")
        # through sh so influxd is re-parented at once: it outlives this process and is never our zombie
        cmd = (
            f"nohup {shlex.quote(exe)} -config {shlex.quote(str(conf))} "
            f">>{shlex.quote(str(self.log_file))} 2>&1 </dev/null & echo $!"
        )
        proc = subprocess.run(
            ["sh", "-c", cmd], capture_output=True, text=True, timeout=30, start_new_session=True
        )
        try:
            pid = int(proc.stdout.strip())
        except ValueError:
            cause = f"could not launch influxd: {proc.stderr.strip()}"
            raise self.unavailable(f"see {self.log_file}", cause) from None
        self.pid_file.write_text(f"{pid}\n")

        def ready() -> bool:
            if not _pid_alive(pid):
                raise self.unavailable(f"see {self.log_file}", f"influxd exited: {_log_tail(self.log_file)}")
            resp = self._ping()
            return resp is not None and resp.status_code == 204

        if not _wait(ready, INFLUX_READY_TIMEOUT_S, 0.2):
            raise self.unavailable(
                f"see {self.log_file}",
                f"no /ping answer after {INFLUX_READY_TIMEOUT_S:.0f} s: {_log_tail(self.log_file)}",
            )

    def ensure(self) -> None:
        # plain httpx rather than InfluxRawStore: importing Polars would cost `up` about a second
        cfg = self.settings.influx
        ident = '"' + cfg.database.replace("\\", "\\\\").replace('"', '\\"') + '"'
        auth = (cfg.username, cfg.password.get_secret_value()) if cfg.username else None
        try:
            resp = httpx.post(
                f"{self.url}/query", params={"q": f"CREATE DATABASE {ident}"}, auth=auth, timeout=10
            )
        except httpx.HTTPError as exc:
            raise self.unavailable("start it with `hems services up`", exc) from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        error = resp.headers.get("X-Influxdb-Error") or body.get("error", "")
        error = error or next((r["error"] for r in body.get("results", []) if "error" in r), "")
        if resp.status_code >= 400 and not error:
            error = f"HTTP {resp.status_code} {resp.text}"
        if error:
            raise HemsError(
                f"InfluxDB at {self.address}: cannot create database {cfg.database!r}: {error.strip()[:300]}"
            )


def _services(settings: Settings, only: Iterable[str] | None) -> list[_Service]:
    every: dict[str, _Service] = {
        "postgresql": _Postgres(settings, settings.postgres.host, settings.postgres.port),
        "redis": _Redis(settings, settings.redis.host, settings.redis.port),
        "mosquitto": _Mosquitto(settings, settings.mqtt.host, settings.mqtt.port),
        "influxdb": _Influx(settings, settings.influx.host, settings.influx.port),
    }
    if only is None:
        return list(every.values())
    names = list(only)
    unknown = [n for n in names if n not in every]
    if unknown:
        raise HemsError(f"unknown service(s) {unknown}; known: {list(every)}")
    return [every[n] for n in names]


def _quiet(_: str) -> None:
    pass


# --- public API ------------------------------------------------------------------------------------
def status(settings: Settings, only: Iterable[str] | None = None) -> list[ServiceStatus]:
    """What listens at each configured address, and whether we started it (cheap: no side effects)."""
    return [svc.status() for svc in _services(settings, only)]


def up(
    settings: Settings,
    only: Iterable[str] | None = None,
    *,
    strict: bool = True,
    progress: Progress | None = None,
) -> list[ServiceStatus]:
    """Use running services as they are, start private ones for the missing, create the databases.

    With ``strict`` (the default) a service left unusable raises :class:`ServicesError`, whose
    message is one line per failure naming the service, its address and the fix.
    """
    report = progress or _quiet
    out: list[ServiceStatus] = []
    for svc in _services(settings, only):
        st = svc.status()
        if not st.ok:
            try:
                svc.start(report)
                pid = svc.private_pid()
                if pid is not None:
                    st = ServiceStatus(svc.name, svc.address, STARTED_PRIVATE, svc.private_detail(pid))
                else:  # e.g. the package's init script started the system instance
                    st = ServiceStatus(svc.name, svc.address, RUNNING_EXISTING, "started by its package")
            except HemsError as exc:
                st = ServiceStatus(svc.name, svc.address, DOWN, str(exc))
        if st.ok:
            try:
                svc.ensure()
            except HemsError as exc:
                st = ServiceStatus(svc.name, svc.address, ERROR, str(exc))
        out.append(st)
    if strict and not all(s.ok for s in out):
        raise ServicesError(out)
    return out


def down(settings: Settings, only: Iterable[str] | None = None) -> list[ServiceStatus]:
    """Stop the private services we started; shared ones are reported and left alone."""
    out: list[ServiceStatus] = []
    for svc in _services(settings, only):
        pid = svc.stop()
        if pid is not None:
            out.append(ServiceStatus(svc.name, svc.address, STOPPED, f"stopped private pid {pid}"))
        elif listening(svc.host, svc.port):
            out.append(
                ServiceStatus(svc.name, svc.address, RUNNING_EXISTING, "not started by hems; left running")
            )
        else:
            out.append(ServiceStatus(svc.name, svc.address, DOWN, ""))
    return out
