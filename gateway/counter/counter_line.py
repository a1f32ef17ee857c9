"""One counter line: a serial port, its frame decoder and the pipeline, run by one thread.

Bytes are read in whatever chunks arrive; every complete frame in a chunk is handled as one batch,
so under load many events share one commit while a lone event is answered at once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

from counterguard.core import wire
from counterguard.gateway.counter.pipeline import Pipeline

log = logging.getLogger(__name__)

# After a turn fails, wait before the next: 0.05 s doubling to 5 s, so a fault that repeats on every
# turn (a lamp driver gone, a port that raises) costs a log line every few seconds, not a busy CPU.
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 5.0
# Beside the store: the running gateway's counter lines, for `counterguard doctor` (which runs as
# its own process and cannot ask the gateway).
STATUS_FILE = "counter-lines.json"


class CounterLine:
    """Serves one serial port until ``stop`` is set.

    ``on_verdicts(verdicts)`` runs after the replies are written (lamps); ``on_alerts(alerts)`` after
    that (uplink wake-up). Frame-to-lamp times in seconds are kept in ``latencies`` (most recent).
    """

    def __init__(self, link, pipeline: Pipeline, *, heartbeat_s: float = 2.0, silent_after_s: float = 6.0,
                 on_verdicts=None, on_alerts=None, name: str | None = None):
        self.link = link
        self.pipeline = pipeline
        self.decoder = wire.FrameDecoder()
        self.heartbeat_s = heartbeat_s
        self.silent_after_s = silent_after_s
        self.on_verdicts = on_verdicts or (lambda verdicts: None)
        self.on_alerts = on_alerts or (lambda alerts: None)
        self.name = name or getattr(link, "path", "serial")
        self.latencies: deque = deque(maxlen=100_000)
        self.frames_in = 0
        self.last_rx = None  # monotonic time of the last byte from the counter
        self.busy_s = 0.0  # seconds spent answering frames since start: how loaded the line is
        self.answered_at = 0.0  # monotonic time the line last answered frames (the uplink yields to it)
        self._hb_seq = 0
        self._last_tx = 0.0
        self._generation = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.counters: set[int] = set()  # counter numbers this line has carried verdicts for
        self.faults = 0  # turns that failed and were survived (logged)
        self.restarts = 0  # times the supervisor restarted this line's thread
        self.last_fault: str | None = None
        self.given_up = False  # the supervisor stopped restarting it: the service must restart

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, stop: threading.Event | None = None) -> None:
        if stop is not None:
            self._stop = stop
        if self._thread is not None:  # a restart: whatever the last thread left half-read is gone
            self.decoder.reset()
        self._thread = threading.Thread(target=self.run, name=f"counter-line {self.name}", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def thread_state(self) -> str:
        """``running``; ``restarting`` (stopped, the supervisor will start it again); ``dead`` (given
        up on); ``stopped`` (the gateway is shutting down); ``not started``."""
        if self.given_up:
            return "dead"
        if self.alive:
            return "running"
        if self._thread is None:
            return "not started"
        return "stopped" if self._stop.is_set() else "restarting"

    def run(self) -> None:
        """Poll until stopped. A failed turn is logged and the line goes on after a back-off; only
        something that is not an Exception (or a bug in this loop) ends the thread, and then the
        gateway's supervisor restarts it."""
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    self.poll(0.05)
                except Exception as exc:
                    failures += 1
                    self._fault(exc, failures)
                    self._stop.wait(min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** min(failures - 1, 10)))
                else:
                    failures = 0
        except BaseException as exc:
            self.last_fault = f"{type(exc).__name__}: {exc}"
            log.critical("counter line %s stopped (%s); the supervisor restarts it", self.name, self.last_fault,
                         exc_info=True)

    def _fault(self, exc: Exception, failures: int) -> None:
        self.faults += 1
        self.last_fault = f"{type(exc).__name__}: {exc}"
        self.decoder.reset()  # the frames of the failed turn are resent by the counter; start clean
        if failures == 1:
            log.exception("counter line %s: a turn failed; the line goes on", self.name)
        else:
            log.error("counter line %s: failed again (%d in a row, %s); retrying in a moment",
                      self.name, failures, self.last_fault)

    # -- one turn --------------------------------------------------------------------------------
    def poll(self, timeout: float) -> None:
        data = self.link.read(timeout)
        if self.link.generation != self._generation:
            self._generation = self.link.generation
            self.decoder.reset()  # a reopened port starts mid-nothing; drop any partial frame
        now = time.monotonic()
        if data:
            self.last_rx = now
            items = self.decoder.feed(data)
            if items:
                self.frames_in += len(items)
                self.handle(items, now)
        if now - self._last_tx >= self.heartbeat_s and self.link.state == "open":
            self._hb_seq = self._hb_seq % wire.MAX_SEQ + 1
            self._write(wire.encode_frame("HB", self._hb_seq, {"role": "gateway", "ts": round(time.time(), 3)}))

    def handle(self, items: list, t_received: float) -> None:
        try:
            self._handle(items, t_received)
        finally:
            self.answered_at = time.monotonic()
            self.busy_s += self.answered_at - t_received

    def _handle(self, items: list, t_received: float) -> None:
        outcome = self.pipeline.process(items)
        if outcome.replies:
            self._write(outcome.replies)
        try:
            if outcome.verdicts:
                self.counters.update(v.counter for v in outcome.verdicts)
                self.on_verdicts(outcome.verdicts)
                elapsed = time.monotonic() - t_received
                self.latencies.extend([elapsed] * len(outcome.verdicts))
        finally:  # the alerts are on disk: the uplink is woken even if the lamps failed
            if outcome.alerts:
                self.on_alerts(outcome.alerts)

    def _write(self, data: bytes) -> None:
        if self.link.write(data):
            self._last_tx = time.monotonic()

    # -- health ----------------------------------------------------------------------------------
    def health(self) -> dict:
        silent = self.last_rx is None or time.monotonic() - self.last_rx > self.silent_after_s
        return {"state": self.link.state, "silent": silent, "frames": self.frames_in,
                "thread": self.thread_state, "restarts": self.restarts, "faults": self.faults}


