"""Counter lamps, buzzers and the supervisor's panel, built from a pin map with gpiozero.

Our code never knows whether the pins are real: it takes a gpiozero pin factory (``MockFactory``
off a Pi, gpiozero's default on one), the way gpiozero's own devices do.

Wiring (one counter): three lamps, green/amber/red, each through a transistor or relay channel from
its BCM pin (pin high = lamp on); an optional counter buzzer. The supervisor's panel has a red lamp,
a buzzer and an acknowledge push button from its pin to ground (internal pull-up).

    >>> from gpiozero.pins.mock import MockFactory
    >>> from counterguard.hardware.pinmap import load_pinmap, default_pinmap_path
    >>> board = LampBoard.from_pinmap(load_pinmap(default_pinmap_path()), pin_factory=MockFactory())
    >>> board.show_verdict(3, "red"); board.states()[3]
    'red'
    >>> board.close()
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

BEEP_ON_S = 0.2
BEEP_OFF_S = 0.2
BLINK_ON_S = 0.5   # amber blinking: acknowledged, the supervisor still owes an outcome
BLINK_OFF_S = 0.5
FAULT_ON_S = 0.5   # counter fault: all three lamps flash together, a sight no verdict makes
FAULT_OFF_S = 0.5
COUNTER_BEEPS = 3   # the teller hears it without the customer being alarmed by a siren
PANEL_BEEPS = 5
LEVELS = ("green", "amber", "red")


class CounterLamp:
    """One counter's tower light: shows the latest verdict; red stays lit until acknowledged.

    While red is latched, later green or amber verdicts at that counter do not put it out: the
    supervisor has not yet seen the customer who raised it. Once acknowledged the amber lamp blinks
    until the supervisor records an outcome; a newer verdict at the counter replaces the blinking
    (the teller needs it for the next customer), the console keeps the reminder.
    """

    def __init__(self, pins, pin_factory=None):
        from gpiozero import LED, Buzzer

        self.number = pins.number
        self._leds = {level: LED(getattr(pins, level), pin_factory=pin_factory) for level in LEVELS}
        self._buzzer = Buzzer(pins.buzzer, pin_factory=pin_factory) if pins.buzzer is not None else None
        self.latched = False
        self.blinking = False
        self.faulted = False
        self.level: str | None = None  # None: idle, all lamps off

    @property
    def state(self) -> str:
        if self.faulted:
            return "fault"
        if self.blinking:
            return "amber-blinking"
        return self.level or "off"

    def show(self, level: str) -> None:
        if level not in LEVELS:
            raise ValueError(f"unknown verdict level {level!r}")
        if self.latched and level != "red":
            return
        if level == "red":
            self.latched = True
            if self._buzzer is not None:
                self._buzzer.beep(BEEP_ON_S, BEEP_OFF_S, n=COUNTER_BEEPS, background=True)
        self._light(level)

    def acknowledged(self) -> None:
        """The supervisor has this counter's red alert in hand: lamps off until the next verdict."""
        self.latched = False
        self._light(None)

    def awaiting_outcome(self) -> None:
        """Acknowledged, outcome not yet recorded: amber blinks."""
        self.latched = False
        self._light(None)
        self.blinking = True
        self.level = "amber"
        self._leds["amber"].blink(BLINK_ON_S, BLINK_OFF_S, background=True)

    def fault(self) -> None:
        """The gateway's line to this counter failed (restarted, or given up on): all three lamps
        flash together until the next verdict. A latched red stays: its customer comes first."""
        if self.latched or self.faulted:
            return
        self._light(None)
        self.faulted = True
        for led in self._leds.values():
            led.blink(FAULT_ON_S, FAULT_OFF_S, background=True)

    def closed(self) -> None:
        """The outcome is recorded: a blinking amber (or a red not yet seen acknowledged) goes out;
        a newer verdict stays shown."""
        if self.blinking or self.latched:
            self.latched = False
            self._light(None)

    def _light(self, level: str | None) -> None:
        if level == self.level and not self.blinking and not self.faulted:
            return  # already shown: a run of green verdicts costs no pin writes
        self.level = level
        if self.blinking:
            self.blinking = False
            self._leds["amber"].off()  # stops the blink thread
        if self.faulted:
            self.faulted = False
            for led in self._leds.values():
                led.off()
        for name, led in self._leds.items():
            led.value = name == level

    @property
    def buzzing(self) -> bool:
        return self._buzzer is not None and bool(self._buzzer.value)

    def close(self) -> None:
        for device in (*self._leds.values(), self._buzzer):
            if device is not None:
                device.close()


