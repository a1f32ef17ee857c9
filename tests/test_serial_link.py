"""The serial link on real ptys: stable by-id style paths, and a port unplugged and plugged back in
is reopened by itself, logged, with nothing the gateway already acknowledged lost."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import tty

import pytest
import serial

from counterguard.gateway.ops.app import Gateway
from counterguard.gateway.counter.serial_link import SerialLink
from counterguard.gateway.counter.terminal import TellerTerminal

from harness import event, gateway_config, intercept


class Cable:
    """A pty standing in for a USB serial adapter, reachable through a by-id style symlink."""

    def __init__(self, link_path):
        self.link_path = link_path
        self.plug()

    def plug(self):
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        if os.path.lexists(self.link_path):
            os.unlink(self.link_path)
        os.symlink(os.ttyname(self._slave), self.link_path)

    def unplug(self):
        os.close(self.master)
        os.close(self._slave)
        os.unlink(self.link_path)

    def read(self, timeout=1.0):
        import select

        if select.select([self.master], [], [], timeout)[0]:
            return os.read(self.master, 4096)
        return b""


def wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def cable(tmp_path):
    c = Cable(str(tmp_path / "usb-counterguard_node_3-if00-port0"))
    yield c
    try:
        c.unplug()
    except OSError:
        pass


def test_a_by_id_path_is_followed_to_its_device(cable):
    with SerialLink(cable.link_path) as link:
        link.read(0.01)  # opens it (pyserial flushes what arrived before the open)
        os.write(cable.master, b"hello\n")
        got = b""
        deadline = time.monotonic() + 2
        while b"\n" not in got and time.monotonic() < deadline:
            got += link.read(0.1)
        assert got == b"hello\n" and link.state == "open" and link.generation == 1
        assert link.write(b"verdict\n")
        assert cable.read() == b"verdict\n"


def test_unplugged_and_replugged_port_is_reopened_and_logged(cable, caplog):
    caplog.set_level(logging.INFO, logger="counterguard.gateway.counter.serial_link")
    link = SerialLink(cable.link_path, reopen_interval=0.1)
    try:
        link.read(0.05)
        assert link.state == "open"
        cable.unplug()
        assert wait(lambda: (link.read(0.05), link.state)[1] == "lost")
        assert link.write(b"x") is False
        assert any("lost" in r.getMessage() for r in caplog.records)
        cable.plug()  # the adapter comes back, maybe under another /dev/pts number
        assert wait(lambda: (link.read(0.05), link.state)[1] == "open")
        assert link.generation == 2 and link.reopens == 1
        assert any("reopened" in r.getMessage() for r in caplog.records)
        os.write(cable.master, b"after\n")
        assert wait(lambda: link.read(0.05) == b"after\n")
    finally:
        link.close()
    assert link.state == "closed"


def test_a_port_missing_at_start_is_waited_for_without_blocking(tmp_path):
    path = tmp_path / "usb-not-yet"
    link = SerialLink(str(path), reopen_interval=0.05)
    t0 = time.monotonic()
    assert link.read(0.1) == b"" and link.state == "lost"
    assert time.monotonic() - t0 < 1.0
    cable = Cable(str(path))
    try:
        assert wait(lambda: (link.read(0.05), link.state)[1] == "open")
    finally:
        link.close()
        cable.unplug()


def test_must_exist_fails_at_once_for_an_installer(tmp_path):
    with pytest.raises(serial.SerialException):
        SerialLink(str(tmp_path / "usb-typo"), must_exist=True)


def test_a_replugged_counter_line_loses_no_acknowledged_event(tmp_path, broker, cable):
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=cable.link_path)
    with Gateway(cfg) as gw:
        acked = {}
        for body in [event(counter=1), intercept(counter=1), event(counter=1)]:
            acked[body["event_id"]] = TellerTerminal(cable.master, timeout=1.0).send(body).body["level"]
        line = gw.lines[0]
        # Pulled mid-frame: half a frame goes out, then the cable.
        os.write(cable.master, b'$EVT 40 {"event_id":"half')
        time.sleep(0.1)
        cable.unplug()
        assert wait(lambda: line.link.state == "lost")
        cable.plug()
        assert wait(lambda: line.link.state == "open", timeout=5)
        terminal = TellerTerminal(cable.master, timeout=1.0)
        for body in [event(counter=1), intercept(counter=1)]:
            acked[body["event_id"]] = terminal.send(body).body["level"]
        assert line.link.reopens == 1
    with sqlite3.connect(cfg.store.path) as db:
        stored = dict(db.execute("select event_id, level from verdicts"))
    assert stored == acked
