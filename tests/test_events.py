"""Event schema v1: every wrong field is named in the error the terminal gets back."""

import json
from pathlib import Path

import pytest

from counterguard.core import wire
from counterguard.core.events import Event, SchemaError, parse_event

GOOD = {
    "event_id": "b17-c3-000042",
    "ts": "2024-05-06T09:31:07+08:00",
    "counter": 3,
    "kind": "cash_withdrawal",
    "account": "6222020200112233445",
    "amount": 50000,
}


def with_(**changes):
    body = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return body


def test_minimal_event_parses():
    event = parse_event(GOOD)
    assert isinstance(event, Event)
    assert event.amount == 50000.0 and event.counter == 3 and event.teller_flags == frozenset()
    assert event.ts.utcoffset().total_seconds() == 8 * 3600


def test_optional_fields_and_unknown_fields_kept():
    event = parse_event(with_(customer_age=67, account_age_days=3650, balance_before=61000.5,
                              inbound_24h=0, inbound_count_24h=0, teller_flags=["customer_on_phone", "urgent"],
                              purpose="home", terminal_model="GRG-H68N"))
    assert event.customer_age == 67 and event.purpose == "home"
    assert event.teller_flags == {"customer_on_phone", "urgent"}
    assert event.extra == {"terminal_model": "GRG-H68N"}


@pytest.mark.parametrize("ts", ["2024-05-06T09:31:07Z", "2024-05-06T09:31:07.123+08:00", "2024-05-06 09:31:07-05:30",
                                "2024-05-06T09:31:07.123456789+00:00"])
def test_rfc3339_times_accepted(ts):
    assert parse_event(with_(ts=ts)).ts.tzinfo is not None


@pytest.mark.parametrize("changes, field", [
    (dict(event_id=...), "event_id"),
    (dict(event_id=""), "event_id"),
    (dict(event_id="x" * 65), "event_id"),
    (dict(event_id=42), "event_id"),
    (dict(ts=...), "ts"),
    (dict(ts="2024-05-06T09:31:07"), "ts"),  # no offset: ambiguous on a Pi without a clock
    (dict(ts="yesterday"), "ts"),
    (dict(ts="2024-13-06T09:31:07+08:00"), "ts"),
    (dict(counter=0), "counter"),
    (dict(counter=65), "counter"),
    (dict(counter="3"), "counter"),
    (dict(counter=True), "counter"),
    (dict(kind="deposit"), "kind"),
    (dict(account="12345"), "account"),
    (dict(account="6222 0202 0011"), "account"),
    (dict(account=6222020200112233445), "account"),
    (dict(account="1" * 35), "account"),
    (dict(amount=0), "amount"),
    (dict(amount=-5), "amount"),
    (dict(amount="50000"), "amount"),
    (dict(amount=...), "amount"),
    (dict(customer_age=-1), "customer_age"),
    (dict(customer_age=67.5), "customer_age"),
    (dict(account_age_days="new"), "account_age_days"),
    (dict(balance_before=-1), "balance_before"),
    (dict(inbound_24h="lots"), "inbound_24h"),
    (dict(inbound_count_24h=-3), "inbound_count_24h"),
    (dict(teller_flags="urgent"), "teller_flags"),
    (dict(teller_flags=["urgent", "drunk"]), "teller_flags"),
    (dict(purpose="crypto"), "purpose"),
    (dict(kind="transfer_out", payee_new="yes"), "payee_new"),
    (dict(kind="transfer_out", payee_new=1), "payee_new"),
    (dict(kind="transfer_out", payee_account_age_days=-1), "payee_account_age_days"),
    (dict(kind="transfer_out", payee_account_age_days=True), "payee_account_age_days"),
    (dict(kind="transfer_out", payee_account_age_days=30.5), "payee_account_age_days"),
    # a cash withdrawal has no payee: the terminal mixed up two transactions
    (dict(payee_new=True), "payee_new"),
    (dict(payee_account_age_days=12), "payee_account_age_days"),
])
def test_wrong_field_is_named(changes, field):
    with pytest.raises(SchemaError) as info:
        parse_event(with_(**changes))
    assert info.value.field == field
    assert info.value.detail


def test_non_finite_amount_refused():
    with pytest.raises(SchemaError) as info:
        parse_event(with_(amount=float("inf")))
    assert info.value.field == "amount"


