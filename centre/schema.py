"""What the centre accepts from a gateway: the payload schemas of docs/mqtt.md, checked field by field.

``check(topic, payload)`` takes a message exactly as it came off the broker and returns a
``Record`` (the topic's gateway, the record kind and the decoded body), or raises ``SchemaError``
naming the field at fault. The required-field lists for alerts and acknowledgements are the ones
``counterguard.core.messages`` builds them from, so the two ends cannot drift apart.

A record must also come from the gateway it names: its ``gateway_id`` (and ``region`` / ``branch``
where it carries them) must match the topic it was published on, so one gateway cannot write into
another's history.

    record = check("counterguard/v1/610100/b0231/gw-0001/alert", raw_bytes)
    record.kind, record.gateway_id, record.body["seq"]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from counterguard.core import jsontext, messages

# The topic leaf says what a message is; the body's "type" must agree where it has one.
LEAF_KIND = {"alert": "alert", "ack": "acknowledgement", "outcome": "outcome", "escalation": "escalation",
             "status": "status", "heartbeat": "heartbeat", "events": "events"}
# Kinds that are stored once per (gateway_id, seq) and receipted.
SEQUENCED = ("alert", "acknowledgement", "outcome", "escalation")
# What the centre receipts: those, and batches of events for learning (stored once per event).
RECEIPTED = SEQUENCED + ("events",)
VERDICT_LEVELS = ("green", "amber", "red")
EVENTS_MAX_PAYLOAD = 1024 * 1024  # the broker's message limit: an events batch is compressed
EVENTS_PER_BATCH_MAX = 5000
FEATURES_MAX = 256
LEVELS = ("amber", "red")
OUTCOMES = messages.OUTCOMES
ACK_VIA = ("button", "console", "cli")
OUTCOME_VIA = ("console", "cli")
ANSWERS = messages.ANSWERS
ANSWERS_MAX = 100       # caring questions at one alert: a few general ones and a few per reason
ANSWER_KEY_MAX = 64     # "<section>.<n>", the section a reason name
QUESTION_MAX = 1000     # one question as asked, in characters
STAFF_MAX = 64          # who raised an alert themselves: a staff number or name
RAISE_NOTE_MAX = 500    # what they noticed, in a sentence or two
MAX_PAYLOAD = 64 * 1024  # far above any real record; a larger one is quarantined, not parsed


_MISSING = object()


class SchemaError(ValueError):
    """A message does not match its documented schema; the message names the field."""


@dataclass(frozen=True)
class Record:
    kind: str
    region: str
    branch: str
    gateway_id: str
    body: dict
    raw: str = ""  # the payload as received (UTF-8 text), stored as it came

    @property
    def root(self) -> str:
        return messages.topic_root(self.region, self.branch, self.gateway_id)


# -- field checks ---------------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _text(v) -> bool:
    return isinstance(v, str)


def _name(v) -> bool:
    return isinstance(v, str) and bool(v) and len(v) <= 200


def _positive_int(v) -> bool:
    return _is_int(v) and 0 < v < 2**63  # a seq fits a 64-bit signed column in either database


def _count(v) -> bool:
    return _is_int(v) and v >= 0


def _time(v) -> bool:
    # RFC 3339; the centre keeps the text as sent and orders by seq and mono, not by this.
    return isinstance(v, str) and 10 <= len(v) <= 40 and v[:4].isdigit()


def _bool(v) -> bool:
    return isinstance(v, bool)


def _one_of(*allowed):
    def check(v) -> bool:
        return v in allowed
    check.allowed = allowed
    return check


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _hash(v) -> bool:
    return isinstance(v, str) and _HEX64.fullmatch(v) is not None


def _optional(check):
    def inner(v) -> bool:
        return v is None or check(v)
    inner.allowed = getattr(check, "allowed", None)
    inner.optional = True
    return inner


def _note(v) -> bool:
    return isinstance(v, str) and len(v) <= 2000  # docs/mqtt.md: free text, at most 2,000 characters


def _reasons(v) -> bool:
    return isinstance(v, list) and all(isinstance(r, str) and r for r in v)


def _answers(v) -> bool:
    """The caring questions' answers of an outcome; raises SchemaError saying which item is wrong."""
    if not isinstance(v, list) or len(v) > ANSWERS_MAX:
        raise SchemaError(f"outcome field 'answers' must be a list of at most {ANSWERS_MAX} answers")
    seen = set()
    for n, item in enumerate(v, 1):
        where = f"outcome field 'answers' item {n}"
        if not isinstance(item, dict) or set(item) != {"key", "question", "answer"}:
            raise SchemaError(f"{where} must be an object with exactly key, question and answer")
        key, question, answer = item["key"], item["question"], item["answer"]
        if not isinstance(key, str) or not 0 < len(key) <= ANSWER_KEY_MAX:
            raise SchemaError(f"{where}: key must be text of 1 to {ANSWER_KEY_MAX} characters, got {key!r}")
        if key in seen:
            raise SchemaError(f"{where}: key {key!r} is answered twice")
        seen.add(key)
        if not isinstance(question, str) or len(question) > QUESTION_MAX:
            raise SchemaError(f"{where} ({key}): question must be text of at most {QUESTION_MAX} characters")
        if answer not in ANSWERS:
            raise SchemaError(f"{where} ({key}): answer must be one of {', '.join(ANSWERS)}, got {answer!r}")
    return True


