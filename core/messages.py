"""MQTT topics and payloads between a gateway and the anti-fraud centre (docs/mqtt.md).

Everything here is pure: names in, JSON text out (or JSON bytes in, checked values out). The
uplink and the centre's receiver both use it, so the two ends cannot drift apart.

An alert or acknowledgement is stored in the outbox as a JSON *body*; ``finalise`` adds what is
only known when it is sent: the outbox ``seq``, the region/branch and ``historical`` (true when the
message goes out more than ``historical_after_s`` after it was created, i.e. a replay after an
outage).
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timezone

from counterguard.core import jsontext

PREFIX = "counterguard/v1"
CENTRE_STATUS = f"{PREFIX}/centre/status"
ALL_WATCHLIST = f"{PREFIX}/all/watchlist"
# Everything a gateway publishes, one level under its root: the centre subscribes to these (one
# level each for region, branch and gateway id) and the broker ACL lets a gateway write nothing else.
UPLINK_LEAVES = ("alert", "ack", "outcome", "escalation", "status", "heartbeat", "events")
CENTRE_SUBSCRIPTIONS = tuple(f"{PREFIX}/+/+/+/{leaf}" for leaf in UPLINK_LEAVES)

STATES = ("online", "offline", "stopped")
ALERT_REQUIRED = (
    "type", "gateway_id", "region", "branch", "seq", "alert_id", "event_id", "counter", "level",
    "score", "reasons", "text", "kind", "amount", "account", "event_ts", "raised_at", "mono",
    "time_synced", "model_version", "watchlist_version", "historical",
)
ACK_REQUIRED = ("type", "gateway_id", "seq", "alert_id", "by", "via", "at", "mono", "time_synced", "historical")
OUTCOME_REQUIRED = ("type", "gateway_id", "alert_id", "counter", "outcome", "note", "by", "via", "at", "mono",
                    "time_synced", "seq", "region", "branch", "historical")
ESCALATION_REQUIRED = ("type", "gateway_id", "alert_id", "counter", "level", "reason", "waited_s", "at", "mono",
                       "time_synced", "seq", "region", "branch", "historical")
# Who the customer is and where a transfer goes, on an alert from a v2 event: the keyed hashes the
# validator made (core/identity.py), never the clear values.
IDENTITY_FIELDS = ("customer_id_type", "customer_id_hash", "customer_phone_hash", "payee_account_hash")
# card_sale_confirmed: at a carrier's outlet or a bank's desk, the customer was selling or renting the
# cards they asked for; the centre may put the person on the restricted list (never by itself).
OUTCOMES = ("confirmed_fraud", "customer_dissuaded", "false_alarm", "police_called", "card_sale_confirmed")
# A customer's answer to a caring question ("declined": would not say); questions not asked are left out.
ANSWERS = ("yes", "no", "declined")
# Which of the three levels of dissuasion handled an alert (outcome field "handled_at"): the teller's
# caring dialogue, the supervisor's talk, or the police called through the police-bank link.
HANDLED_AT = {1: "teller", 2: "supervisor", 3: "police"}


def handled_at_level(value) -> int | None:
    """A level as staff give it (1, 2, 3, "2", "teller", "supervisor", "police") -> 1, 2 or 3; None
    for nothing given; ValueError naming the field otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value in HANDLED_AT:
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "2", "3"):
            return int(text)
        for level, name in HANDLED_AT.items():
            if text == name:
                return level
    raise ValueError(f"handled_at must be 1 (teller), 2 (supervisor) or 3 (police), got {value!r}")


def implied_level(outcome: str, *, answered_at_counter: bool) -> int | None:
    """The level an outcome implies when staff did not say: police called is level 3; an alert whose
    customer answered the teller's caring dialogue at the counter (an ANS frame) was settled there,
    level 1; otherwise nothing is implied (None: not recorded)."""
    if outcome == "police_called":
        return 3
    return 1 if answered_at_counter else None


class TopicError(ValueError):
    """A region, branch or gateway id cannot be used as one MQTT topic level."""


class DownlinkError(ValueError):
    """A message from the centre is malformed; the message says what was wrong."""


def _level(name: str, value: str) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "/+#\0") or (
            name == "region" and value in ("centre", "all")):  # those two names are the centre's topics
        raise TopicError(f"{name} {value!r} must be a non-empty name without '/', '+' or '#' "
                         "(a region is not 'centre' or 'all'); fix it in the [gateway] section of the config")
    return value


def topic_root(region: str, branch: str, gateway_id: str) -> str:
    return f"{PREFIX}/{_level('region', region)}/{_level('branch', branch)}/{_level('gateway id', gateway_id)}"


