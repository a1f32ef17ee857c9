"""The counter node's main loop: terminal lines in, frames to the gateway, verdicts back out.

Every event, and every event's answers to the caring questions, is written to the journal before
the terminal hears ``queued`` and stays there until the gateway answers, so a reset or a silent
gateway loses nothing; a verdict is handed to the terminal before the journal forgets its record
(after a reset the terminal may see a verdict twice, never zero times).
"""

import time
from . import wire
from .dialogue import answers_problem, is_answers
from .journal import JournalFull
from .terminal import TerminalPort


_ANSWERS = {"of": "answers"}  # on every line to the terminal about an answers line


class Bridge:
    """Wires a TerminalPort, a GatewayLink, a Journal, an Indicator and a watchdog together.

    >>> bridge = Bridge(terminal, link, journal, indicator, machine.WDT(timeout=8000), counter=3)
    >>> bridge.run(wait=lambda ms: poller.poll(ms))      # never returns on the board
    """

    def __init__(self, terminal, link, journal, indicator, watchdog, counter=0):
        self.terminal = terminal
        self.link = link
        self.journal = journal
        self.indicator = indicator
        self.watchdog = watchdog
        self.counter = counter
        self.offline = None  # unknown until the gateway answers or stays silent
        self.stopped = False  # the terminal was told to stop (journal full)

    def start(self):
        self.terminal.send(b"")  # ends a reply line that a reset cut short, so "ready" stands alone
        self.terminal.send({"type": "ready", "counter": self.counter, "pending": len(self.journal)})
        self.indicator.offline = True  # until the gateway is heard
        self.indicator.update(time.ticks_ms())
        if self.journal.full:
            self._tell_stop()

    def run(self, wait=None, turns=-1):
        self.start()
        while turns != 0:
            self.step()
            if wait is not None:
                wait(10)
            else:
                time.sleep_ms(5)
            if turns > 0:
                turns -= 1

    def step(self):
        now = time.ticks_ms()
        self.watchdog.feed()  # fed only by a loop that is still turning
        for line in self.terminal.lines():
            self.take(line, now)
        for frame in self.link.receive(now):
            self.answer(frame, now)
        self._health(now)
        self.link.send_due(self.journal.pending, now, self.journal.frame)
        self.link.heartbeat(now)
        if self.stopped and not self.journal.full:
            self.stopped = False
            self.terminal.send({"type": "resume", "pending": len(self.journal),
                                "detail": "room for events again; send the held transactions now"})
        self.indicator.update(now)

    # -- from the terminal -----------------------------------------------------------------------
    def _error(self, code, detail, **extra):
        msg = {"type": "error", "code": code, "detail": detail}
        msg.update(extra)
        self.terminal.send(msg)

    def take(self, line, now):
        if line is TerminalPort.TOO_LONG:
            self._error(wire.TOO_LONG, "a line longer than %d bytes was not taken; send one event per line"
                        % self.terminal.max_line)
            return
        if not line.strip():
            return
        try:
            body, payload = wire.event_payload(line)
        except wire.WireError as exc:
            self._error(exc.code, exc.detail)
            return
        if is_answers(body):
            self._take_answers(body, payload)
            return
        event_id = body.get("event_id")
        problem = wire.event_id_problem(event_id)
        if problem:
            self._error(wire.SCHEMA, problem + "; the event was not taken", field="event_id")
            return
        self._keep("EVT", payload, event_id, {})

    def _take_answers(self, body, payload):
        about = dict(_ANSWERS)
        problem = answers_problem(body)
        if problem:
            field, detail = problem
            if wire.event_id_problem(body.get("event_id")) is None:
                about["event_id"] = body["event_id"]  # the terminal can tell which answers
            self._error(wire.SCHEMA, detail + "; the answers were not taken", field=field, **about)
            return
        self._keep("ANS", payload, body["event_id"], about)

    def _keep(self, kind, payload, event_id, about):
        """Journal an event (EVT) or its answers (ANS) and tell the terminal ``queued``, or why not."""
        try:
            self.journal.put(payload, event_id, kind)
        except JournalFull:
            self._error("queue_full", "not taken: %d events are waiting for the gateway; resend it after "
                        "the resume line" % len(self.journal), event_id=event_id, **about)
            self._tell_stop()
            return
        except OSError as exc:
            self._error("storage", "not taken: the node could not write it to flash (full or failing, error %s); "
                        "resend it, and have the node checked if this repeats" % exc.args[0], event_id=event_id,
                        **about)
            return
        msg = {"type": "queued", "event_id": event_id, "pending": len(self.journal)}
        msg.update(about)
        self.terminal.send(msg)
        if self.journal.full:
            self._tell_stop()

    def _tell_stop(self):
        if not self.stopped:
            self.stopped = True
            self.terminal.send({"type": "stop", "pending": len(self.journal),
                                "detail": "the node holds %d events the gateway has not answered (its limit); "
                                          "hold new transactions until the resume line" % len(self.journal)})

    # -- from the gateway ------------------------------------------------------------------------
    def answer(self, frame, now):
        if frame.type not in ("ACK", "NAK"):
            return  # HB: the link noted the gateway is alive
        p = self.journal.find(frame.seq)
        if p is None:
            return  # a late answer to something already settled
        about = _ANSWERS if p.kind == "ANS" else None
        if frame.type == "ACK":
            if frame.body.get("event_id") != p.event_id:
                return  # an answer meant for an older frame with this number; ours is resent
            self.terminal.send_with_type("verdict", frame.payload, about)  # for answers: the final verdict
            self.journal.settle(p.seq)
            return
        code = frame.body.get("code")
        if code in wire.RESEND_CODES:
            # busy: the gateway could not store it; wait out the back-off. Damaged on the line: soon.
            self.link.resend_soon(p, now, self.link.backoff_ms(p.attempts) if code == wire.BUSY else 50)
            return
        if code == wire.UNKNOWN_EVENT and about and self.journal.holds_event(p.event_id):
            # The event went out first but was damaged or lost on the line: the answers wait for it.
            self.link.resend_soon(p, now, self.link.backoff_ms(p.attempts))
            return
        extra = {"event_id": p.event_id}
        if about:
            extra.update(about)
        self.terminal.send_with_type("rejected", frame.payload, extra)
        self.journal.settle(p.seq)

    def _health(self, now):
        if self.link.last_rx is not None and not self.link.silent(now):
            silent = False  # heard from within the timeout
        elif self.link.silent(now):
            silent = True
        else:
            return  # just booted: not heard yet, not silent long enough to say so
        if silent == self.offline:
            return
        was = self.offline
        self.offline = silent
        self.indicator.offline = silent
        if silent:
            self.terminal.send({"type": "offline", "pending": len(self.journal),
                                "detail": "fraud protection offline: no answer from the gateway for %d s; events "
                                          "are kept and sent when it returns - use the branch's manual checks "
                                          "meanwhile" % (self.link.silent_after_ms // 1000)})
        else:
            if was:  # back after silence: do not make queued events wait out long back-offs
                self.link.rush(self.journal.pending, now)
            self.terminal.send({"type": "online", "pending": len(self.journal),
                                "detail": "fraud protection online"})