def _handled_at(v) -> bool:
    # 1, 2 or 3 as a JSON whole number: not true (== 1 in Python), not 1.0, not "teller".
    return _is_int(v) and v in messages.HANDLED_AT


_handled_at.allowed = tuple(messages.HANDLED_AT)


def _staff(v) -> bool:
    return isinstance(v, str) and 0 < len(v.strip()) and len(v) <= STAFF_MAX


def _raise_note(v) -> bool:
    return isinstance(v, str) and len(v) <= RAISE_NOTE_MAX


def _score(v) -> bool:
    return _is_num(v) and 0.0 <= v <= 1.0


def _version(v) -> bool:
    return v is None or _is_int(v) or isinstance(v, str)


_SENT = {"seq": _positive_int, "region": _name, "branch": _name, "historical": _bool,
         "gateway_id": _name, "mono": _is_num, "time_synced": _bool}

FIELDS: dict[str, dict] = {
    "alert": {**{n: None for n in messages.ALERT_REQUIRED}, **_SENT,
              "type": _one_of("alert"), "alert_id": _name, "event_id": _name, "counter": _count,
              "level": _one_of(*LEVELS), "score": _score, "reasons": _reasons, "text": _text,
              "kind": _name, "amount": _is_num, "account": _text, "event_ts": _time, "raised_at": _time,
              "model_version": _version, "watchlist_version": _version,
              "raised_by": _staff, "note": _raise_note,
              "customer_id_type": _one_of("resident", "passport", "other"), "customer_id_hash": _hash,
              "customer_phone_hash": _hash, "payee_account_hash": _hash},
    "acknowledgement": {**{n: None for n in messages.ACK_REQUIRED}, **_SENT,
                        "type": _one_of("acknowledgement"), "alert_id": _name, "counter": _count,
                        "by": _name, "via": _one_of(*ACK_VIA), "at": _time},
    "outcome": {**_SENT, "type": _one_of("outcome"), "alert_id": _name, "counter": _count,
                "outcome": _one_of(*OUTCOMES), "note": _note, "by": _name,
                "via": _one_of(*OUTCOME_VIA),
                "at": _time, "answers": _answers, "handled_at": _handled_at},
    "escalation": {**_SENT, "type": _one_of("escalation"), "alert_id": _name, "counter": _count,
                   "level": _one_of(*LEVELS), "reason": _name, "waited_s": _is_num, "at": _time},
    "status": {"state": _one_of(*messages.STATES), "bdseq": _count, "ts": _time, "gateway_id": _name,
               "time_synced": _optional(_bool), "model_version": _optional(_version),
               "watchlist_version": _optional(_version), "thresholds_version": _optional(_version),
               "model_manifest_version": _optional(_version), "downlink_rejected": _optional(_count),
               "software_version": _optional(_version), "shadow_version": _optional(_version),
               "shadow_manifest_version": _optional(_version),
               "lists": _optional(lambda v: isinstance(v, dict))},
    "heartbeat": {"ts": _time, "bdseq": _count, "outbox_depth": _count,
                  "oldest_unreceipted_age_s": _optional(_is_num), "mono": _optional(_is_num),
                  "time_synced": _optional(_bool), "model_version": _optional(_version),
                  "watchlist_version": _optional(_version), "thresholds_version": _optional(_version),
                  "model_manifest_version": _optional(_version), "downlink_rejected": _optional(_count),
                  "shadow_version": _optional(_version), "shadow_manifest_version": _optional(_version),
                  "verdicts": _optional(lambda v: isinstance(v, dict)),
                  "links": _optional(lambda v: isinstance(v, dict)),
                  "lists": _optional(lambda v: isinstance(v, dict))},
}
# Fields that came later than the first gateways, or are there only sometimes: an acknowledgement's
# "counter"; an alert branch staff raised themselves names them and carries their note (the model's
# alerts have neither); an outcome's "answers", absent when no caring question was recorded, and its
# "handled_at", absent from older gateways' outcomes (counted as "level not recorded").
OPTIONAL = {"acknowledgement": {"counter"}, "alert": {"raised_by", "note", *messages.IDENTITY_FIELDS},
            "outcome": {"answers", "handled_at"}}


