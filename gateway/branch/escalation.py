"""Escalation: a red alert nobody acknowledged within ``supervisor.escalate_after_s`` sounds the
supervisor's buzzer again and goes to the centre as ``unacknowledged``, once per alert (the centre
chases it from there; the lamp stays lit and the console keeps it at the top).

The same watcher notices when another process (``counterguard ack`` / ``outcome`` in a shell)
commits to the store and lets the life cycle bring the lamps in line.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)

REASON = "unacknowledged"


class EscalationWatch:
    """A thread that checks open red alerts against the escalation time."""

    def __init__(self, store, lamps, lifecycle, clock, *, after_s: float, gateway_id: str, wake=lambda: None):
        self.store = store
        self.lamps = lamps
        self.lifecycle = lifecycle
        self.clock = clock
        self.after_s = float(after_s)
        self.gateway_id = gateway_id
        self.wake = wake
        self.tick_s = max(0.05, min(1.0, self.after_s / 4))
        self.escalated = 0
        self._thread: threading.Thread | None = None
        self._data_version = store.data_version()

    def start(self, stop_event: threading.Event) -> "EscalationWatch":
        self._thread = threading.Thread(target=self._run, args=(stop_event,), name="escalation", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, stop_event: threading.Event) -> None:
        while not stop_event.wait(self.tick_s):
            try:
                self.check()
            except Exception:  # a failed look must not end the watch: the next tick tries again
                log.exception("escalation check failed")

    def check(self, now_wall: float | None = None) -> list:
        """One look: refresh lamps after outside changes, then escalate what is overdue."""
        version = self.store.data_version()
        if version != self._data_version:
            self._data_version = version
            self.lifecycle.refresh()
        now_wall = time.time() if now_wall is None else now_wall
        done = []
        for alert in self.store.overdue_alerts(now_wall, self.after_s, reason=REASON, now_mono=time.monotonic()):
            stamp = self.clock.now()
            # At least after_s: it is overdue, even if the wall clock was stepped back since it was raised.
            waited = max(self.after_s, stamp.wall - alert.raised_wall)
            esc = self.store.escalate(alert.alert_id, reason=REASON, waited_s=waited, stamp=stamp,
                                      gateway_id=self.gateway_id)
            if esc is None:
                continue  # acknowledged meanwhile
            done.append(esc)
            self.escalated += 1
            log.warning("red alert %s at counter %d unacknowledged for %.0f s: buzzer sounded again, "
                        "escalated to the centre", alert.alert_id, alert.counter, waited)
        if done:
            self.lamps.escalated(len(self.store.open_alerts(level="red")))
            self.wake()
        return done
