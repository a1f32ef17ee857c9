"""The installer's self-test on gpiozero mock pins, real ptys and the real counter-node firmware:
every lamp and buzzer is walked one at a time, the button must really be pressed, each counter line
must really answer, and every failure says what to fix and makes the command exit 1."""

from __future__ import annotations

import io
import re
import os
import threading
import time

import pytest
from gpiozero import LED
from gpiozero.pins.mock import MockFactory, MockPin

from firmware_harness import Node, Pty, Relay
from counterguard.cli import build_parser
from counterguard.gateway.counter.lamps import on_raspberry_pi
from counterguard.hardware.pinmap import default_pinmap_path, load_pinmap, pinmap_dir
from counterguard.gateway.ops.selftest import (
    check_button,
    check_serial_port,
    outputs_of,
    selftest_command,
    walk_outputs,
)

ZERO = default_pinmap_path("zero2w")  # two counters, each with its own buzzer


class Console(io.StringIO):
    """What the installer sees, readable while the self-test is still running."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()

    def write(self, text):
        with self._lock:
            return super().write(text)

    def text(self):
        with self._lock:
            return self.getvalue()


def press_when_asked(factory, pin, console, *, timeout=30.0):
    """The installer: waits for the prompt, then presses and releases the button (a bounded wait)."""

    def installer():
        deadline = time.monotonic() + timeout
        while "press the acknowledge button" not in console.text():
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        factory.pin(pin).drive_low()
        factory.pin(pin).drive_high()

    thread = threading.Thread(target=installer, daemon=True)
    thread.start()
    return thread


class RecordingPin(MockPin):
    """A mock pin that also notes every change in one list shared by all pins, so the order of
    changes across pins can be read back."""

    changes: list = []

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed:
            RecordingPin.changes.append((int(self.info.name.removeprefix("GPIO")), bool(value)))
        return changed


@pytest.mark.parametrize("path", sorted(pinmap_dir().glob("*.toml")), ids=lambda p: p.stem)
def test_every_lamp_and_buzzer_goes_on_then_off_one_at_a_time_in_walk_order(path):
    pinmap = load_pinmap(path)
    factory = MockFactory(pin_class=RecordingPin)
    RecordingPin.changes = []
    try:
        checks = walk_outputs(pinmap, factory, step_s=0.005)
    finally:
        factory.reset()
    outputs = outputs_of(pinmap)
    assert [c.passed for c in checks] == [True] * len(outputs)
    # Every pin of the map but the button is walked, and nothing else.
    assert {pin for _, pin, _ in outputs} == set(pinmap.uses()) - {pinmap.supervisor.acknowledge}
    expected = [change for _, pin, _ in outputs for change in ((pin, True), (pin, False))]
    assert RecordingPin.changes == expected


def test_the_table_names_each_lamp_and_its_pin(factory):
    checks = walk_outputs(load_pinmap(ZERO), factory, step_s=0)
    items = [c.item for c in checks]
    assert items[:4] == ["counter 1 green lamp (BCM 17)", "counter 1 amber lamp (BCM 27)",
                         "counter 1 red lamp (BCM 22)", "counter 1 buzzer (BCM 4)"]
    assert items[-2:] == ["supervisor red lamp (BCM 12)", "supervisor buzzer (BCM 18)"]


def test_a_pin_held_by_something_else_fails_its_line_and_the_walk_goes_on(factory):
    held = LED(27, pin_factory=factory)  # as if the gateway service still held counter 1's amber lamp
    try:
        checks = walk_outputs(load_pinmap(ZERO), factory, step_s=0)
    finally:
        held.close()
    failed = [c for c in checks if not c.passed]
    assert [c.item for c in failed] == ["counter 1 amber lamp (BCM 27)"]
    assert "BCM 27" in failed[0].detail and "stop the counterguard service" in failed[0].detail
    assert sum(c.passed for c in checks) == len(checks) - 1


def test_the_button_passes_only_when_pressed(factory):
    pinmap = load_pinmap(ZERO)
    console = Console()
    press_when_asked(factory, pinmap.supervisor.acknowledge, console)
    check = check_button(pinmap, factory, timeout_s=30, say=lambda line: console.write(line + "\n"))
    assert check.passed is True, check.detail


def test_a_button_nobody_presses_fails_naming_its_pin_and_ground(factory):
    check = check_button(load_pinmap(ZERO), factory, timeout_s=0.2)
    assert check.passed is False
    assert "not pressed within 0.2 s" in check.detail and "BCM 16 to a GND pin" in check.detail


class ShortedToGround(MockPin):
    """A mock input wired straight to ground: the internal pull-up cannot raise it."""

    def _set_pull(self, value):
        super()._set_pull(value)
        self.drive_low()


def test_a_button_shorted_to_ground_fails_before_asking():
    factory = MockFactory(pin_class=ShortedToGround)
    asked = []
    try:
        check = check_button(load_pinmap(ZERO), factory, timeout_s=5, say=asked.append)
    finally:
        factory.reset()
    assert check.passed is False and "reads pressed before anyone touched it" in check.detail
    assert asked == []  # failed at once, without waiting for the installer


# -- counter lines -----------------------------------------------------------------------------------
@pytest.fixture
def rs485():
    """A teller terminal's pty, the counter node's gateway-side pty, and the gateway's end of the
    RS-485 pair (a relay between the two ptys); the self-test opens ``gateway.path``."""
    terminal, node_side, gateway = Pty(), Pty(), Pty()
    relay = Relay(node_side.master, gateway.master).start()
    yield terminal, node_side, gateway
    relay.stop()
    for p in (terminal, node_side, gateway):
        p.close()


def test_a_counter_node_running_the_real_firmware_answers(rs485, tmp_path):
    terminal, node_side, gateway = rs485
    node = Node(terminal.path, node_side.path, tmp_path / "state", counter=2, heartbeat_ms=500).start()
    try:
        check = check_serial_port(gateway.path, timeout_s=30, name="counter 2")
    finally:
        node.kill()
    assert check.passed is True, check.detail + node.errors()
    assert check.item == f"serial counter 2 ({gateway.path})"
    assert "HB from the node" in check.detail


def _heartbeat_arrives(fd):
    """What the far end receives up to the self-test's first line feed (its heartbeat)."""
    deadline = time.monotonic() + 10
    data = b""
    while b"\n" not in data and time.monotonic() < deadline:
        try:
            data += os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(0.01)
    return data


