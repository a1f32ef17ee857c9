"""The "two cards" counters as data: the card simulator's events, the card inputs of core/features.py,
and the rule book judged on them (models/simulate_cards.py, models/cards_study.py)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from counterguard.core.events import CARD_KINDS, parse_event
from counterguard.core.features import CARD_FEATURE_NAMES, N_CARD_FEATURES, NO_HISTORY, History, ListHits, card_features
from counterguard.models.cards_study import KEY, replay, rulebook_row
from counterguard.models.simulate_cards import FRAUD, simulate_cards


@pytest.fixture(scope="module", params=CARD_KINDS)
def world(request):
    return request.param, simulate_cards(7, 12_000, request.param)


def test_every_simulated_card_event_is_one_a_counter_could_send_in_time_order(world):
    kind, items = world
    events = [parse_event(item["event"], KEY) for item in items]  # refused events would raise here
    assert all(e.kind == kind for e in events)
    assert [e.epoch for e in events] == sorted(e.epoch for e in events)
    assert len({e.event_id for e in events}) == len(events)
    assert simulate_cards(7, 300, kind) == simulate_cards(7, 300, kind)  # the same seed, the same world
    assert simulate_cards(8, 300, kind) != simulate_cards(7, 300, kind)


def test_card_worlds_hold_dealers_and_their_honest_look_alikes(world):
    kind, items = world
    counts = Counter(item["typology"] for item in items)
    fraud = sum(item["label"] for item in items) / len(items)
    assert 0.02 < fraud < 0.06 and all(counts[name] > 10 for name in FRAUD)
    assert counts["family"] > 100 and counts["business"] > 100
    # Dealers take their recruits round several counters: the same person again the same day.
    people = Counter(item["event"]["customer_id"] for item in items if item["label"])
    assert sum(1 for n in people.values() if n > 1) > 20
    # No one box gives them away: not for oneself is common among honest families too.
    not_self = np.asarray([item["event"]["for_self"] is False for item in items])
    labels = np.asarray([item["label"] for item in items])
    assert not_self[labels == 0].mean() > 0.05 and not_self[labels == 1].mean() < 0.9


def test_the_card_inputs_say_who_asks_for_whom_with_whom_and_how_often_today():
    body = {"event_id": "c-1", "ts": "2026-12-04T10:00:00+08:00", "counter": 2, "kind": "sim_activation",
            "customer_id": simulate_cards(3, 1, "sim_activation")[0]["event"]["customer_id"], "customer_age": 19,
            "sims_held": 4, "sims_requested": 3, "for_self": False, "accompanied": True, "purpose": "personal",
            "number_type": "prepaid"}
    row = dict(zip(CARD_FEATURE_NAMES, card_features(parse_event(body, KEY), History(count_1h=1, count_24h=2,
                                                                                       other_counters_24h=1))))
    assert len(row) == N_CARD_FEATURES
    assert (row["is_sim"], row["young"], row["not_for_self"], row["accompanied"], row["purpose_personal"],
            row["number_prepaid"]) == (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert row["log_cards_today"] > 0 and row["other_counters_today"] == 1.0 and row["persons_checked"] == 0.0
    unknown = dict(zip(CARD_FEATURE_NAMES, card_features(parse_event({**body, "for_self": None}, KEY), NO_HISTORY,
                                                         ListHits(persons_checked=True, warned_person=True))))
    assert (unknown["not_for_self"], unknown["for_self_known"]) == (0.0, 0.0)  # not said is not "for self"
    assert (unknown["persons_checked"], unknown["warned_person"]) == (1.0, 1.0)


def test_the_rule_book_is_judged_at_its_own_levels_and_at_alert_budgets(world):
    kind, items = world
    x, levels, ranks, labels, _, _ = replay(items)
    assert x.shape == (len(items), N_CARD_FEATURES)
    row = rulebook_row(levels, ranks, labels)
    assert row["fraud_events"] == sum(item["label"] for item in items)
    assert 0 < row["fraud_alerted"] <= 1 and 0 < row["honest_alerted"] < 0.5
    # A budget can only catch as much as the rule book's own levels allow, ranked by level then signs.
    assert row["at"]["0.005"] <= row["at"]["0.01"] <= row["at"]["0.02"] <= row["fraud_alerted"]


def test_the_cards_study_judges_the_rule_book_and_a_card_model_per_kind_on_both_worlds():
    from counterguard.models.cards_study import study, table

    result = study(6000, epochs=4)
    assert set(result) == set(CARD_KINDS)
    for kind, by_set in result.items():
        assert set(by_set) == {"simulated, last 20 %", "independent", "independent, last 20 %"}
        own = by_set["simulated, last 20 %"]
        assert own["rule book"]["fraud_events"] == own["card model"]["fraud_events"] > 20
        # On the world it learnt from, a model of the card inputs ranks dealers far above the rule book.
        assert own["card model"]["at"]["0.01"] > own["rule book"]["at"]["0.01"]
        # The independent outlets' later weeks, judged for the model trained on their own earlier ones too.
        later = by_set["independent, last 20 %"]
        assert later["card model, the outlets' own labels"]["fraud_events"] == later["rule book"]["fraud_events"] > 5
    text = table(result)
    assert text.count("| card model |") == 6 and text.count("| card model, the outlets' own labels |") == 2


def test_each_randomized_outlet_draws_its_own_habits_and_its_events_stay_valid():
    from counterguard.models.simulate_cards import CardWorld, random_card_world

    worlds = [random_card_world(s) for s in range(20)]
    assert len({(w.coached, w.prior_cards, w.visits) for w in worlds}) == 20
    busy = CardWorld(prior_cards=8)
    plain, rounds = (simulate_cards(5, 6000, "sim_activation", w) for w in (CardWorld(), busy))
    for item in rounds:
        parse_event(item["event"], KEY)

    def held(items):  # cards already held by recruits when they come in
        return np.mean([i["event"]["sims_held"] for i in items if i["typology"].startswith("recruited")])

    assert held(rounds) > held(plain) + 2  # a dealer's round leaves cards opened elsewhere
