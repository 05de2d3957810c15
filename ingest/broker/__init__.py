"""The shipped Mosquitto configuration, and a private broker started with it (tests, benchmarks)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from string import Template

from hems.services.manager import free_port, listening

CONFIG_TEMPLATE = Path(__file__).with_name("mosquitto.conf")
MOSQUITTO = "/usr/sbin/mosquitto"


def render_config(
    directory: Path,
    port: int,
    *,
    auth: str = "allow_anonymous true",
    overrides: dict[str, str] | None = None,
) -> Path:
    """Write ``mosquitto.conf`` for a broker on ``127.0.0.1:port`` with its data under ``directory``;
    ``overrides`` replace the values of settings the shipped config has (a test shrinking the
    in-flight window, say); an unknown one is an error, not a silently ignored line."""
    directory.mkdir(parents=True, exist_ok=True)
    text = Template(CONFIG_TEMPLATE.read_text()).substitute(
        port=port,
        data_dir=str(directory),
        log_file=str(directory / "mosquitto.log"),
        pid_file=str(directory / "mosquitto.pid"),
        auth=auth,
    )
    for key, value in (overrides or {}).items():
        text, n = re.subn(rf"^{re.escape(key)} .*$", f"{key} {value}", text, flags=re.MULTILINE)
        if n != 1:
            raise ValueError(f"{key!r} is not a setting of the shipped mosquitto.conf")
    if os.geteuid() == 0:  # mosquitto drops root to "mosquitto" unless told otherwise
        text = "user root\n" + text
    conf = directory / "mosquitto.conf"
    conf.write_text(text)
    return conf


class PrivateBroker:
    """A Mosquitto started with the shipped config on a free loopback port; restartable."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        binary: str = MOSQUITTO,
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.dir, self.port, self.binary = Path(directory), port or free_port(), binary
        self.overrides = overrides
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> PrivateBroker:
        conf = render_config(self.dir, self.port, overrides=self.overrides)
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not listening("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (
                    (self.dir / "mosquitto.log").read_text()[-500:]
                    if (self.dir / "mosquitto.log").exists()
                    else ""
                )
                raise RuntimeError(f"mosquitto did not start on port {self.port}: {log}")
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """SIGTERM saves the persistence file; SIGKILL simulates a crash."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> PrivateBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