def _noise(fd):
    # A node at the wrong baud rate: once the port is open, bytes come that never make a frame.
    _heartbeat_arrives(fd)
    os.write(fd, b"\x80\xfe\x13 garbage at the wrong baud rate\n" * 3)


def _echo_only(fd):
    # An adapter that echoes what it sends, with nothing on the far end: our own heartbeat comes back.
    os.write(fd, _heartbeat_arrives(fd))


@pytest.mark.parametrize("far_end, words", [
    (None, "silent for 2 s: check the counter node is powered"),
    (_noise, "bytes arrive but no good frame in 2 s (noise x3): check the baud rate (115200)"),
    (_echo_only, "only our own heartbeat came back"),
])
def test_a_line_that_does_not_answer_fails_saying_what_to_check(far_end, words):
    port = Pty()
    try:
        os.set_blocking(port.master, False)
        if far_end is not None:
            threading.Thread(target=far_end, args=(port.master,), daemon=True).start()
        check = check_serial_port(port.path, timeout_s=2)
    finally:
        port.close()
    assert check.passed is False
    assert words in check.detail


def test_a_port_that_is_not_there_fails_naming_it(tmp_path):
    missing = str(tmp_path / "ttyUSB9")
    check = check_serial_port(missing, timeout_s=1)
    assert check.passed is False and check.item == f"serial {missing}"
    assert "cannot open" in check.detail and "ls /dev/serial/by-id/" in check.detail


# -- the command -------------------------------------------------------------------------------------
def _config(tmp_path, port_path):
    path = tmp_path / "gateway.toml"
    path.write_text(f'[[serial]]\npath = "{port_path}"\nname = "counter 2"\n\n'
                    f'[lamps]\npinmap = "{ZERO}"\npins = "mock"\n')
    return path


def test_the_command_passes_with_the_button_pressed_and_the_node_answering(rs485, tmp_path, factory):
    terminal, node_side, gateway = rs485
    node = Node(terminal.path, node_side.path, tmp_path / "state", counter=2, heartbeat_ms=500).start()
    console = Console()
    args = build_parser().parse_args(["selftest", "--config", str(_config(tmp_path, gateway.path)),
                                      "--step", "0", "--button-timeout", "30", "--serial-timeout", "30"])
    press_when_asked(factory, 16, console)
    try:
        code = selftest_command(args, pin_factory=factory, out=console)
    finally:
        node.kill()
    text = console.text()
    assert code == 0, text + node.errors()
    table = text[text.index("check "):]
    assert table.count("PASS") == 8 + 2 + 1 + 1  # 6 counter lamps, 2 counter buzzers, panel lamp+buzzer, button, line
    assert "FAIL" not in table and "selftest: 12 passed, 0 failed" in table


def test_the_command_fails_clearly_when_nobody_presses_the_button(tmp_path, factory):
    console = Console()
    args = build_parser().parse_args(["selftest", "--pinmap", str(ZERO), "--mock", "--step", "0",
                                      "--button-timeout", "0.2"])
    assert selftest_command(args, pin_factory=factory, out=console) == 1
    text = console.text()
    assert re.search(r"^acknowledge button \(BCM 16\) +FAIL +not pressed within 0.2 s", text, re.M)
    assert "serial ports" in text and "SKIP" in text  # no port given: said so, not counted as a pass
    assert "selftest: 10 passed, 1 failed; fix the FAIL lines above" in text


def test_a_bad_pin_map_stops_the_command_naming_the_file_and_key(tmp_path, capsys):
    bad = tmp_path / "branch.toml"
    bad.write_text(ZERO.read_text().replace("amber = 27", "amber = 14"))
    args = build_parser().parse_args(["selftest", "--pinmap", str(bad), "--mock"])
    assert selftest_command(args, pin_factory=MockFactory()) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "counter 1.amber" in err and "reserved for UART TXD" in err


@pytest.mark.skipif(on_raspberry_pi(), reason="a Raspberry Pi has real pins")
def test_real_pins_asked_for_off_a_pi_stop_the_command_saying_to_use_mock(tmp_path, capsys):
    config = tmp_path / "gateway.toml"
    config.write_text('[lamps]\npins = "real"\n')
    args = build_parser().parse_args(["selftest", "--config", str(config), "--step", "0"])
    assert selftest_command(args) == 2
    err = capsys.readouterr().err
    assert "no usable GPIO" in err and "use --mock" in err
