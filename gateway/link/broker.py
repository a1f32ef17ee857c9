"""A private mosquitto broker on a free loopback port, for ``counterguard demo`` and for tests.

It writes its own config to a temporary directory, so it never touches the system broker, and it
stops the process it started by its PID. ``start()`` after ``stop()`` comes back on the same port,
which is how an outage of the centre's broker is rehearsed.

    with PrivateBroker() as broker:
        print(broker.host, broker.port)   # 127.0.0.1 and a free port
        broker.stop()                     # the centre is unreachable ...
        broker.start()                    # ... and back, same port

Requires Debian's mosquitto (``apt-get install mosquitto``); the system service need not run.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto")


class BrokerError(RuntimeError):
    """The private broker could not be started; the message says what to do."""


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or next((p for p in CANDIDATES if Path(p).exists()), None)
    if not found:
        raise BrokerError("mosquitto is not installed; install it with 'apt-get install mosquitto' "
                          "(the system service does not need to run)")
    return found


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A free port below the kernel's ephemeral range: a port the kernel hands out to outgoing
    connections may be some client's local end at the moment a restarted broker wants it back."""
    low, _ = _ephemeral_range()
    for _ in range(200):
        port = random.randrange(10000, max(10001, low))
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # a crowded range: let the kernel choose
        s.bind((host, 0))
        return s.getsockname()[1]


class PrivateBroker:
    """mosquitto on ``host:port`` (loopback, anonymous, no persistence unless asked)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None, persistence: bool = False,
                 start_timeout: float = 10.0):
        self.host = host
        self.port = port or free_port(host)
        self.persistence = persistence
        self.start_timeout = start_timeout
        self._binary = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _config(self) -> Path:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="counterguard-broker-")
        d = Path(self._dir.name)
        lines = [f"listener {self.port} {self.host}", "allow_anonymous true",
                 f"persistence {'true' if self.persistence else 'false'}", "log_dest stderr",
                 "log_type error", "log_type warning", "max_queued_messages 0"]
        if self.persistence:
            lines.append(f"persistence_location {d}/")
        path = d / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> "PrivateBroker":
        if self.running:
            return self
        self._binary = self._binary or find_mosquitto()
        config = self._config()
        log = open(Path(self._dir.name) / "mosquitto.log", "ab")
        try:
            self._proc = subprocess.Popen([self._binary, "-c", str(config)], stdout=log, stderr=log,
                                          stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                detail = self._log_tail()
                self._proc = None
                raise BrokerError(f"mosquitto exited at start on {self.host}:{self.port}: {detail or 'no output'}; "
                                  "is the port taken by another program?")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not accept connections on {self.host}:{self.port} "
                          f"within {self.start_timeout:.0f} s")

    def _log_tail(self) -> str:
        try:
            return (Path(self._dir.name) / "mosquitto.log").read_text(errors="replace").strip()[-500:]
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the broker (by its PID) and wait for it. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)

    def close(self) -> None:
        """Stop the broker and remove its temporary directory."""
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> "PrivateBroker":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrivateBroker({self.host}:{self.port}, {'running' if self.running else 'stopped'})"
