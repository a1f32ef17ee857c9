"""The counter pipeline: frame -> event -> history -> features -> score -> verdict -> store -> reply.

``Assessor`` (gateway/scoring/assessor.py) is the pure scoring stage shared by the serial path and
``counterguard replay``, so a replayed event gets exactly the verdict the counter got. ``Pipeline`` adds the side effects in the
order that keeps the promise "an alert is on disk before it is acknowledged": a whole batch of
frames is scored and committed in one transaction (group commit), and only then are ACKs written
and lamps set. Each event runs inside its own savepoint in that transaction: a frame the gateway
fails on (a bug, a runtime fault) is answered ``NAK internal`` and leaves nothing behind, and the
rest of the batch is committed and answered as usual. Only the store's medium failing spoils the
whole batch (every event ``busy``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass

from counterguard.core import messages, wire
from counterguard.core.clock import Clock
from counterguard.core.decision import Verdict
from counterguard.core.dialogue import parse_answers
from counterguard.core.events import SECTORS, SchemaError, canonical_digest, kept_body, parse_event
from counterguard.gateway.scoring.assessor import Assessor
from counterguard.gateway.scoring.dialogue import DialogueRefused, answer_event
from counterguard.gateway.store.db import StoreError

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one batch produced: reply bytes to write, then verdicts for the lamps."""

    replies: bytes
    verdicts: list
    alerts: list


