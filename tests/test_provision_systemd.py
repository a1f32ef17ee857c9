"""The gateway under systemd: it says READY once started and pings the watchdog only while healthy."""

from __future__ import annotations

import socket
import threading

import pytest

from counterguard.gateway.ops import sd_notify


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    """A datagram socket standing where systemd's notify socket would be."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(20)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def test_ready_reaches_systemd_with_a_status_line(systemd):
    assert sd_notify.ready("gateway gw-1: 2 counter line(s)")
    assert systemd.recv(1024) == b"READY=1\nSTATUS=gateway gw-1: 2 counter line(s)"


def test_the_watchdog_is_pinged_while_healthy_and_not_once_unhealthy(systemd):
    healthy = threading.Event()
    healthy.set()
    stop = threading.Event()
    watchdog = sd_notify.Watchdog(healthy=healthy.is_set)
    assert watchdog.interval_s == 0.2
    watchdog.start(stop)
    try:
        assert systemd.recv(64) == b"WATCHDOG=1"
        healthy.clear()
        # drain a ping that may have been in flight, then expect silence for several periods
        systemd.settimeout(1.0)
        received = []
        try:
            while True:
                received.append(systemd.recv(64))
        except TimeoutError:
            pass
        assert len(received) <= 1
    finally:
        stop.set()


def test_outside_systemd_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sd_notify.ready() is False
    assert sd_notify.Watchdog().interval_s is None
