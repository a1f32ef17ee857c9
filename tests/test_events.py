"""Event schema v1: every wrong field is named in the error the terminal gets back."""

import pytest

from gateway.events import Event, SchemaError, parse_event

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