@dataclass(frozen=True)
class Topics:
    """Every topic one gateway publishes or subscribes to."""

    region: str
    branch: str
    gateway_id: str

    @property
    def root(self) -> str:
        return topic_root(self.region, self.branch, self.gateway_id)

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def heartbeat(self) -> str:
        return f"{self.root}/heartbeat"

    @property
    def alert(self) -> str:
        return f"{self.root}/alert"

    @property
    def ack(self) -> str:
        return f"{self.root}/ack"

    @property
    def outcome(self) -> str:
        return f"{self.root}/outcome"

    @property
    def escalation(self) -> str:
        return f"{self.root}/escalation"

    @property
    def events(self) -> str:
        return f"{self.root}/events"

    def for_kind(self, kind: str) -> str:
        """The topic an outbox row of this kind is published on."""
        topic = {"alert": self.alert, "ack": self.ack, "outcome": self.outcome, "escalation": self.escalation,
                 "events": self.events}.get(kind)
        if topic is None:
            raise ValueError(f"no uplink topic for outbox kind {kind!r}")
        return topic

    @property
    def published(self) -> tuple[str, ...]:
        """Every topic this gateway publishes on."""
        return tuple(f"{self.root}/{leaf}" for leaf in UPLINK_LEAVES)

    @property
    def receipt(self) -> str:
        return f"{self.root}/receipt"

    @property
    def watchlists(self) -> tuple[str, str, str]:
        """Watchlist updates for every gateway, for this region, and for this gateway alone."""
        return (ALL_WATCHLIST, f"{PREFIX}/{self.region}/watchlist", f"{self.root}/watchlist")


def root_of(topic: str) -> str:
    """The gateway root of a gateway topic: ``counterguard/v1/r/b/g/alert`` -> ``counterguard/v1/r/b/g``."""
    return topic.rsplit("/", 1)[0]


_last_second: tuple[int, str] = (-1, "")


def iso(wall: float) -> str:
    """RFC 3339 UTC with milliseconds, as every time in the payloads is written."""
    global _last_second
    # datetime's own rounding (to the microsecond, half to even), then cut to milliseconds; the text
    # of the second is made once a second: an upload batch writes hundreds of times a second.
    second = math.floor(wall)
    micro = round((wall - second) * 1e6)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    known, text = _last_second
    if known != second:
        text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (second, text)
    return f"{text}.{micro // 1000:03d}Z"


# Made once: json.dumps with these options builds an encoder on every call, and every verdict's ACK
# and every uploaded event goes through here.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(body: dict) -> str:
    return _COMPACT.encode(body)


# -- uplink ---------------------------------------------------------------------------------------
def alert_body(alert_id: str, event, verdict, stamp, *, gateway_id: str, model_version: str,
               watchlist_version: int, raised_by: str | None = None, note: str | None = None) -> str:
    """The stored body of an alert (``event``: gateway.events.Event, ``verdict``: Verdict, ``stamp``: Stamp).
    ``raised_by`` and ``note``: the staff member who raised it and what they noticed, only on an
    alert branch staff raised themselves (left out of the model's alerts)."""
    body = {
        "type": "alert",
        "gateway_id": gateway_id,
        "alert_id": alert_id,
        "event_id": event.event_id,
        "counter": event.counter,
        "level": verdict.level,
        "score": round(verdict.score, 4),
        "reasons": list(verdict.reasons),
        "text": verdict.text,
        "kind": event.kind,
        "amount": event.amount,
        "account": event.account,
        "event_ts": event.ts.isoformat(),
        "raised_at": iso(stamp.wall),
        "mono": round(stamp.mono, 3),
        "time_synced": bool(stamp.synced),
        "model_version": model_version,
        "watchlist_version": watchlist_version,
    }
    for name in IDENTITY_FIELDS:  # v2 events: keyed hashes only, and only where the terminal sent one
        value = getattr(event, name, None)
        if value is not None:
            body[name] = value
    if raised_by is not None:
        body["raised_by"] = raised_by
        body["note"] = note or ""
    return dumps(body)


def ack_body(alert_id: str, *, by: str, via: str, stamp, gateway_id: str, counter: int) -> str:
    """The stored body of a supervisor's acknowledgement of an alert."""
    return dumps({
        "type": "acknowledgement",
        "gateway_id": gateway_id,
        "alert_id": alert_id,
        "counter": counter,
        "by": by,
        "via": via,
        "at": iso(stamp.wall),
        "mono": round(stamp.mono, 3),
        "time_synced": bool(stamp.synced),
    })


