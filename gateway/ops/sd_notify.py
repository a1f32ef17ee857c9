"""Telling systemd the gateway is up and still alive (``Type=notify`` + ``WatchdogSec=`` in the unit).

Outside systemd (no ``NOTIFY_SOCKET``) everything here does nothing. Under it, ``ready()`` says the
gateway has started, and ``Watchdog`` sends ``WATCHDOG=1`` at half the interval systemd asked for,
but only while ``healthy()`` is true: a gateway with a counter line that kept stopping after its
supervisor restarted it (``LineSupervisor.healthy()``) stops pinging, and systemd restarts the
service (``Restart=on-failure``).

    watchdog = Watchdog(healthy=supervisor.healthy).start(stop_event)
    ready("gateway gw-0017: 4 counter lines")
"""

from __future__ import annotations

import logging
import os
import socket
import threading

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send one notification (e.g. ``READY=1``) to systemd; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract socket namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
        return True
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False


def ready(status: str = "") -> bool:
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def stopping() -> bool:
    return notify("STOPPING=1")


def watchdog_interval_s() -> float | None:
    """The watchdog period systemd set for this process, or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6
    except ValueError:
        return None


class Watchdog:
    """Pings systemd's watchdog while the gateway is healthy."""

    def __init__(self, healthy=lambda: True, interval_s: float | None = None):
        self.healthy = healthy
        self.interval_s = interval_s if interval_s is not None else watchdog_interval_s()
        self._thread: threading.Thread | None = None

    def start(self, stop: threading.Event) -> "Watchdog":
        if self.interval_s and self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(stop,), name="systemd-watchdog", daemon=True)
            self._thread.start()
        return self

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s / 2):
            if self.healthy():
                notify("WATCHDOG=1")
            else:
                log.error("gateway unhealthy: not pinging the systemd watchdog, systemd will restart the service")
