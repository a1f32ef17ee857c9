"""Features, local history and the three-level decision."""

import math

import pytest

from counterguard.core.decision import (
    AMBER,
    GREEN,
    RED,
    REASON_TEXT,
    WARNED_RED_AMOUNT,
    ListHits,
    Thresholds,
    decide,
    signs,
)
from counterguard.core.events import parse_event
from counterguard.core.features import (
    DAY,
    FEATURE_NAMES,
    HOUR,
    NO_HISTORY,
    History,
    event_features,
    summarise_history,
)

BASE = {"event_id": "e1", "ts": "2024-05-06T09:31:07+08:00", "counter": 1, "kind": "cash_withdrawal",
        "account": "6222020200112233445", "amount": 2000}


def ev(**changes):
    return parse_event({**BASE, **changes})


def feature(event, name, history=NO_HISTORY):
    return event_features(event, history)[FEATURE_NAMES.index(name)]


def test_one_value_per_feature_name_and_all_finite():
    row = event_features(ev(customer_age=67, balance_before=0, inbound_24h=0, teller_flags=["urgent"]))
    assert len(row) == len(FEATURE_NAMES)
    assert all(math.isfinite(x) for x in row)


@pytest.mark.parametrize("changes, name, expected", [
    ({"amount": 50000}, "large_cash", 1.0),
    ({"amount": 49999}, "large_cash", 0.0),
    ({"amount": 45000}, "just_under_line", 1.0),
    ({"amount": 39000}, "just_under_line", 0.0),
    ({"kind": "transfer_out"}, "is_transfer", 1.0),
    ({"customer_age": 67}, "elderly", 1.0),
    ({"customer_age": 59}, "elderly", 0.0),
    ({}, "age_known", 0.0),
    ({"amount": 9000, "balance_before": 10000}, "share_of_balance", 0.9),
    ({"amount": 9000, "balance_before": 1000}, "share_of_balance", 2.0),  # clipped
    ({"amount": 4800, "inbound_24h": 5000}, "cash_out_of_inbound", 0.96),
    ({"teller_flags": ["customer_on_phone"]}, "customer_on_phone", 1.0),
    ({"purpose": "investment"}, "risky_purpose", 1.0),
    ({"purpose": "daily"}, "purpose_missing", 0.0),
    ({}, "purpose_missing", 1.0),
    ({"kind": "transfer_out", "payee_new": True}, "payee_new", 1.0),
    ({"kind": "transfer_out", "payee_new": True}, "payee_known", 1.0),
    ({"kind": "transfer_out", "payee_new": False}, "payee_new", 0.0),
    ({"kind": "transfer_out", "payee_new": False}, "payee_known", 1.0),
    ({"kind": "transfer_out"}, "payee_known", 0.0),
    ({}, "payee_known", 0.0),
    ({"kind": "transfer_out", "payee_account_age_days": 20}, "log_payee_account_age_days", math.log1p(20)),
    ({"kind": "transfer_out", "payee_account_age_days": 0}, "payee_account_age_known", 1.0),
    ({"kind": "transfer_out"}, "payee_account_age_known", 0.0),
])
def test_feature_values(changes, name, expected):
    assert feature(ev(**changes), name) == pytest.approx(expected)


def test_history_counts_only_the_last_day_before_now():
    now = 1_000_000.0
    prior = [
        (now - 10, 100.0, 1),          # 10 s ago, same counter
        (now - 2 * HOUR, 200.0, 2),    # other counter
        (now - DAY - 1, 999.0, 3),     # too old
        (now + 5, 999.0, 4),           # after now (clock skew): ignored
    ]
    h = summarise_history(prior, now, counter=1)
    assert h == History(count_1h=1, count_24h=2, amount_24h=300.0, other_counters_24h=1)


def test_history_reaches_the_features():
    h = History(count_1h=2, count_24h=3, amount_24h=90000.0, other_counters_24h=2)
    assert feature(ev(), "log_history_count_24h", h) == pytest.approx(math.log1p(3))
    assert feature(ev(), "history_other_counters_24h", h) == 2.0


T = Thresholds(amber=0.5, red=0.85)