def outcome_body(alert_id: str, *, outcome: str, note: str, by: str, via: str, stamp, gateway_id: str,
                 counter: int, answers=(), handled_at: int | None = None) -> str:
    """The stored body of the outcome a supervisor recorded for an alert (closes it). ``answers``:
    (key, English question, answer) of the caring questions asked; left out when none were.
    ``handled_at``: 1, 2 or 3 (HANDLED_AT); left out when not recorded."""
    body = {
        "type": "outcome",
        "gateway_id": gateway_id,
        "alert_id": alert_id,
        "counter": counter,
        "outcome": outcome,
        "note": note,
        "by": by,
        "via": via,
        "at": iso(stamp.wall),
        "mono": round(stamp.mono, 3),
        "time_synced": bool(stamp.synced),
    }
    if handled_at is not None:
        body["handled_at"] = handled_at
    if answers:
        body["answers"] = [{"key": k, "question": q, "answer": a} for k, q, a in answers]
    return dumps(body)


def escalation_body(alert_id: str, *, level: str, reason: str, waited_s: float, stamp, gateway_id: str,
                    counter: int) -> str:
    """The stored body of an escalation (a red alert nobody acknowledged in time)."""
    return dumps({
        "type": "escalation",
        "gateway_id": gateway_id,
        "alert_id": alert_id,
        "counter": counter,
        "level": level,
        "reason": reason,
        "waited_s": round(float(waited_s), 1),
        "at": iso(stamp.wall),
        "mono": round(stamp.mono, 3),
        "time_synced": bool(stamp.synced),
    })


def finalise(body: str, *, seq: int, region: str, branch: str, historical: bool) -> str:
    """Add the send-time fields to a stored body (a JSON object text) without re-parsing it."""
    extra = dumps({"seq": seq, "region": region, "branch": branch, "historical": historical})
    return body[:-1] + "," + extra[1:]


# -- event upload (docs/mqtt.md "Events for learning") ----------------------------------------------
# A batch of scored events is JSON compressed with zlib: features repeat their shape from event to
# event, so a batch shrinks to about a fifth. The centre refuses more than this once inflated.
EVENTS_INFLATED_MAX = 16 * 1024 * 1024
EVENT_FIELDS = ("event_id", "counter", "kind", "amount", "ts", "account_hash", "level", "score", "reasons",
                "model_version", "watchlist_version", "features", "shadow_score", "shadow_version", "decided_at")


@lru_cache(maxsize=8)
def _features_format(n: int) -> str:
    return "[" + ",".join(["%.7g"] * n) + "]"


def features_text(values) -> str:
    """An event's model inputs as the upload sends them: a JSON list, 7 significant digits each
    (what float32 holds, far finer than the int8 model resolves). One %-format for the whole list:
    the gateway writes it as it stores a verdict, so the upload copies text instead of formatting."""
    return _features_format(len(values)) % tuple(values)


def events_body(items: list[str], *, gateway_id: str, features_version: int, first: int, last: int) -> str:
    """The body of one batch of scored events; ``items`` are the events already as JSON object texts
    (each with ``EVENT_FIELDS``), joined as they are so a batch costs one pass over its events.
    ``first`` and ``last`` are the gateway's own positions of the batch in its event log, for tracing."""
    head = dumps({"type": "events", "gateway_id": gateway_id, "features_version": features_version,
                  "first": first, "last": last, "count": len(items)})
    return head[:-1] + ',"events":[' + ",".join(items) + "]}"


def pack_events(text: str) -> bytes:
    """A finalised events body as it goes on the wire."""
    # Level 1: nearly the size of level 6 on these repetitive batches at a third of the gateway's CPU.
    return zlib.compress(text.encode("utf-8"), 1)