_NUMBERS = {int, float}


def _hash_or_none(v) -> bool:
    return v is None or (isinstance(v, str) and _HEX64.fullmatch(v) is not None)


def _features(v) -> bool:
    # Checked as a whole (tens of thousands of events a second go through here): numbers only, and a
    # finite sum, which no NaN or infinity leaves.
    if v is None:
        return True
    return (isinstance(v, list) and len(v) <= FEATURES_MAX and set(map(type, v)) <= _NUMBERS
            and math.isfinite(math.fsum(v)))


EVENT_FIELDS = {"event_id": _name, "counter": _count, "kind": _name, "amount": _is_num, "ts": _time,
                "account_hash": _hash_or_none, "level": _one_of(*VERDICT_LEVELS), "score": _score,
                "reasons": _reasons, "model_version": _version, "watchlist_version": _version,
                "features": _features, "shadow_score": _optional(_score), "shadow_version": _version,
                "decided_at": _time}
EVENTS_ENVELOPE = {**{k: v for k, v in _SENT.items() if k not in ("mono", "time_synced")}, "type": _one_of("events"), "features_version": _is_int,
                   "events": lambda v: isinstance(v, list) and 0 < len(v) <= EVENTS_PER_BATCH_MAX}


_EVENT_CHECKS = tuple((name, check, getattr(check, "optional", False)) for name, check in EVENT_FIELDS.items())


# -- a whole batch's column at a time ---------------------------------------------------------------
# Each says of a column (one field's values over the batch, missing ones left out) what the field's
# check says of every value in it, with builtins that run in C: a batch of 500 is checked in a tenth
# of the time a call per value takes. A column that fails goes to the value-by-value check, which
# names the event and the field. Numbers need no finiteness test: the strict parser refused NaN and
# infinity before any check runs.
_INT, _FLOAT, _STR, _NONE = int, float, str, type(None)
_HEX64_RUN = re.compile(r"(?:[0-9a-f]{64})*")


def _types(col) -> set:
    return set(map(type, col))


def _names_col(col) -> bool:
    return _types(col) == {_STR} and min(map(len, col)) > 0 and max(map(len, col)) <= 200


def _counts_col(col) -> bool:
    return _types(col) == {_INT} and min(col) >= 0


def _nums_col(col) -> bool:
    return _types(col) <= {_INT, _FLOAT}


def _scores_col(col) -> bool:
    return _nums_col(col) and min(col) >= 0 and max(col) <= 1


def _times_col(col) -> bool:
    return (_types(col) == {_STR} and min(map(len, col)) >= 10 and max(map(len, col)) <= 40
            and "".join([v[:4] for v in col]).isdigit())


def _hashes_col(col) -> bool:
    given = [v for v in col if v is not None]
    return (not given or (_types(given) == {_STR} and set(map(len, given)) == {64}
                          and _HEX64_RUN.fullmatch("".join(given)) is not None))


def _levels_col(col) -> bool:
    return _types(col) == {_STR} and set(col) <= set(VERDICT_LEVELS)


def _reasons_col(col) -> bool:
    if _types(col) != {list}:
        return False
    items = [r for v in col for r in v]
    return not items or (_types(items) == {_STR} and min(map(len, items)) > 0)


def _versions_col(col) -> bool:
    return _types(col) <= {_NONE, _INT, _STR}


def _features_col(col) -> bool:
    return all(map(_features, col))


def _optional_scores_col(col) -> bool:
    given = [v for v in col if v is not None]
    return not given or _scores_col(given)


_EVENT_COLUMNS = {"event_id": _names_col, "counter": _counts_col, "kind": _names_col, "amount": _nums_col,
                  "ts": _times_col, "account_hash": _hashes_col, "level": _levels_col, "score": _scores_col,
                  "reasons": _reasons_col, "model_version": _versions_col, "watchlist_version": _versions_col,
                  "features": _features_col, "shadow_score": _optional_scores_col,
                  "shadow_version": _versions_col, "decided_at": _times_col}