def test_payee_of_a_transfer_is_read():
    event = parse_event(with_(kind="transfer_out", payee_new=True, payee_account_age_days=12))
    assert event.payee_new is True and event.payee_account_age_days == 12
    assert event.extra == {}
    known = parse_event(with_(kind="transfer_out", payee_new=False))
    assert known.payee_new is False and known.payee_account_age_days is None


def test_payee_fields_are_optional_and_null_is_absent():
    event = parse_event(with_(kind="transfer_out", payee_new=None, payee_account_age_days=None))
    assert event.payee_new is None and event.payee_account_age_days is None
    cash = parse_event(with_(payee_new=None))
    assert cash.payee_new is None


# -- event_id: printable text only ---------------------------------------------------------------------
@pytest.mark.parametrize("event_id, shown", [
    ("x\ud800", "U+D800"),  # a lone surrogate: valid JSON escape, not text; the store could not keep it
    ("\udc00x", "U+DC00"),
    ("b17\x00", "U+0000"),
    ("b17\nforged log line", "U+000A"),
    ("b17\x1b[2J", "U+001B"),
    ("b17\x7f", "U+007F"),
    ("b17\x9b", "U+009B"),
    ("b17-\u202e240000", "U+202E"),  # right-to-left override: shown as b17-000042
    ("b17\u202a", "U+202A"), ("b17\u2066", "U+2066"), ("b17\u2069", "U+2069"),
    ("b17\u200e", "U+200E"), ("b17\u200f", "U+200F"), ("b17\u061c", "U+061C"),
    ("b17\u200b", "U+200B"),  # zero-width space: two ids that look the same
    ("b17\ufeff", "U+FEFF"),
])
def test_an_event_id_that_is_not_printable_text_is_refused_naming_the_character(event_id, shown):
    with pytest.raises(SchemaError) as info:
        parse_event(with_(event_id=event_id))
    assert info.value.field == "event_id" and shown in info.value.detail


@pytest.mark.parametrize("event_id", ["b17-c3-000042", "b17 c3 42", "\u67dc\u53f0-3-42", "caf\u00e9-1", "x" * 64])
def test_printable_event_ids_are_taken(event_id):
    assert parse_event(with_(event_id=event_id)).event_id == event_id


def test_unknown_fields_are_kept_as_sent_whatever_characters_they_hold():
    # Only the event_id is shown and keyed on; an unknown field is stored as the payload's own text.
    extra = {"note": "tab\there\u202e", "half": "ok\ud800"}
    assert parse_event(with_(**extra)).extra == extra


# -- the shared vectors: what the gateway answers to one event frame ----------------------------------
VECTORS = json.loads((Path(__file__).resolve().parent.parent / "docs" / "protocol_vectors.json").read_text())


@pytest.mark.parametrize("case", VECTORS["gateway"], ids=lambda c: c["name"])
def test_gateway_answer_vector(case):
    [item] = wire.FrameDecoder().feed(bytes.fromhex(case["wire_hex"]))
    answer = case["answer"]
    assert item.seq == answer["seq"]
    if isinstance(item, wire.FrameError):
        assert answer == {"type": "NAK", "seq": item.seq, "code": item.code}
        return
    try:
        parse_event(item.body)
    except SchemaError as exc:
        assert answer == {"type": "NAK", "seq": item.seq, "code": "schema", "field": exc.field}
    else:
        assert answer == {"type": "ACK", "seq": item.seq}


# -- schema v2: who the customer is, hashed as it is validated -------------------------------------------
KEY = bytes(range(32))
RESIDENT = "11010519491231002X"


def test_v2_identity_fields_are_held_only_as_keyed_hashes():
    from counterguard.core.events import kept_body
    from counterguard.core.identity import identity_hash

    body = with_(kind="transfer_out", customer_id=RESIDENT, customer_phone="13800138000",
                 payee_account="6228480012345678901")
    event = parse_event(body, KEY)
    assert event.customer_id_hash == identity_hash(KEY, "resident_id", RESIDENT)
    assert event.customer_id_type == "resident"  # a mainland counter's default document
    assert event.customer_phone_hash == identity_hash(KEY, "phone", "13800138000")
    assert event.payee_account_hash == identity_hash(KEY, "account", "6228480012345678901")
    assert RESIDENT not in repr(event) and "13800138000" not in repr(event) and not event.extra
    kept = kept_body(body, event)
    assert set(kept) == set(GOOD) | {"customer_id_hash", "customer_phone_hash", "payee_account_hash"}
    assert RESIDENT not in json.dumps(kept) and "6228480012345678901" not in json.dumps(kept)
    assert parse_event(kept) == event  # a kept event (store, export, replay) reads back as the same event
    assert kept_body(GOOD, parse_event(GOOD, KEY)) is GOOD  # a v1 event is kept as it came


