"""The installer's self-test: every lamp and buzzer in turn, the acknowledge button, every counter line.

``counterguard selftest`` reads the same pin map and config as the gateway, so what it proves is what
the gateway will drive. It must run while the gateway service is stopped (both want the same pins
and ports), prints a pass/fail table with what to fix, and exits 1 if anything failed.

    >>> from gpiozero.pins.mock import MockFactory
    >>> from counterguard.hardware.pinmap import load_pinmap, default_pinmap_path
    >>> checks = walk_outputs(load_pinmap(default_pinmap_path()), MockFactory(), step_s=0)
    >>> all(c.passed for c in checks), len(checks)
    (True, 14)

What "a counter line answers" means: the port opens, the self-test sends a heartbeat (``HB``, wire
protocol v1), and a good frame of any type comes back within the timeout. A counter node sends its
own heartbeat every 2 s when idle (docs/protocol.md, "Link health"), so 5 s is enough for an idle
node; a node with events queued answers with them instead, and resends them to the gateway later.
Bytes that never form a good frame point at the baud rate or swapped A/B wires.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from counterguard.core import wire

BUTTON_TIMEOUT_S = 30.0
SERIAL_TIMEOUT_S = 5.0   # two and a half of the node's 2 s heartbeat periods
STEP_S = 0.5             # long enough for an installer to see each lamp
ROLE = "selftest"        # our heartbeat's role, so an adapter that echoes is not taken for a node


@dataclass(frozen=True)
class Check:
    """One line of the table: ``passed`` is True, False, or None for a check that was skipped."""

    item: str
    passed: bool | None
    detail: str = ""

    @property
    def result(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]


# -- lamps and buzzers -----------------------------------------------------------------------------
def outputs_of(pinmap) -> list[tuple[str, int, str]]:
    """(what, BCM pin, kind) for every output in the order the installer walks the branch:
    counter by counter (green, amber, red, buzzer), then the supervisor's panel."""
    out = []
    for c in pinmap.counters.values():
        for level in ("green", "amber", "red"):
            out.append((f"counter {c.number} {level} lamp", getattr(c, level), "lamp"))
        if c.buzzer is not None:
            out.append((f"counter {c.number} buzzer", c.buzzer, "buzzer"))
    out.append(("supervisor red lamp", pinmap.supervisor.red, "lamp"))
    out.append(("supervisor buzzer", pinmap.supervisor.buzzer, "buzzer"))
    return out


def walk_outputs(pinmap, pin_factory, *, step_s: float = STEP_S, say=lambda line: None) -> list[Check]:
    """Turn each lamp and buzzer on for ``step_s``, then off, one at a time, reading each pin back.

    A pin that cannot be claimed (the gateway service still holds it) or does not read back what was
    written fails that one line; the walk goes on, so one bad channel does not hide the others."""
    from gpiozero import LED, Buzzer
    from gpiozero.exc import GPIOZeroError

    checks = []
    for what, pin, kind in outputs_of(pinmap):
        item = f"{what} (BCM {pin})"
        try:
            device = (LED if kind == "lamp" else Buzzer)(pin, pin_factory=pin_factory)
        except GPIOZeroError as exc:
            checks.append(Check(item, False, f"cannot drive BCM {pin}: {exc}; stop the counterguard "
                                             "service (it holds the pins) and run the self-test again"))
            continue
        try:
            say(f"  {what}: ON  (BCM {pin}) - {'look' if kind == 'lamp' else 'listen'}")
            device.on()
            went_high = bool(device.pin.state)
            time.sleep(step_s)
            device.off()
            went_low = not device.pin.state
            time.sleep(step_s / 4)
        except GPIOZeroError as exc:
            checks.append(Check(item, False, f"BCM {pin} failed while switching: {exc}"))
            continue
        finally:
            device.close()
        if went_high and went_low:
            checks.append(Check(item, True, "pin went high, then low"))
        else:
            stuck = "did not go high" if not went_high else "did not go low again"
            checks.append(Check(item, False, f"BCM {pin} {stuck}: check nothing else drives this pin "
                                             "and the driver board's input is not shorted"))
    return checks


# -- the acknowledge button --------------------------------------------------------------------------
def check_button(pinmap, pin_factory, *, timeout_s: float = BUTTON_TIMEOUT_S, say=lambda line: None) -> Check:
    """Ask the installer to press the supervisor's acknowledge button and wait up to ``timeout_s``."""
    from gpiozero import Button
    from gpiozero.exc import GPIOZeroError

    pin = pinmap.supervisor.acknowledge
    item = f"acknowledge button (BCM {pin})"
    try:
        button = Button(pin, pull_up=True, bounce_time=None, pin_factory=pin_factory)
    except GPIOZeroError as exc:
        return Check(item, False, f"cannot read BCM {pin}: {exc}; stop the counterguard service and try again")
    pressed = threading.Event()
    try:
        if button.is_pressed:
            return Check(item, False, f"reads pressed before anyone touched it: BCM {pin} is shorted to "
                                      "ground, or the button is normally-closed (use a normally-open one)")
        button.when_pressed = pressed.set
        say(f"  press the acknowledge button on the supervisor's panel now (waiting up to {timeout_s:g} s)")
        started = time.monotonic()
        if pressed.wait(timeout_s):
            return Check(item, True, f"pressed after {time.monotonic() - started:.1f} s")
        return Check(item, False, f"not pressed within {timeout_s:g} s: check the button is wired from "
                                  f"BCM {pin} to a GND pin (no resistor needed; the pull-up is internal)")
    finally:
        button.close()


