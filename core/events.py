"""Event schema v2: what a teller terminal reports about one withdrawal or transfer.

docs/events.md is the reference. ``parse_event`` turns a decoded JSON object into an ``Event`` or
raises ``SchemaError`` naming the field, which the gateway sends back as a NAK. ``canonical_digest``
says whether two payloads carry the same event, however each was spelled.

Version 2 adds who the customer is (``customer_id``, ``customer_phone``) and where a transfer goes
(``payee_account``); every v1 event is a valid v2 event. The gateway never keeps those three in
clear: ``parse_event(body, identity_key=key)`` verifies each and holds only its keyed hash
(core/identity.py), and ``kept_body`` is the event as it may be stored, logged, exported or sent,
with ``customer_id_hash``, ``customer_phone_hash`` and ``payee_account_hash`` in their place.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from counterguard.core.identity import CUSTOMER_ID_TYPES, IdentityError, check_identity, identity_hash, is_identity_hash

SCHEMA_VERSION = 2
# Money leaving an account at a bank counter, and the "two cards" a fraud ring needs: a SIM card at a
# carrier's outlet, a bank account at a bank's desk (docs/events.md "Two cards").
MONEY_KINDS = ("cash_withdrawal", "transfer_out")
CARD_KINDS = ("sim_activation", "account_opening")
KINDS = MONEY_KINDS + CARD_KINDS
# Which kinds a gateway takes, by the sector it stands in (gateway.sector).
SECTORS = {"bank": ("cash_withdrawal", "transfer_out", "account_opening"), "carrier": ("sim_activation",)}
SIM_PURPOSES = ("personal", "family", "business", "iot", "other")
NUMBER_TYPES = ("prepaid", "postpaid", "data_only", "iot")
ACCOUNT_PURPOSES = ("salary", "savings", "pension", "business", "student", "investment", "other")
CARD_TYPES = ("type_i", "type_ii", "type_iii", "credit")  # Class I / II / III accounts, a credit card
MAX_CARDS = 1000  # SIM cards or accounts held by one person: far above any real count
TELLER_FLAGS = ("customer_on_phone", "accompanied", "anxious", "urgent", "declared_purpose_mismatch")
PURPOSES = (
    "daily", "shopping", "business", "medical", "education", "home", "travel", "gift",
    "transfer_to_relative", "investment", "loan_repayment", "other",
)
REQUIRED = ("event_id", "ts", "counter", "kind", "account", "amount")
_KNOWN = frozenset(REQUIRED) | {
    "customer_age", "account_age_days", "balance_before", "inbound_24h", "inbound_count_24h",
    "teller_flags", "purpose", "payee_new", "payee_account_age_days",
    "customer_id_type", "customer_id", "customer_phone", "payee_account",
    "customer_id_hash", "customer_phone_hash", "payee_account_hash",
    "sims_held", "sims_requested", "for_self", "accompanied", "number_type", "accounts_held",
    "accounts_opened_90d", "card_type",
}  # every other field is kept in Event.extra
# Identity fields a terminal sends in clear, and the field that holds each one's keyed hash once the
# gateway has validated it. Only the hashed form is ever stored, logged, exported or sent.
HASHED_FIELDS = {"customer_id": "customer_id_hash", "customer_phone": "customer_phone_hash",
                 "payee_account": "payee_account_hash"}
# Bounds that no real counter transaction crosses; beyond them the terminal is sending nonsense.
MAX_AMOUNT = 1e10
MAX_AGE = 130
MAX_ACCOUNT_AGE_DAYS = 365 * 120

_ACCOUNT = re.compile(r"[0-9]{6,34}")
# RFC 3339 date-time with an explicit offset (Z or +hh:mm); fractional seconds allowed.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_FRACTION = re.compile(r"(.*:[0-9]{2})(\.[0-9]+)?([+-][0-9]{2}:[0-9]{2})$")


class SchemaError(ValueError):
    """An event field is missing or wrong; ``field`` names it."""

    def __init__(self, field: str, detail: str):
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@dataclass(frozen=True)
class Event:
    event_id: str
    ts: datetime
    counter: int
    kind: str
    account: str
    amount: float
    customer_age: int | None = None
    account_age_days: int | None = None
    balance_before: float | None = None
    inbound_24h: float | None = None
    inbound_count_24h: int | None = None
    teller_flags: frozenset = frozenset()
    purpose: str | None = None
    payee_new: bool | None = None
    payee_account_age_days: int | None = None
    # v2: keyed hashes (64 hex digits) of who the customer is and where a transfer goes; never clear
    customer_id_type: str | None = None
    customer_id_hash: str | None = None
    customer_phone_hash: str | None = None
    payee_account_hash: str | None = None
    # sim_activation and account_opening (the person takes the account's place: ``account`` is
    # the keyed hash of customer_id, so the local history counts the person's cards)
    sims_held: int | None = None
    sims_requested: int | None = None
    for_self: bool | None = None
    accompanied: bool | None = None
    number_type: str | None = None
    accounts_held: int | None = None
    accounts_opened_90d: int | None = None
    card_type: str | None = None
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @cached_property  # read for the history window and again when stored
    def epoch(self) -> float:
        """The event's time as seconds since the epoch (the terminal's clock)."""
        return self.ts.timestamp()


def parse_ts(value: str) -> datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise SchemaError("ts", "must be an RFC 3339 time with an offset, e.g. 2024-05-06T09:30:00+08:00")
    text = value.replace("z", "Z").replace("t", "T")
    if "Z" in text:
        text = text.replace("Z", "+00:00")
    if " " in text:
        text = text.replace(" ", "T", 1)
    # fromisoformat in 3.10 accepts only 3 or 6 fractional digits; normalise to 6.
    m = _FRACTION.match(text)
    if m and m.group(2):
        frac = (m.group(2)[1:] + "000000")[:6]
        text = f"{m.group(1)}.{frac}{m.group(3)}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise SchemaError("ts", f"{value!r} is not a valid date and time") from None


def _int(body: dict, name: str, lo: int, hi: int, required: bool = False) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise SchemaError(name, "is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(name, f"must be a whole number, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise SchemaError(name, f"must be between {lo} and {hi}, got {value}")
    return value


def _money(body: dict, name: str, *, positive: bool, required: bool = False) -> float | None:
    value = body.get(name)
    if value is None:
        if required:
            raise SchemaError(name, "is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(name, f"must be a number of yuan, got {type(value).__name__}")
    if isinstance(value, int) and abs(value) > MAX_AMOUNT:  # float() of a 400-digit number would overflow
        raise SchemaError(name, f"must be a finite amount below {MAX_AMOUNT:.0f}")
    value = float(value)
    if not math.isfinite(value) or value > MAX_AMOUNT:
        raise SchemaError(name, f"must be a finite amount below {MAX_AMOUNT:.0f}")
    if positive and value <= 0:
        raise SchemaError(name, "must be greater than 0")
    if not positive and value < 0:
        raise SchemaError(name, "must not be negative")
    return value


def _payee(body: dict, kind: str) -> tuple[bool | None, int | None]:
    """The receiving side of a transfer, as the core banking system knows it at the counter."""
    new = body.get("payee_new")
    age = body.get("payee_account_age_days")
    if kind != "transfer_out":
        # A cash withdrawal has no payee: a terminal that sends one has mixed up two transactions.
        for name, value in (("payee_new", new), ("payee_account_age_days", age)):
            if value is not None:
                raise SchemaError(name, "is only for kind transfer_out; a cash withdrawal has no payee")
        return None, None
    if new is not None and not isinstance(new, bool):
        raise SchemaError("payee_new", f"must be true or false, got {type(new).__name__}")
    return new, _int(body, "payee_account_age_days", 0, MAX_ACCOUNT_AGE_DAYS)


def _identity(body: dict, name: str, hash_kind: str | None, key: bytes | None) -> str | None:
    """The keyed hash of one identity field, from its clear value (verified, then hashed with ``key``)
    or from ``<name>_hash`` as an export or replay carries it. Errors never repeat the value."""
    clear, hashed_name = body.get(name), HASHED_FIELDS[name]
    hashed = body.get(hashed_name)
    if clear is not None and hashed is not None:
        raise SchemaError(name, f"send {name} or {hashed_name}, not both")
    if hashed is not None:
        if not is_identity_hash(hashed):
            raise SchemaError(hashed_name, "must be a keyed hash: 64 lowercase hex digits")
        return hashed
    if clear is None:
        return None
    try:
        # Verified even without a key, so a mistyped number is refused wherever it is parsed.
        if key is None:
            check_identity(hash_kind, clear)
            return None
        digest = identity_hash(key, hash_kind, clear)
    except IdentityError as exc:
        detail = str(exc).removeprefix(f"{hash_kind} ")
        if hash_kind == "account":
            detail = "must be a string of 6 to 34 digits"
        raise SchemaError(name, detail) from None
    return digest


def parse_event(body: dict, identity_key: bytes | None = None) -> Event:
    """Validate a decoded event object. Unknown fields are kept in ``extra`` and otherwise ignored.

    ``identity_key`` (the alliance key the watchlist is hashed with) turns a clear ``customer_id``,
    ``customer_phone`` or ``payee_account`` into its keyed hash; without it they are verified and
    left out (their ``*_hash`` forms are kept either way)."""
    if not isinstance(body, dict):
        raise SchemaError("event", "must be a JSON object")
    if body.get("kind") in CARD_KINDS:
        return _card_event(body, identity_key)
    for name in REQUIRED:
        if body.get(name) is None:
            raise SchemaError(name, "is required")
    event_id = _event_id(body)
    ts = parse_ts(body["ts"])
    counter = _int(body, "counter", 1, 64, required=True)
    kind = body["kind"]
    if kind not in KINDS:
        raise SchemaError("kind", f"must be one of {', '.join(KINDS)}")
    for name in _CARD_ONLY:
        if body.get(name) is not None:
            raise SchemaError(name, f"is only for kinds {' and '.join(CARD_KINDS)}")
    account = body["account"]
    if not isinstance(account, str) or not _ACCOUNT.fullmatch(account):
        raise SchemaError("account", "must be a string of 6 to 34 digits")
    amount = _money(body, "amount", positive=True, required=True)
    flags = _teller_flags(body)
    purpose = body.get("purpose")
    if purpose is not None and purpose not in PURPOSES:
        raise SchemaError("purpose", f"must be one of {', '.join(PURPOSES)}")
    payee_new, payee_account_age_days = _payee(body, kind)
    id_type = body.get("customer_id_type")
    if id_type is not None:
        if not isinstance(id_type, str) or id_type not in CUSTOMER_ID_TYPES:
            raise SchemaError("customer_id_type", f"must be one of {', '.join(CUSTOMER_ID_TYPES)}")
        if body.get("customer_id") is None and body.get("customer_id_hash") is None:
            raise SchemaError("customer_id_type", "is only sent with customer_id")
    elif body.get("customer_id") is not None or body.get("customer_id_hash") is not None:
        id_type = "resident"  # the resident identity card is what a mainland counter sees
    customer_id_hash = _identity(body, "customer_id", CUSTOMER_ID_TYPES.get(id_type), identity_key)
    customer_phone_hash = _identity(body, "customer_phone", "phone", identity_key)
    if kind != "transfer_out":
        for name in ("payee_account", "payee_account_hash"):
            if body.get(name) is not None:
                raise SchemaError(name, "is only for kind transfer_out; a cash withdrawal has no payee")
    payee_account_hash = _identity(body, "payee_account", "account", identity_key)
    return Event(
        event_id=event_id,
        ts=ts,
        counter=counter,
        kind=kind,
        account=account,
        amount=amount,
        customer_age=_int(body, "customer_age", 0, MAX_AGE),
        account_age_days=_int(body, "account_age_days", 0, MAX_ACCOUNT_AGE_DAYS),
        balance_before=_money(body, "balance_before", positive=False),
        inbound_24h=_money(body, "inbound_24h", positive=False),
        inbound_count_24h=_int(body, "inbound_count_24h", 0, 1_000_000),
        teller_flags=frozenset(flags),
        purpose=purpose,
        payee_new=payee_new,
        payee_account_age_days=payee_account_age_days,
        customer_id_type=id_type,
        customer_id_hash=customer_id_hash,
        customer_phone_hash=customer_phone_hash,
        payee_account_hash=payee_account_hash,
        extra={k: v for k, v in body.items() if k not in _KNOWN},
    )


_CARD_ONLY = ("sims_held", "sims_requested", "for_self", "accompanied", "number_type", "accounts_held",
              "accounts_opened_90d", "card_type")
_CARD_FIELDS = {
    "sim_activation": ("sims_held", "sims_requested", "for_self", "accompanied", "number_type"),
    "account_opening": ("accounts_held", "accounts_opened_90d", "for_self", "accompanied", "card_type"),
}
_NO_MONEY = ("account", "amount", "balance_before", "inbound_24h", "inbound_count_24h", "account_age_days",
             "payee_new", "payee_account_age_days", "payee_account", "payee_account_hash")


def _flag(body: dict, name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise SchemaError(name, f"must be true or false, got {type(value).__name__}")
    return value


def _card_event(body: dict, identity_key: bytes | None) -> Event:
    """A SIM card activation (carrier outlet) or an account opening (bank desk): who, how many
    cards, for whom; no account or amount yet. The person is required: cards are counted per person."""
    kind = body["kind"]
    for name in ("event_id", "ts", "counter"):
        if body.get(name) is None:
            raise SchemaError(name, "is required")
    if body.get("customer_id") is None and body.get("customer_id_hash") is None:
        raise SchemaError("customer_id", f"is required for {kind}: cards are counted per person")
    if kind == "sim_activation" and body.get("sims_requested") is None:
        raise SchemaError("sims_requested", "is required for sim_activation")
    for name in _NO_MONEY:
        if body.get(name) is not None:
            raise SchemaError(name, f"is not a field of {kind}: no money moves yet")
    for name in _CARD_ONLY:
        if body.get(name) is not None and name not in _CARD_FIELDS[kind]:
            raise SchemaError(name, f"is not a field of {kind}")
    event_id = _event_id(body)
    ts = parse_ts(body["ts"])
    counter = _int(body, "counter", 1, 64, required=True)
    flags = _teller_flags(body)
    purposes = SIM_PURPOSES if kind == "sim_activation" else ACCOUNT_PURPOSES
    purpose = body.get("purpose")
    if purpose is not None and purpose not in purposes:
        raise SchemaError("purpose", f"for {kind} must be one of {', '.join(purposes)}")
    for name, allowed in (("number_type", NUMBER_TYPES), ("card_type", CARD_TYPES)):
        if body.get(name) is not None and body[name] not in allowed:
            raise SchemaError(name, f"must be one of {', '.join(allowed)}")
    id_type = body.get("customer_id_type")
    if id_type is not None and (not isinstance(id_type, str) or id_type not in CUSTOMER_ID_TYPES):
        raise SchemaError("customer_id_type", f"must be one of {', '.join(CUSTOMER_ID_TYPES)}")
    id_type = id_type or "resident"
    customer = _identity(body, "customer_id", CUSTOMER_ID_TYPES[id_type], identity_key)
    return Event(
        event_id=event_id, ts=ts, counter=counter, kind=kind,
        # The person is the history's key: the same person's cards earlier today, at any counter.
        account=customer or "", amount=0.0,
        customer_age=_int(body, "customer_age", 0, MAX_AGE), teller_flags=frozenset(flags), purpose=purpose,
        customer_id_type=id_type, customer_id_hash=customer,
        customer_phone_hash=_identity(body, "customer_phone", "phone", identity_key),
        sims_held=_int(body, "sims_held", 0, MAX_CARDS), sims_requested=_int(body, "sims_requested", 1, 100),
        for_self=_flag(body, "for_self"), accompanied=_flag(body, "accompanied"),
        number_type=body.get("number_type"), accounts_held=_int(body, "accounts_held", 0, MAX_CARDS),
        accounts_opened_90d=_int(body, "accounts_opened_90d", 0, MAX_CARDS), card_type=body.get("card_type"),
        extra={k: v for k, v in body.items() if k not in _KNOWN},
    )


def kept_body(body: dict, event: Event) -> dict:
    """The event as the gateway may keep it: each clear identity field replaced by its keyed hash
    from ``event`` (parsed with the identity key). ``body`` itself when it has none, so the common
    event is not copied or re-encoded."""
    if not any(body.get(name) is not None for name in HASHED_FIELDS):
        return body
    kept = {}
    for name, value in body.items():
        if name in HASHED_FIELDS:
            if value is not None:
                hashed = getattr(event, HASHED_FIELDS[name])
                if hashed is None:
                    raise ValueError(f"{name} was parsed without the identity key; it cannot be kept")
                kept[HASHED_FIELDS[name]] = hashed
        else:
            kept[name] = value
    return kept


def _event_id(body: dict) -> str:
    event_id = body["event_id"]
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 64:
        raise SchemaError("event_id", "must be a string of 1 to 64 characters")
    _printable("event_id", event_id)
    return event_id


def _teller_flags(body: dict) -> list:
    flags = body.get("teller_flags")
    if flags is None:
        return []
    if not isinstance(flags, list):
        raise SchemaError("teller_flags", "must be a list")
    for flag in flags:
        if flag not in TELLER_FLAGS:
            raise SchemaError("teller_flags", f"unknown flag {flag!r}; expected any of {', '.join(TELLER_FLAGS)}")
    return flags


def _printable(name: str, text: str) -> None:
    """An id is shown on screens, in logs and in the centre's dashboard, and stored as UTF-8: no
    control characters (NUL, escape sequences), no invisible or direction-changing characters (an
    RTL override makes one id look like another) and no lone surrogate (not UTF-8 at all)."""
    if text.isprintable():
        return
    at, char = next((i, c) for i, c in enumerate(text) if not c.isprintable())
    what = "half of a surrogate pair, which is not text" if 0xD800 <= ord(char) <= 0xDFFF else (
        "a control, invisible or direction-changing character")
    raise SchemaError(name, f"must be printable text; character {at + 1} (U+{ord(char):04X}) is {what}")


def _canonical(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 2000.0 and 2e3 are the number 2000
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value  # str, int, bool, None and a float with a fraction (repr is exact and shortest)


def canonical_digest(body: dict) -> str:
    """SHA-256 of the event as data, not as bytes: keys sorted, compact, numbers by value (2000 ==
    2000.0 == 2e3), a top-level null dropped (null counts as absent). A resend that a terminal
    re-encoded has the same digest; any changed field changes it."""
    data = {k: _canonical(v) for k, v in body.items() if v is not None}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