class Pipeline:
    """Turns decoded frames from one counter line into replies, stored verdicts and alerts."""

    def __init__(self, assessor: Assessor, *, gateway_id: str, clock: Clock | None = None, sector: str = "bank"):
        self.assessor = assessor
        self.sector = sector
        self.kinds = SECTORS[sector]  # the event kinds this outlet's counters send
        self.store = assessor.store
        self.gateway_id = gateway_id
        self.clock = clock or Clock()
        self.counts = Counter()  # verdicts by level since start, for the heartbeat
        self.naks = Counter()  # NAKs by code since start

    def process(self, items: list) -> Outcome:
        """One reply per item, in order. An event is committed with the batch before its ACK is
        written; a frame the gateway fails on gets ``NAK internal`` and leaves nothing behind, and
        the rest of the batch goes on. If the store cannot commit, every event is answered ``busy``."""
        replies: list = [None] * len(items)
        verdicts: list[Verdict] = []
        alerts: list = []
        try:
            with self.store.batch():
                for i, item in enumerate(items):
                    replies[i], verdict, alert = self._answer(item)
                    if verdict is not None:
                        verdicts.append(verdict)
                        if alert is not None:
                            alerts.append(alert)
        except (OSError, sqlite3.Error) as exc:  # disk full or I/O error: nothing was committed, so nothing is ACKed
            log.error("store write failed, answering busy so the counter resends: %s", exc)
            self._undo(items, replies, wire.FrameError(wire.BUSY, 0, "gateway cannot store events right now; resend"))
            verdicts, alerts = [], []
        except Exception:  # the batch itself failed (not one frame): nothing was committed either
            log.exception("a batch of %d frame(s) failed as a whole; answering its events NAK internal", len(items))
            self._undo(items, replies, wire.FrameError(wire.INTERNAL, 0, "the gateway failed on this batch; "
                                                       "nothing was kept; it logged why"))
            verdicts, alerts = [], []
        for v in verdicts:
            self.counts[v.level] += 1
        return Outcome(b"".join(replies), verdicts, alerts)

    def _answer(self, item):
        """(reply, verdict, alert) for one decoded item. Whatever one frame raises (but the store's
        medium failing, which is the batch's) becomes its ``NAK internal``, logged with its hash."""
        try:
            if not (isinstance(item, wire.Frame) and item.type in ("EVT", "ANS")):
                return self._plain(item), None, None
            with self.store.savepoint():
                return self._event(item) if item.type == "EVT" else self._answers(item)
        except StoreError:
            raise  # the disk, not this frame: the whole batch answers busy
        except Exception:
            sha = hashlib.sha256(getattr(item, "payload", b"")).hexdigest()
            log.exception("frame seq %d (payload sha256 %s) failed; answered NAK internal, nothing of it kept",
                          item.seq, sha)
            err = wire.FrameError(wire.INTERNAL, item.seq, f"the gateway failed on this frame (sha256 {sha[:16]}); "
                                  "nothing was kept; it logged why")
            return self._nak(item.seq, err), None, None

    def _plain(self, item) -> bytes:
        """The reply to anything but an event: nothing to store."""
        if isinstance(item, wire.FrameError):
            return self._nak(item.seq, item)
        if item.type == "HB":
            return wire.encode_frame("HB", item.seq, {"role": "gateway", "ts": round(time.time(), 3)})
        return self._nak(item.seq, wire.FrameError(wire.BAD_TYPE, item.seq, f"the gateway does not accept {item.type} frames"))

    def _undo(self, items: list, replies: list, error: wire.FrameError) -> None:
        """The batch was not committed: every event ACKed in it, and every item not reached yet,
        is answered ``error`` instead; refusals already given stand."""
        for i, item in enumerate(items):
            is_event = isinstance(item, wire.Frame) and item.type in ("EVT", "ANS")
            if is_event and (replies[i] is None or replies[i].startswith(b"$ACK")):
                replies[i] = self._nak(item.seq, wire.FrameError(error.code, item.seq, error.detail))
            elif replies[i] is None:
                replies[i] = self._answer(item)[0]  # nothing to store: cannot fail on the disk

    def _nak(self, seq: int, error: wire.FrameError) -> bytes:
        self.naks[error.code] += 1
        return wire.encode_frame("NAK", seq, error.nak_body())

    def _event(self, frame: wire.Frame):
        try:
            event = parse_event(frame.body, self.assessor.watchlist.identity_key)
        except SchemaError as exc:
            err = wire.FrameError(wire.SCHEMA, frame.seq, exc.detail, exc.field)
            return self._nak(frame.seq, err), None, None
        if event.kind not in self.kinds:
            other = next(name for name, kinds in SECTORS.items() if event.kind in kinds)
            err = wire.FrameError(wire.SCHEMA, frame.seq, f"this gateway stands at a {self.sector} counter and takes "
                                  f"{', '.join(self.kinds)}; {event.kind} belongs to a {other} gateway", "kind")
            return self._nak(frame.seq, err), None, None
        # From here on the event exists only with its identity fields hashed: the store, logs, the
        # outbox and exports never see an identity number, phone or payee account in clear.
        kept = kept_body(frame.body, event)
        raw = frame.payload if kept is frame.body else messages.dumps(kept).encode("utf-8")
        # Judged on the event, not its bytes: a terminal that re-encodes a resend (key order, spaces,
        # 2000 vs 2000.0) gets its ACK. Rows stored before the digest hold the raw payload's sha256.
        # The digest is of the kept form, so it is keyed too wherever an identity field was.
        sha = canonical_digest(kept)
        earlier = self.store.decided(event.event_id)
        if earlier is not None:
            earlier_sha, ack_body = earlier
            if earlier_sha != sha and earlier_sha != hashlib.sha256(raw).hexdigest():
                err = wire.FrameError(wire.CONFLICT, frame.seq, "event_id was already used for a different event", "event_id")
                return self._nak(frame.seq, err), None, None
            # A resend after a lost ACK: the same answer again, scored once.
            return wire.encode_frame("ACK", frame.seq, json.loads(ack_body)), None, None
        assessment = self.assessor.assessment(event)
        verdict = assessment.verdict
        body = verdict.ack_body()
        stored = messages.dumps(body)
        # The stored ACK body is also the line's payload whenever it is plain ASCII without '$'
        # (always, unless an event_id carries such characters): one JSON encode per event, not two.
        payload = stored.encode("ascii") if stored.isascii() and "$" not in stored else wire.encode_payload(body)
        alert = self.assessor.record(event, raw, sha, verdict, self.clock.now(), self.gateway_id, stored,
                                     assessment)
        return wire.encode_frame("ACK", frame.seq, payload), verdict, alert

    def _answers(self, frame: wire.Frame):
        """The customer's answers to the caring questions for an event already answered: the final
        verdict, stored (with a new alert when the answers raised it) before its ACK is written."""
        try:
            event_id, answers = parse_answers(frame.body)
        except SchemaError as exc:
            return self._nak(frame.seq, wire.FrameError(wire.SCHEMA, frame.seq, exc.detail, exc.field)), None, None
        try:
            done = answer_event(self.store, event_id, answers, by=frame.body.get("by"), stamp=self.clock.now(),
                                gateway_id=self.gateway_id, assessor=self.assessor)
        except DialogueRefused as exc:
            return self._nak(frame.seq, wire.FrameError(exc.code, frame.seq, exc.detail, exc.field)), None, None
        # Only a verdict that changed moves the lamps: an unchanged one is already showing.
        return wire.encode_frame("ACK", frame.seq, done.body), done.moved, done.alert