def unpack_events(raw: bytes, limit: int = EVENTS_INFLATED_MAX) -> str:
    """The JSON text of an events message; ValueError if it is not zlib data or inflates past ``limit``
    (a small message that inflates to gigabytes must not take the centre's memory)."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(bytes(raw), limit)
    except zlib.error as exc:
        raise ValueError(f"not zlib-compressed JSON ({exc})") from None
    if inflater.unconsumed_tail:
        raise ValueError(f"inflates to more than {limit} bytes")
    if not inflater.eof:
        raise ValueError("the compressed data is cut short")
    return text.decode("utf-8")


def status_payload(state: str, *, bdseq: int, stamp, gateway_id: str, fields: dict | None = None) -> str:
    """The retained status; ``fields`` carries model, watchlist and software versions."""
    if state not in STATES:
        raise ValueError(f"status state must be one of {', '.join(STATES)}, got {state!r}")
    body = {"state": state, "bdseq": bdseq, "ts": iso(stamp.wall), "time_synced": bool(stamp.synced),
            "gateway_id": gateway_id, "model_version": None, "watchlist_version": None, "software_version": None}
    body.update(fields or {})
    return dumps(body)


def heartbeat_payload(*, stamp, bdseq: int, outbox_depth: int, oldest_unreceipted_age_s: float | None,
                      fields: dict | None = None) -> str:
    body = {"ts": iso(stamp.wall), "mono": round(stamp.mono, 3), "time_synced": bool(stamp.synced),
            "bdseq": bdseq, "outbox_depth": outbox_depth,
            "oldest_unreceipted_age_s": None if oldest_unreceipted_age_s is None else round(oldest_unreceipted_age_s, 1),
            "model_version": None, "watchlist_version": None, "verdicts": {}, "links": {}}
    body.update(fields or {})
    return dumps(body)


# -- downlink -------------------------------------------------------------------------------------
def _object(raw: bytes, what: str) -> dict:
    try:
        body = jsontext.loads(raw)
    except ValueError as exc:
        raise DownlinkError(f"{what} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise DownlinkError(f"{what} must be a JSON object, got {type(body).__name__}")
    return body


def receipt_payload(seqs) -> str:
    return dumps({"seqs": sorted(set(int(s) for s in seqs))})


def parse_receipt(raw: bytes) -> list[int]:
    body = _object(raw, "receipt")
    seqs = body.get("seqs")
    # Bounded like the outbox's 64-bit seq column, so a junk number is refused here, not by SQLite.
    if not isinstance(seqs, list) or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s < 2**63
                                             for s in seqs):
        raise DownlinkError('receipt needs "seqs": a list of positive whole numbers below 2**63')
    return seqs


def centre_status_payload(state: str, wall: float) -> str:
    return dumps({"state": state, "ts": iso(wall)})


def parse_centre_status(raw: bytes) -> str:
    body = _object(raw, "centre status")
    state = body.get("state")
    if state not in ("online", "offline"):
        raise DownlinkError(f'centre status "state" must be "online" or "offline", got {state!r}')
    return state


def parse_watchlist_update(raw: bytes) -> dict:
    """JSON-decode a watchlist update; ``Watchlist.apply`` checks its content."""
    return _object(raw, "watchlist update")


def parse_alert(raw: bytes) -> dict:
    """Check an alert as the centre receives it; raises DownlinkError naming a missing field."""
    body = _object(raw, "alert")
    for name in ALERT_REQUIRED:
        if name not in body:
            raise DownlinkError(f"alert is missing {name!r}")
    if body["type"] != "alert" or not isinstance(body["seq"], int) or body["seq"] <= 0:
        raise DownlinkError("alert needs type 'alert' and a positive whole-number seq")
    return body


def parse_ack(raw: bytes) -> dict:
    body = _object(raw, "acknowledgement")
    for name in ACK_REQUIRED:
        if name not in body:
            raise DownlinkError(f"acknowledgement is missing {name!r}")
    if not isinstance(body["seq"], int) or body["seq"] <= 0:
        raise DownlinkError("acknowledgement needs a positive whole-number seq")
    return body


def _uplink_record(raw: bytes, what: str, kind: str, required: tuple) -> dict:
    body = _object(raw, what)
    for name in required:
        if name not in body:
            raise DownlinkError(f"{what} is missing {name!r}")
    if body["type"] != kind or not isinstance(body["seq"], int) or isinstance(body["seq"], bool) or body["seq"] <= 0:
        raise DownlinkError(f"{what} needs type {kind!r} and a positive whole-number seq")
    return body


def parse_outcome(raw: bytes) -> dict:
    body = _uplink_record(raw, "outcome", "outcome", OUTCOME_REQUIRED)
    if body["outcome"] not in OUTCOMES:
        raise DownlinkError(f"outcome must be one of {', '.join(OUTCOMES)}, got {body['outcome']!r}")
    return body


def parse_escalation(raw: bytes) -> dict:
    return _uplink_record(raw, "escalation", "escalation", ESCALATION_REQUIRED)


EVENTS_REQUIRED = ("type", "gateway_id", "seq", "region", "branch", "historical", "features_version", "events")


def parse_events(raw: bytes) -> dict:
    """Inflate and check the envelope of an events batch; the centre checks each event (centre/schema.py)."""
    try:
        text = unpack_events(raw)
    except ValueError as exc:
        raise DownlinkError(f"events batch is {exc}") from None
    body = _object(text, "events batch")
    for name in EVENTS_REQUIRED:
        if name not in body:
            raise DownlinkError(f"events batch is missing {name!r}")
    if body["type"] != "events" or not isinstance(body["seq"], int) or body["seq"] <= 0 \
            or not isinstance(body["events"], list):
        raise DownlinkError("events batch needs type 'events', a positive whole-number seq and a list of events")
    return body