class SupervisorPanel:
    """The supervisor's red lamp, buzzer and acknowledge button.

    The lamp is on while any red alert waits; the buzzer beeps when one is raised. Pressing the
    button calls ``on_acknowledge()`` (debounced), which acknowledges the oldest open red alert.
    """

    def __init__(self, pins, on_acknowledge=None, pin_factory=None, bounce_s: float = 0.05):
        from gpiozero import LED, Button, Buzzer

        self._red = LED(pins.red, pin_factory=pin_factory)
        self._buzzer = Buzzer(pins.buzzer, pin_factory=pin_factory)
        self._button = Button(pins.acknowledge, pull_up=True, bounce_time=bounce_s, pin_factory=pin_factory)
        self.on_acknowledge = on_acknowledge
        self._button.when_pressed = self._pressed
        self.waiting = 0
        self._beeping_until = 0.0  # monotonic time the current beep series ends

    def _pressed(self) -> None:
        if self.on_acknowledge is not None:
            try:
                self.on_acknowledge()
            except Exception:  # a button press must never kill the pin factory's thread
                log.exception("acknowledge button: handling the press failed")

    def alarm(self, open_reds: int, *, sound: bool = True) -> None:
        """``open_reds`` red alerts are waiting: lamp on, and beep for the one just raised."""
        self.waiting = open_reds
        self._red.value = open_reds > 0
        if sound and open_reds > 0:
            self._beep()

    def _beep(self) -> None:
        # A burst of reds (a mule ring at several counters) is heard as one series: restarting the
        # buzzer's thread for each would cost the counter line more than scoring the event.
        now = time.monotonic()
        if now < self._beeping_until:
            return
        self._beeping_until = now + PANEL_BEEPS * (BEEP_ON_S + BEEP_OFF_S)
        self._buzzer.beep(BEEP_ON_S, BEEP_OFF_S, n=PANEL_BEEPS, background=True)

    def resound(self) -> None:
        """An alert is still unanswered: beep again (the lamp is already on)."""
        self._beeping_until = 0.0
        self._beep()

    def settle(self, open_reds: int) -> None:
        """After an acknowledgement: lamp on only while others still wait; buzzer quiet."""
        self.waiting = open_reds
        self._red.value = open_reds > 0
        if open_reds == 0:
            self._buzzer.off()
            self._beeping_until = 0.0

    @property
    def lit(self) -> bool:
        return bool(self._red.value)

    @property
    def buzzing(self) -> bool:
        return bool(self._buzzer.value)

    def close(self) -> None:
        for device in (self._button, self._red, self._buzzer):
            device.close()