@pytest.mark.parametrize("score, watchlisted, level", [
    (0.1, False, GREEN), (0.5, False, AMBER), (0.84, False, AMBER), (0.85, False, RED), (0.01, True, RED),
])
def test_levels(score, watchlisted, level):
    assert decide(ev(amount=50000), score, NO_HISTORY, watchlisted, T).level == level


def test_watchlist_hit_is_red_whatever_the_model_says_and_says_why():
    v = decide(ev(), 0.0, NO_HISTORY, True, T)
    assert v.level == RED and v.reasons[0] == "watchlist"
    assert "stop-payment" in v.text


def test_intercept_reasons_in_reading_order():
    event = ev(amount=50000, customer_age=67, balance_before=52000, teller_flags=["customer_on_phone", "urgent"])
    v = decide(event, 0.97, NO_HISTORY, False, T)
    assert v.reasons == ("large_cash", "elderly_customer", "large_share_of_balance", "customer_on_phone", "urgent")
    assert v.text.startswith("Hold:") and v.text.endswith("call supervisor")
    assert v.ack_body()["reasons"] == list(v.reasons)


def test_green_has_no_reasons_and_amber_without_signs_says_model_score():
    assert decide(ev(), 0.1, NO_HISTORY, False, T).reasons == ()
    assert decide(ev(), 0.6, NO_HISTORY, False, T).reasons == ("model_score",)


def test_mule_signs():
    event = ev(amount=48000, account_age_days=20, inbound_24h=49000, inbound_count_24h=14)
    found = signs(event, History(count_1h=1, count_24h=2, amount_24h=1000, other_counters_24h=1), False)
    assert found == ["just_under_line", "inbound_cash_out", "new_account", "repeat_today", "several_counters"]


def test_a_coached_transfer_still_shows_the_teller_the_payee_signs():
    event = ev(kind="transfer_out", amount=90000, customer_age=66, balance_before=98000, purpose="home",
               payee_new=True, payee_account_age_days=21)
    v = decide(event, 0.7, NO_HISTORY, False, T)
    assert v.reasons[:3] == ("large_cash", "new_payee_account", "new_payee")
    assert "payee account opened recently" in v.text
    known = ev(kind="transfer_out", amount=90000, payee_new=False, payee_account_age_days=3650)
    assert not {"new_payee", "new_payee_account"} & set(signs(known, NO_HISTORY, False))
    small = ev(kind="transfer_out", amount=3000, payee_new=True, payee_account_age_days=21)
    assert not {"new_payee", "new_payee_account"} & set(signs(small, NO_HISTORY, False))


def test_every_reason_has_text():
    assert all(REASON_TEXT.values())


@pytest.mark.parametrize("amber, red", [(0.9, 0.5), (0.0, 0.5), (0.5, 1.1)])
def test_bad_thresholds_refused(amber, red):
    with pytest.raises(ValueError):
        Thresholds(amber, red)


# -- the centre's lists beside the model --------------------------------------------------------------
@pytest.mark.parametrize("hits, reason", [
    (ListHits(watchlist=True), "watchlist"),
    (ListHits(payee_watchlist=True), "payee_watchlist"),
    (ListHits(restricted_person=True), "restricted_person"),
])
def test_a_stop_payment_payee_or_a_restricted_person_is_red_whatever_the_model_says(hits, reason):
    v = decide(ev(amount=100), 0.0, NO_HISTORY, hits, T)
    assert v.level == "red" and v.reasons[0] == reason and hits.hold


@pytest.mark.parametrize("amount, score, level", [
    (2000, 0.0, "amber"),  # on the police's early-warning list: the caring questions at least
    (WARNED_RED_AMOUNT, 0.0, "red"),  # and a large amount: hold
    (2000, T.amber, "red"),  # or the model sees risk too
])
def test_a_warned_person_is_at_least_amber_and_red_when_the_amount_is_large_or_the_model_agrees(amount, score, level):
    v = decide(ev(amount=amount), score, NO_HISTORY, ListHits(warned_person=True), T)
    assert v.level == level and v.reasons[0] == "warned_person" and not ListHits(warned_person=True).hold