assert _EVENT_COLUMNS.keys() == EVENT_FIELDS.keys()


def _events_pass_by_column(events: list) -> bool:
    """True when every event passes every field's check (False: look event by event)."""
    if _types(events) != {dict}:
        return False
    for name, check, optional in _EVENT_CHECKS:
        col = [e.get(name, _MISSING) for e in events]
        if optional:
            col = [v for v in col if v is not _MISSING]
        elif any(v is _MISSING for v in col):
            return False
        if col and not _EVENT_COLUMNS[name](col):
            return False
    return True


def _check_events(body: dict) -> None:
    """An events batch: the envelope, then every event, naming the first one at fault by position."""
    _check_against("events", EVENTS_ENVELOPE, body, shown=200)
    if not _events_pass_by_column(body["events"]):
        _check_each_event(body["events"])


def _check_each_event(events: list) -> None:
    """SchemaError naming the first event at fault by position, and its field."""
    for n, event in enumerate(events, 1):
        if not isinstance(event, dict):
            raise SchemaError(f"events item {n} must be a JSON object")
        for name, check, optional in _EVENT_CHECKS:  # the fast path; the general one words the error
            value = event.get(name, _MISSING)
            if (value is _MISSING and not optional) or (value is not _MISSING and not check(value)):
                _check_against(f"events item {n}", EVENT_FIELDS, event, shown=200)


def _check_against(what: str, fields: dict, body: dict, optional=(), *, shown: int | None = None) -> None:
    """Every field of ``fields`` in ``body``; SchemaError naming the first one at fault (its bad value
    cut to ``shown`` characters, where a value may be long)."""
    for name, check in fields.items():
        if name not in body:
            if getattr(check, "optional", False) or name in optional:
                continue
            raise SchemaError(f"{what} is missing {name!r}")
        if check is not None and not check(body[name]):
            allowed = getattr(check, "allowed", None)
            hint = f" (one of {', '.join(map(str, (a for a in allowed if a is not None)))})" if allowed else ""
            value = repr(body[name])
            raise SchemaError(f"{what} field {name!r} has a bad value {value[:shown] if shown else value}{hint}")


def _check_fields(kind: str, body: dict) -> None:
    _check_against(kind, FIELDS[kind], body, OPTIONAL.get(kind, ()))


def parse_topic(topic: str) -> tuple[str, str, str, str]:
    """``counterguard/v1/{region}/{branch}/{gateway_id}/{leaf}`` -> (region, branch, gateway_id, kind)."""
    parts = topic.split("/")
    if len(parts) != 6 or "/".join(parts[:2]) != messages.PREFIX:
        raise SchemaError(f"topic {topic!r} is not a gateway topic {messages.PREFIX}/region/branch/gateway/leaf")
    region, branch, gateway_id, leaf = parts[2:]
    if leaf not in LEAF_KIND:
        raise SchemaError(f"topic {topic!r} ends in {leaf!r}, which the centre does not take "
                          f"(one of {', '.join(LEAF_KIND)})")
    return region, branch, gateway_id, LEAF_KIND[leaf]


def check(topic: str, payload: bytes) -> Record:
    """Decode and check one message; raises SchemaError naming what was wrong."""
    region, branch, gateway_id, kind = parse_topic(topic)
    limit = EVENTS_MAX_PAYLOAD if kind == "events" else MAX_PAYLOAD
    if len(payload) > limit:
        raise SchemaError(f"{kind} is {len(payload)} bytes, more than the {limit} the centre accepts")
    try:
        if kind == "events":  # compressed on the wire (docs/mqtt.md); kept inflated
            raw = messages.unpack_events(payload if isinstance(payload, (bytes, bytearray)) else payload.encode())
        else:
            raw = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
        body = jsontext.loads(raw)
    except ValueError as exc:  # not UTF-8, and thousands of '[' in a row included: quarantined like any other junk
        raise SchemaError(f"{kind} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise SchemaError(f"{kind} must be a JSON object, got {type(body).__name__}")
    if kind == "events":
        _check_events(body)
    else:
        _check_fields(kind, body)
    if "gateway_id" in body and body["gateway_id"] != gateway_id:
        raise SchemaError(f"{kind} field 'gateway_id' is {body['gateway_id']!r} but it came on the topic "
                          f"of gateway {gateway_id!r}")
    for name, value in (("region", region), ("branch", branch)):
        if name in body and body[name] != value:
            raise SchemaError(f"{kind} field {name!r} is {body[name]!r} but the topic says {value!r}")
    return Record(kind, region, branch, gateway_id, body, raw)