def test_v2_hashes_are_per_person_not_per_spelling_and_never_cross_kinds():
    lower = parse_event(with_(customer_id=RESIDENT.lower()), KEY)
    assert lower.customer_id_hash == parse_event(with_(customer_id=RESIDENT), KEY).customer_id_hash
    spaced = parse_event(with_(customer_id="e 1234-5678", customer_id_type="passport"), KEY)
    assert spaced.customer_id_hash == parse_event(with_(customer_id="E12345678", customer_id_type="passport"),
                                                  KEY).customer_id_hash
    # The same characters as a passport and as another document are two different people.
    other = parse_event(with_(customer_id="E12345678", customer_id_type="other"), KEY)
    assert other.customer_id_hash != spaced.customer_id_hash
    # Another alliance key, another hash: a list made under one key never matches under another.
    assert parse_event(with_(customer_id=RESIDENT), bytes(32)).customer_id_hash != lower.customer_id_hash


@pytest.mark.parametrize("changes, field, says", [
    (dict(customer_id="110105194912310021"), "customer_id", "check digit is 1, should be X"),
    (dict(customer_id="110105194913310027"), "customer_id", "date of birth"),
    (dict(customer_id="110105491231002"), "customer_id", "18 characters"),
    (dict(customer_id=110105194912310020), "customer_id", "must be a string"),
    (dict(customer_id="E1", customer_id_type="passport"), "customer_id", "5 to 20 letters and digits"),
    (dict(customer_id="E12345678", customer_id_type="visa"), "customer_id_type", "resident, passport, other"),
    (dict(customer_id_type="passport"), "customer_id_type", "only sent with customer_id"),
    (dict(customer_phone="02988887777"), "customer_phone", "11-digit mainland mobile"),
    (dict(customer_phone="1380013800"), "customer_phone", "11-digit mainland mobile"),
    (dict(payee_account="6228480012345678901"), "payee_account", "only for kind transfer_out"),
    (dict(kind="transfer_out", payee_account="62284800ABC"), "payee_account", "6 to 34 digits"),
    (dict(customer_id_hash="AB" * 32), "customer_id_hash", "64 lowercase hex digits"),
    (dict(customer_id=RESIDENT, customer_id_hash="ab" * 32), "customer_id", "not both"),
])
def test_v2_a_wrong_identity_field_is_named_and_its_value_never_repeated(changes, field, says):
    with pytest.raises(SchemaError) as caught:
        parse_event(with_(**changes), KEY)
    assert caught.value.field == field and says in caught.value.detail
    for value in changes.values():
        if isinstance(value, str) and len(value) >= 9:
            assert value not in str(caught.value), "an identity value was repeated in the NAK"


def test_an_identity_number_is_verified_without_a_key_and_hashed_only_with_one():
    import hashlib
    import hmac

    from counterguard.core.identity import IdentityError, check_identity, identity_hash

    key = b"k" * 32
    good = "11010519491231002X"
    assert identity_hash(key, "resident_id", good) == hmac.new(
        key, check_identity("resident_id", good).encode(), hashlib.sha256).hexdigest()
    with pytest.raises(IdentityError) as e:
        check_identity("resident_id", good[:-1] + "1")  # a wrong check digit
    assert good[:10] not in str(e.value)
    body = {"event_id": "k-1", "ts": "2026-12-04T10:00:00+08:00", "counter": 1, "kind": "cash_withdrawal",
            "account": "6222020200000000101", "amount": 100, "customer_id": good}
    assert parse_event(body).customer_id_hash is None  # verified, nothing to hash with
    assert parse_event(body, key).customer_id_hash == identity_hash(key, "resident_id", good)
    with pytest.raises(SchemaError, match="customer_id"):
        parse_event({**body, "customer_id": good[:-1] + "1"})