class LampBoard:
    """All the branch's lamps. Thread-safe: counter lines and the button call it concurrently."""

    def __init__(self, counters: dict, panel: SupervisorPanel, *, source: str = "pin map"):
        self.counters = counters
        self.panel = panel
        self.source = source
        self._lock = threading.RLock()
        self._listeners: list = []
        self._unknown_logged: set[int] = set()
        self._closed = False

    @classmethod
    def from_pinmap(cls, pinmap, on_acknowledge=None, pin_factory=None) -> "LampBoard":
        counters = {n: CounterLamp(pins, pin_factory) for n, pins in pinmap.counters.items()}
        panel = SupervisorPanel(pinmap.supervisor, on_acknowledge, pin_factory)
        return cls(counters, panel, source=str(pinmap.source or pinmap.name))

    def on_change(self, listener) -> None:
        """Call ``listener(board)`` after every change (the console lamp view)."""
        self._listeners.append(listener)

    def show_verdict(self, counter: int, level: str) -> None:
        with self._lock:
            lamp = self._lamp(counter)
            if lamp is not None:
                lamp.show(level)
            if level == "red":
                self.panel.alarm(self.panel.waiting + 1)
            self._changed()

    def acknowledged(self, counter: int, open_reds_left: int) -> None:
        """A red alert at ``counter`` was acknowledged; ``open_reds_left`` red alerts still wait."""
        with self._lock:
            lamp = self._lamp(counter)
            if lamp is not None:
                lamp.acknowledged()
            self.panel.settle(open_reds_left)
            self._changed()

    def awaiting_outcome(self, counter: int, open_reds_left: int) -> None:
        """An alert at ``counter`` was acknowledged and that counter has no red open: amber blinks."""
        with self._lock:
            lamp = self._lamp(counter)
            if lamp is not None:
                lamp.awaiting_outcome()
            self.panel.settle(open_reds_left)
            self._changed()

    def closed(self, counter: int) -> None:
        """The last alert awaiting an outcome at ``counter`` is closed."""
        with self._lock:
            lamp = self._lamp(counter)
            if lamp is not None:
                lamp.closed()
            self._changed()

    def counter_fault(self, counter: int) -> None:
        """The gateway's line to ``counter`` failed: its lamps flash the fault pattern."""
        with self._lock:
            lamp = self._lamp(counter)
            if lamp is not None and not lamp.faulted and not lamp.latched:
                lamp.fault()
                self._changed()

    def settle(self, open_reds: int) -> None:
        """``open_reds`` red alerts still wait: the supervisor lamp follows, the buzzer stops at none."""
        with self._lock:
            self.panel.settle(open_reds)
            self._changed()

    def escalated(self, open_reds: int) -> None:
        """A red alert went unacknowledged too long: the supervisor's buzzer sounds again."""
        with self._lock:
            self.panel.waiting = open_reds
            self.panel.resound()
            self._changed()

    def restore(self, red_counters, awaiting_counters=()) -> None:
        """After a restart: relight the red lamps of alerts still waiting, without sounding, and
        blink amber where an outcome is still owed."""
        with self._lock:
            red_counters = list(red_counters)
            for counter in set(red_counters):
                lamp = self._lamp(counter)
                if lamp is not None:
                    lamp.latched = True
                    lamp._light("red")
            for counter in set(awaiting_counters) - set(red_counters):
                lamp = self._lamp(counter)
                if lamp is not None:
                    lamp.awaiting_outcome()
            self.panel.alarm(len(red_counters), sound=False)
            self._changed()

    def states(self) -> dict:
        with self._lock:
            out: dict = {n: lamp.state for n, lamp in self.counters.items()}
            out["supervisor"] = "red" if self.panel.lit else "off"
            return out

    def _lamp(self, counter: int):
        lamp = self.counters.get(counter)
        if lamp is None and counter not in self._unknown_logged:
            self._unknown_logged.add(counter)
            log.warning("counter %d has no lamps in %s; its verdicts reach it only over serial", counter, self.source)
        return lamp

    def _changed(self) -> None:
        for listener in self._listeners:
            try:
                listener(self)
            except Exception:
                log.exception("lamp listener failed")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for lamp in self.counters.values():
                lamp.close()
            self.panel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LampConsole:
    """Prints the lamps as one line whenever they change, for mock pins and the demo:

    ``lamps  c1 [G . .]  c2 [. . R]  c3 [. A .]  c4 [. a .]  supervisor [R]``

    (lower-case ``a``: amber blinking, an outcome is owed; ``[g a r]``: all three flashing, the
    counter's line failed; ``*``: the supervisor's buzzer sounds)
    """

    def __init__(self, board: LampBoard, stream):
        self.stream = stream
        self._last = None
        board.on_change(self._print)

    @staticmethod
    def render(board: LampBoard) -> str:
        cells = []
        for n, lamp in board.counters.items():
            lit = [letter if lamp.level == level else "." for letter, level in zip("GAR", LEVELS)]
            if lamp.blinking:
                lit[1] = "a"  # lower case: blinking
            if lamp.faulted:
                lit = ["g", "a", "r"]
            cells.append(f"c{n} [{' '.join(lit)}]")
        panel = ("R" if board.panel.lit else ".") + ("*" if board.panel.buzzing else "")
        return "lamps  " + "  ".join(cells) + f"  supervisor [{panel}]"

    def _print(self, board: LampBoard) -> None:
        line = self.render(board)
        if line != self._last:
            self._last = line
            self.stream.write(line + "\n")
            self.stream.flush()


def on_raspberry_pi() -> bool:
    try:
        return "raspberry pi" in Path("/proc/device-tree/model").read_text(errors="replace").lower()
    except OSError:
        return False


def pin_factory_for(mode: str = "auto"):
    """The pin factory for ``lamps.pins``: ``mock`` gives gpiozero's MockFactory, ``real`` gives
    gpiozero's default (lgpio on a Pi 5, RPi.GPIO/lgpio elsewhere), ``auto`` real on a Raspberry Pi
    and mock on any other machine (logged, so a Pi that lost its device tree is noticed)."""
    if mode == "real" or (mode == "auto" and on_raspberry_pi()):
        return None
    if mode not in ("auto", "mock"):
        raise ValueError(f"lamps.pins must be auto, mock or real, not {mode!r}")
    from gpiozero.pins.mock import MockFactory

    if mode == "auto":
        log.info("not a Raspberry Pi: lamps run on gpiozero mock pins")
    return MockFactory()
