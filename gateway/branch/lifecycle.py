"""An alert's life at the branch: raised -> acknowledged -> outcome recorded (closed).

Every step is one store transaction (the state change and its outbox row for the centre together),
then the lamps follow and the uplink is woken:

    red raised          counter red steady, supervisor lamp on, buzzers beep
                        (by the model's verdict, or by branch staff: ``raise_alert``)
    acknowledged        counter amber blinking (unless another red is open there), panel settles
    outcome recorded    counter lamp off (if it was still blinking), alert closed

The lamps are driven from *changes* in the store, not from who made them: the panel button and
the console act in this process, ``counterguard ack`` / ``outcome`` in a shell write the same file,
and ``refresh()`` (called by the escalation watcher when another connection commits) brings the
lamps in line either way.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Lifecycle:
    """Acknowledgements and outcomes for one gateway; thread-safe."""

    def __init__(self, store, lamps, clock, *, gateway_id: str, wake=lambda: None, assessor=None):
        self.store = store
        self.lamps = lamps
        self.clock = clock
        self.gateway_id = gateway_id
        self.wake = wake
        self.assessor = assessor  # the scoring stage: its model re-scores an event with the customer's answers
        self._lock = threading.RLock()
        self._known: dict[str, tuple[str, int, str]] = self._live()  # alert_id -> (state, counter, level)

    def _live(self) -> dict:
        live = {a.alert_id: ("open", a.counter, a.level) for a in self.store.open_alerts(level=None)}
        live.update({a.alert_id: ("acknowledged", a.counter, a.level) for a in self.store.awaiting_outcome()})
        return live

    def restore_lamps(self) -> None:
        """After a restart: red where a red alert is open, amber blinking where an outcome is owed."""
        with self._lock:
            self._known = self._live()
            reds = [c for s, c, lvl in self._known.values() if s == "open" and lvl == "red"]
            awaiting = [c for s, c, _ in self._known.values() if s == "acknowledged"]
            self.lamps.restore(reds, awaiting)

    def raise_alert(self, event_id: str, level: str = "red", *, by: str, via: str = "console", note: str = ""):
        """Branch staff raise an alert on an event the gateway answered green or amber; the lamps,
        buzzers, escalation and uplink then treat it exactly like the model's alert of that level.
        UnknownEvent / LifecycleError / ValueError say why it was refused (nothing is written)."""
        with self._lock:
            alert = self.store.raise_alert(event_id, level, by, via, note, stamp=self.clock.now(),
                                           gateway_id=self.gateway_id)
            log.warning("alert %s (%s) raised by %s via %s on event %s at counter %d", alert.alert_id, level, by,
                        via, event_id, alert.counter)
            self._known[alert.alert_id] = ("open", alert.counter, alert.level)
            self.lamps.show_verdict(alert.counter, alert.level)
            self.wake()
            return alert

    def answer(self, event_id: str, answers: dict, *, by: str):
        """The customer's answers ({signal: answer}) for an event, from the branch console: the final
        verdict as a teller terminal's ANS frame gets it, with the lamps moved when it changed.
        DialogueRefused says why it was not taken (nothing is written)."""
        from counterguard.gateway.scoring.dialogue import answer_event

        with self._lock:
            done = answer_event(self.store, event_id, answers, by=by, stamp=self.clock.now(),
                                gateway_id=self.gateway_id, via="console", assessor=self.assessor)
            if done.alert is not None:
                log.warning("alert %s (%s) raised by the customer's answers on event %s at counter %d",
                            done.alert.alert_id, done.alert.level, event_id, done.alert.counter)
                self._known[done.alert.alert_id] = ("open", done.alert.counter, done.alert.level)
            if done.moved is not None:
                self.lamps.show_verdict(done.moved.counter, done.moved.level)
        if done.alert is not None:
            self.wake()
        return done

    def acknowledge(self, alert_id: str | None = None, *, counter: int | None = None, by: str = "supervisor",
                    via: str = "console"):
        """Acknowledge ``alert_id`` (amber or red), or else the oldest open red alert (of ``counter``).
        Returns the Acknowledgement, or None when there was nothing open; UnknownAlert for a wrong id."""
        with self._lock:
            ack = self.store.acknowledge(alert_id, counter=counter, by=by, via=via, stamp=self.clock.now(),
                                         gateway_id=self.gateway_id)
            if ack is None:
                log.info("acknowledge (%s by %s) with nothing open to acknowledge", via, by)
                return None
            log.info("alert %s at counter %d acknowledged by %s via %s", ack.alert_id, ack.counter, by, via)
            self.refresh()
            self.wake()
            return ack

    def record_outcome(self, alert_id: str, outcome: str, *, note: str = "", by: str, via: str = "console",
                       answers=None, questions=None, handled_at=None):
        """Record what happened (and the customer's answers to the caring questions, if given) and
        which level handled it (Store.record_outcome), and close the alert; LifecycleError if it is
        not acknowledged yet."""
        with self._lock:
            record = self.store.record_outcome(alert_id, outcome, note=note, by=by, via=via, stamp=self.clock.now(),
                                               gateway_id=self.gateway_id, answers=answers, questions=questions,
                                               handled_at=handled_at)
            log.info("alert %s at counter %d closed: %s (by %s via %s)", alert_id, record.counter, outcome, by, via)
            self.refresh()
            self.wake()
            return record

    def _raised_elsewhere(self, before: dict, now: dict) -> None:
        """Alerts staff raised from a shell (``counterguard raise``) light the lamps like any other.
        The model's alerts are lit by the counter line that raised them, so only staff-raised ones
        are looked for."""
        new = [a for a, (state, _, _) in now.items() if state == "open" and a not in before]
        if not new:
            return
        for alert in self.store.open_alerts(level=None):
            if alert.alert_id in new and "teller_report" in alert.reasons:
                log.warning("alert %s (%s) at counter %d raised by staff from outside the gateway",
                            alert.alert_id, alert.level, alert.counter)
                self.lamps.show_verdict(alert.counter, alert.level)
                self.wake()

    def refresh(self) -> None:
        """Bring the lamps in line with acknowledgements and outcomes stored since the last look."""
        with self._lock:
            before, now = self._known, self._live()
            self._known = now
            acked: set[int] = set()  # counters where an alert left "open"
            closed: set[int] = set()  # counters where an alert was closed
            for alert_id, (state, counter, _) in before.items():
                later = now.get(alert_id, ("closed",))[0]
                if state == "open" and later != "open":
                    acked.add(counter)
                if later == "closed":
                    closed.add(counter)
            for alert_id, (state, counter, _) in now.items():
                if state == "acknowledged" and alert_id not in before:  # raised and acknowledged between looks
                    acked.add(counter)
            self._raised_elsewhere(before, now)
            if not acked and not closed:
                return
            red_counters = {c for s, c, lvl in now.values() if s == "open" and lvl == "red"}
            awaiting = {c for s, c, _ in now.values() if s == "acknowledged"}
            open_reds = sum(1 for s, _, lvl in now.values() if s == "open" and lvl == "red")
            for counter in sorted(acked | closed):
                if counter in red_counters:
                    continue  # another red is still open there: the lamp stays latched red
                if counter in awaiting:
                    if counter in acked:
                        self.lamps.awaiting_outcome(counter, open_reds)
                else:
                    self.lamps.closed(counter)
            self.lamps.settle(open_reds)
