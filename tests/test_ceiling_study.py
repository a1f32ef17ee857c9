"""What a world's own labels can teach (models/ceiling_study.py): the person's earlier card visits
read from earlier events only, per-case recall, and the study itself on small worlds."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from counterguard.core.events import parse_event
from counterguard.core.identity import resident_check_digit
from counterguard.models.ceiling_study import (VISIT_NAMES, boosted_available, cases_at_budgets, study, table,
                                               visit_rows)

KEY = b"ceiling-study-test-key-000000000"
T0 = datetime(2024, 3, 4, 10, 0, tzinfo=timezone(timedelta(hours=8)))


def resident(n: int) -> str:
    first17 = f"420102199001{n:02d}{n:03d}"[:17]
    return first17 + resident_check_digit(first17)


def sim(n: int, minutes: float, person: int, held: int, asked: int = 1, phone: str | None = None):
    body = {"event_id": f"c{n}", "ts": (T0 + timedelta(minutes=minutes)).isoformat(), "counter": 1,
            "kind": "sim_activation", "customer_id": resident(person), "customer_age": 30, "for_self": True,
            "accompanied": False, "sims_held": held, "sims_requested": asked, "number_type": "prepaid",
            "purpose": "personal"}
    if phone:
        body["customer_phone"] = phone
    return parse_event(body, KEY)


def col(rows, name):
    return rows[:, VISIT_NAMES.index(name)]


def test_a_persons_earlier_visits_count_only_what_came_before():
    day = 24 * 60
    events = [
        sim(0, 0, person=1, held=1, asked=2, phone="13800000001"),       # first visit: 1 held, asks for 2
        sim(1, 10, person=2, held=0, phone="13800000001"),               # another person, the same phone
        sim(2, 3 * day, person=1, held=6, asked=1),                      # 3 days on: 6 held, 3 more than here
        sim(3, 3 * day + 5, person=3, held=0, phone="13800000001"),      # a third person on that phone
        sim(4, 200 * day, person=1, held=7),                             # long after: earlier visits forgotten
        sim(5, 200 * day + 1, person=4, held=0, phone="13800000001"),    # the phone's others forgotten too
    ]
    rows = visit_rows(events)
    assert rows.shape == (6, len(VISIT_NAMES))
    assert list(col(rows, "seen_before")) == [0, 0, 1, 0, 0, 0]
    assert col(rows, "visits_90d")[2] == pytest.approx(math.log1p(1))
    assert col(rows, "days_since_last")[2] == pytest.approx(math.log1p(3.0), rel=1e-4)
    assert col(rows, "cards_gained_elsewhere")[2] == pytest.approx(math.log1p(6 - (1 + 2)))
    assert col(rows, "cards_asked_90d")[2] == pytest.approx(math.log1p(2))
    # "several accounts bound to one number": the others who gave this phone in the last 30 days
    assert list(col(rows, "others_on_this_phone_30d")) == [0, 1, 0, 2, 0, 0]
    assert list(col(rows, "phone_given")) == [1, 1, 0, 1, 0, 1]
    assert list(col(rows, "other_persons_30min")) == pytest.approx([math.log1p(n) for n in (0, 1, 0, 1, 0, 1)])
    # No look-ahead: a row is the same whether or not later events follow.
    for n in range(1, len(events)):
        assert np.array_equal(visit_rows(events[:n]), rows[:n])


def test_a_case_is_caught_when_any_of_its_events_is_alerted_within_the_honest_persons_budget():
    persons = np.asarray(["seller", "seller", "recruit", "recruit"] + [f"h{i}" for i in range(200)])
    labels = np.asarray([1, 1, 1, 1] + [0] * 200, np.int8)
    scores = np.asarray([0.1, 0.97, 0.2, 0.3] + [i / 400 for i in range(200)])  # honest up to 0.4975
    out = cases_at_budgets(scores, labels, persons)
    assert (out["cases"], out["honest_persons"]) == (2, 200)
    # At 1 % (2 honest persons) the cut is the third-highest honest score: only the seller's second
    # visit is over it; the recruit's best (0.3) is not.
    assert out["0.01"] == 0.5
    scores[3] = 0.99
    assert cases_at_budgets(scores, labels, persons)["0.01"] == 1.0


def test_the_study_judges_each_world_on_its_own_later_weeks_with_both_learners():
    assert boosted_available(), "setup.sh installs the study extra (LightGBM)"
    result = study(money_seeds=(21,), card_seeds=(11,), money_events=4000, card_events=4000, epochs=2, boosted=True)
    rows = result["rows"]
    assert len(rows) == 3 * 2 + 2 * 2 * 2  # money: 3 inputs; cards: 2 kinds x 2 inputs; two learners each
    assert {r["learner"] for r in rows} == {"network", "gradient-boosted"}
    for r in rows:
        assert r["trained_fraud"] > 0 and r["judged_fraud"] > 0
        assert r["at"]["0.005"] <= r["at"]["0.01"] <= r["at"]["0.02"] <= 1.0
        if r["world"].startswith("independent sim") or r["world"].startswith("independent account"):
            assert 0 < r["cases"]["cases"] <= r["judged_fraud"]
    # Every set of inputs is judged on the same events: the same fraud behind each figure.
    assert len({r["judged_fraud"] for r in rows if r["world"] == "independent branch"}) == 1
    text = table(result)
    assert text.count("| gradient-boosted |") == 7 and "left out" not in text


def test_the_table_says_when_the_gradient_boosted_reference_is_left_out():
    row = {"world": "independent branch", "inputs": "v1 only", "learner": "network", "trained_events": 100,
           "trained_fraud": 3, "judged_fraud": 2, "at": {"0.005": 0.5, "0.01": 0.5, "0.02": 1.0}}
    text = table({"boosted": False, "rows": [row]})
    assert "| independent branch | v1 only | network | 100 (3) | 2 | 50.0 % | 50.0 % | 100.0 % |  |" in text
    assert "LightGBM is not installed" in text