class LineSupervisor:
    """Restarts a counter line whose thread has stopped, so one bad moment cannot leave a counter
    unanswered while everything else looks up.

    ``on_change(line)`` runs when a line was restarted, given up on or survived a failed turn since
    the last check, and on every check while it is given up on (so its lamps keep showing it). A line that stopped ``max_restarts`` times within ``window_s`` is given
    up on: ``healthy()`` turns false, the systemd watchdog is no longer fed and systemd restarts
    the whole service.

        supervisor = LineSupervisor(lines, on_change=show_fault).start(stop_event)
    """

    def __init__(self, lines, *, on_change=None, check_s: float = 0.5, max_restarts: int = 5,
                 window_s: float = 600.0):
        self.lines = lines
        self.on_change = on_change or (lambda line: None)
        self.check_s = check_s
        self.max_restarts = max_restarts
        self.window_s = window_s
        self._recent: dict[int, deque] = {}  # each line's recent restart times
        self._seen: dict[int, tuple] = {}  # each line's (restarts, given_up, faults) at the last check
        self._thread: threading.Thread | None = None

    def start(self, stop: threading.Event) -> "LineSupervisor":
        self._thread = threading.Thread(target=self._run, args=(stop,), name="counter-line supervisor", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.check_s):
            try:
                self.check()
            except Exception:
                log.exception("counter-line supervisor: a check failed; checking again shortly")

    def check(self) -> None:
        for line in self.lines:
            if not line.given_up and line.thread_state == "restarting":
                self._restart(line)
            seen = (line.restarts, line.given_up, line.faults)
            if line.given_up or self._seen.get(id(line), (0, False, 0)) != seen:
                self._seen[id(line)] = seen
                self._tell(line)

    def _restart(self, line: CounterLine) -> None:
        now = time.monotonic()
        recent = self._recent.setdefault(id(line), deque())
        while recent and now - recent[0] > self.window_s:
            recent.popleft()
        if len(recent) >= self.max_restarts:
            line.given_up = True
            log.critical("counter line %s stopped %d times in %.0f s; not restarting it again: the service "
                         "must be restarted (last fault: %s)", line.name, len(recent) + 1, self.window_s, line.last_fault)
        else:
            recent.append(now)
            line.restarts += 1
            try:
                line.start()
                log.error("counter line %s had stopped (%s); restarted it (restart %d)",
                          line.name, line.last_fault, line.restarts)
            except RuntimeError as exc:  # no thread to be had: nothing more this process can do
                line.given_up = True
                log.critical("counter line %s cannot be restarted: %s", line.name, exc)

    def _tell(self, line: CounterLine) -> None:
        try:
            self.on_change(line)
        except Exception:
            log.exception("showing counter line %s's fault failed", line.name)

    def healthy(self) -> bool:
        """False once a line is given up on, or if this supervisor's own thread has stopped."""
        running = self._thread is not None and self._thread.is_alive()
        return (running or not self.lines) and not any(line.given_up for line in self.lines)


def write_status(path, lines, *, gateway_id: str) -> None:
    """Write the lines' states to ``path`` atomically (a reader never sees half a file)."""
    path = Path(path)
    body = {"gateway_id": gateway_id, "pid": os.getpid(),
            "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "lines": {line.name: {"thread": line.thread_state, "restarts": line.restarts, "faults": line.faults,
                                  "last_fault": line.last_fault, "counters": sorted(line.counters)}
                      for line in lines}}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=1) + "\n")
    os.replace(tmp, path)