# -- counter lines ---------------------------------------------------------------------------------
def check_serial_port(path: str, *, baudrate: int = 115200, timeout_s: float = SERIAL_TIMEOUT_S,
                      name: str | None = None) -> Check:
    """Open the port, send a heartbeat, and pass once a good frame comes back (see the module doc)."""
    import serial

    from counterguard.gateway.counter.serial_link import SerialLink

    item = f"serial {name} ({path})" if name and name != path else f"serial {path}"
    try:
        link = SerialLink(path, baudrate=baudrate, name=name, must_exist=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        return Check(item, False, f"cannot open: {exc}; check the adapter is plugged in (ls /dev/serial/by-id/) "
                                  "and that the counterguard service is stopped")
    decoder = wire.FrameDecoder()
    damaged: dict[str, int] = {}
    echoed = False
    started = time.monotonic()
    try:
        if not link.write(wire.encode_frame("HB", 1, {"role": ROLE, "ts": round(time.time(), 3)})):
            return Check(item, False, "opened, but a heartbeat could not be written; check the adapter")
        deadline = started + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            for frame in decoder.feed(link.read(min(0.1, left))):
                if not isinstance(frame, wire.Frame):
                    damaged[frame.code] = damaged.get(frame.code, 0) + 1
                elif frame.body.get("role") == ROLE:
                    echoed = True  # our own heartbeat coming back from an echoing adapter
                else:
                    who = frame.body.get("role") or "far end"
                    return Check(item, True, f"{frame.type} from the {who} after {time.monotonic() - started:.1f} s")
            if link.state != "open":
                return Check(item, False, "the port went away during the test; check the USB cable")
    finally:
        link.close()
    if damaged:
        seen = ", ".join(f"{code} x{n}" for code, n in sorted(damaged.items()))
        return Check(item, False, f"bytes arrive but no good frame in {timeout_s:g} s ({seen}): check the baud rate "
                                  f"({baudrate}) matches the node's, A to A and B to B, and the 120 ohm terminators")
    hint = "only our own heartbeat came back (the adapter echoes); " if echoed else ""
    return Check(item, False, f"{hint}silent for {timeout_s:g} s: check the counter node is powered, its RS-485 "
                              "pair is wired A to A and B to B with GND, and its baud rate matches")


# -- the whole run ---------------------------------------------------------------------------------
def run_selftest(pinmap, pin_factory, ports=(), *, step_s: float = STEP_S, button_timeout_s: float = BUTTON_TIMEOUT_S,
                 serial_timeout_s: float = SERIAL_TIMEOUT_S, say=lambda line: None) -> list[Check]:
    """Lamps and buzzers, then the button, then each ``(path, baudrate, name)`` port; every check's line."""
    say(f"lamps and buzzers from {pinmap.source or pinmap.name}, one at a time:")
    checks = walk_outputs(pinmap, pin_factory, step_s=step_s, say=say)
    checks.append(check_button(pinmap, pin_factory, timeout_s=button_timeout_s, say=say))
    if not ports:
        checks.append(Check("serial ports", None, "none configured; give --config with [[serial]] ports or --port"))
    for path, baudrate, name in ports:
        say(f"  listening on {name or path} for up to {serial_timeout_s:g} s")
        checks.append(check_serial_port(path, baudrate=baudrate, timeout_s=serial_timeout_s, name=name))
    return checks


def render_table(checks: list[Check]) -> str:
    width = max(len("check"), *(len(c.item) for c in checks))
    lines = [f"{'check':<{width}}  result  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{c.item:<{width}}  {c.result:<6}  {c.detail}".rstrip() for c in checks]
    failed = sum(c.passed is False for c in checks)
    passed = sum(c.passed is True for c in checks)
    lines.append(f"\nselftest: {passed} passed, {failed} failed" + (
        "; fix the FAIL lines above and run it again" if failed else ""))
    return "\n".join(lines)


def selftest_command(args, *, pin_factory=None, out=None) -> int:
    """``counterguard selftest``; ``pin_factory`` and ``out`` let a test hold the mock pins it drives."""
    from counterguard.gateway.config import Config, load_config
    from counterguard.gateway.counter.lamps import pin_factory_for
    from counterguard.hardware.pinmap import PinMapError, default_pinmap_path, load_pinmap

    out = out or sys.stdout
    config = load_config(args.config) if args.config else Config()
    try:
        pinmap = load_pinmap(args.pinmap or config.lamps.pinmap or default_pinmap_path())
    except PinMapError as exc:
        print(f"counterguard selftest: {exc}", file=sys.stderr)
        return 2
    ports = [(s.path, s.baudrate, s.name or None) for s in config.serial]
    ports += [(path, args.baudrate, None) for path in args.port]
    if pin_factory is None:
        pin_factory = pin_factory_for("mock" if args.mock else config.lamps.pins)
    if pin_factory is None:  # real pins: find out now, not once per lamp, if this machine has none
        from gpiozero import Device
        from gpiozero.exc import BadPinFactory

        try:
            pin_factory = Device.ensure_pin_factory()
        except BadPinFactory as exc:
            print(f"counterguard selftest: lamps.pins is real but this machine has no usable GPIO ({exc}); "
                  "run it on the gateway, or use --mock", file=sys.stderr)
            return 2

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    if type(pin_factory).__name__ == "MockFactory":
        say("mock pins: no lamp really lights (not a Raspberry Pi, or --mock)")
    checks = run_selftest(pinmap, pin_factory, ports, step_s=args.step, button_timeout_s=args.button_timeout,
                          serial_timeout_s=args.serial_timeout, say=say)
    say("\n" + render_table(checks))
    return 1 if any(c.passed is False for c in checks) else 0


def _selftest(args) -> int:
    return selftest_command(args)


# -- wiring diagrams ---------------------------------------------------------------------------------
def _wiring(args) -> int:
    from counterguard.hardware import wiring
    from counterguard.hardware.pinmap import PinMapError, load_pinmap

    try:
        if args.pinmap:
            svg = wiring.render_svg(load_pinmap(args.pinmap))
            if args.output in (None, "-"):
                sys.stdout.write(svg)
            else:
                Path(args.output).write_text(svg, encoding="utf-8")
                print(f"wrote {args.output}")
            return 0
        if args.check:
            stale = wiring.stale_diagrams()
            for path in stale:
                print(f"{path}: out of date with its pin map; run `counterguard wiring` and commit it", file=sys.stderr)
            return 1 if stale else 0
        for path in wiring.write_all():
            print(f"wrote {path}")
        return 0
    except PinMapError as exc:
        print(f"counterguard wiring: {exc}", file=sys.stderr)
        return 2


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 3600 seconds")
    return value


def add_commands(sub) -> None:
    p = sub.add_parser("selftest", help="walk every lamp and buzzer, wait for the acknowledge button, check serial ports",
                       description="Light every lamp and sound every buzzer of the pin map in turn, ask for the "
                                   "acknowledge button, and check each counter line answers a heartbeat; print a "
                                   "pass/fail table and exit 1 on any failure. Stop the gateway service first. "
                                   "Off a Raspberry Pi it runs on mock pins.")
    p.add_argument("-c", "--config", metavar="FILE", help="gateway TOML file: its pin map, pin mode and [[serial]] ports")
    p.add_argument("--pinmap", metavar="FILE", help="pin map to test (default: the config's, else the Pi 4 map)")
    p.add_argument("--port", metavar="PATH", action="append", default=[],
                   help="also check this serial port (repeatable)")
    p.add_argument("--baudrate", type=int, default=115200, help="baud rate for --port ports (default 115200)")
    p.add_argument("--mock", action="store_true", help="use mock pins even on a Raspberry Pi")
    p.add_argument("--button-timeout", metavar="S", type=_seconds, default=BUTTON_TIMEOUT_S,
                   help=f"seconds to wait for the acknowledge button (default {BUTTON_TIMEOUT_S:g})")
    p.add_argument("--serial-timeout", metavar="S", type=_seconds, default=SERIAL_TIMEOUT_S,
                   help=f"seconds to wait for each port to answer (default {SERIAL_TIMEOUT_S:g})")
    p.add_argument("--step", metavar="S", type=_seconds, default=STEP_S,
                   help=f"seconds each lamp and buzzer stays on (default {STEP_S:g})")
    p.set_defaults(func=_selftest)

    p = sub.add_parser("wiring", help="draw the wiring diagram (SVG) of a pin map",
                       description="Without --pinmap: regenerate hardware/wiring-<map>.svg for every shipped pin "
                                   "map (--check: only report diagrams that are out of date). With --pinmap: draw "
                                   "that map to --output or stdout.")
    p.add_argument("--pinmap", metavar="FILE", help="draw this pin map instead of the shipped ones")
    p.add_argument("-o", "--output", metavar="FILE.svg", help="where to write the --pinmap diagram (default stdout)")
    p.add_argument("--check", action="store_true", help="exit 1 if a shipped diagram differs from its pin map")
    p.set_defaults(func=_wiring)
