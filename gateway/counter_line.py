"""One counter line: a serial port, its frame decoder and the pipeline, run by one thread.

Bytes are read in whatever chunks arrive; every complete frame in a chunk is handled as one batch,
so under load many events share one commit while a lone event is answered at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from . import wire
from .pipeline import Pipeline

log = logging.getLogger(__name__)


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
        self._hb_seq = 0
        self._last_tx = 0.0
        self._generation = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, stop: threading.Event | None = None) -> None:
        if stop is not None:
            self._stop = stop
        self._thread = threading.Thread(target=self.run, name=f"counter-line {self.name}", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.is_set():
            self.poll(0.05)

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
        outcome = self.pipeline.process(items)
        if outcome.replies:
            self._write(outcome.replies)
        if outcome.verdicts:
            self.on_verdicts(outcome.verdicts)
            elapsed = time.monotonic() - t_received
            self.latencies.extend([elapsed] * len(outcome.verdicts))
        if outcome.alerts:
            self.on_alerts(outcome.alerts)

    def _write(self, data: bytes) -> None:
        if self.link.write(data):
            self._last_tx = time.monotonic()

    # -- health ----------------------------------------------------------------------------------
    def health(self) -> dict:
        silent = self.last_rx is None or time.monotonic() - self.last_rx > self.silent_after_s
        return {"state": self.link.state, "silent": silent, "frames": self.frames_in}
