"""What the counter knows beyond the transaction, as model inputs: the lists of persons and the
customer's answers (features version 3), and training's two-stage thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from counterguard.core.dialogue import ANSWERS, SIGNALS
from counterguard.core.events import parse_event
from counterguard.core.features import (
    FEATURE_NAMES,
    N_FEATURES,
    NO_HISTORY,
    V2_FEATURES,
    ListHits,
    event_features,
    pad_row,
    with_answers,
)
from counterguard.models.train import AMBER_LEGIT_SHARE, RED_LEGIT_SHARE, choose_two_stage_thresholds, two_stage
from harness import event

ANSWER_COLUMNS = [FEATURE_NAMES.index("answered")] + [FEATURE_NAMES.index(f"{s}_{a}") for s in SIGNALS for a in ANSWERS]


def row(**extra):
    return event_features(parse_event(event(1, 30000, customer_age=70)), NO_HISTORY, **extra)


def test_unknown_is_its_own_value_never_a_no():
    absent = row()
    assert [absent[i] for i in ANSWER_COLUMNS] == [0.0] * len(ANSWER_COLUMNS)
    said_no = row(answers={"told_to_by_caller": "no"})
    assert said_no[FEATURE_NAMES.index("answered")] == 1.0
    assert said_no[FEATURE_NAMES.index("told_to_by_caller_no")] == 1.0 and said_no != absent
    declined = row(answers={"told_to_by_caller": "declined"})
    assert declined[FEATURE_NAMES.index("told_to_by_caller_declined")] == 1.0 and declined != said_no
    # A signal not asked stays all zeros beside one that was.
    assert [said_no[FEATURE_NAMES.index(f"promised_returns_{a}")] for a in ANSWERS] == [0.0, 0.0, 0.0]
    # Not on the list is only known when the customer was looked up.
    unchecked, checked = row(), row(hits=ListHits(persons_checked=True))
    assert unchecked[FEATURE_NAMES.index("persons_checked")] == 0.0 and checked[FEATURE_NAMES.index("persons_checked")] == 1.0
    assert row(hits=ListHits(warned_person=True))[FEATURE_NAMES.index("warned_person")] == 0.0
    assert row(hits=ListHits(warned_person=True, persons_checked=True))[FEATURE_NAMES.index("warned_person")] == 1.0


def test_the_answers_fill_in_the_first_row_as_the_gateway_re_scores_it():
    answers = {"told_to_by_caller": "yes", "knows_payee_in_person": "no", "buying_for_someone": "declined"}
    hits = ListHits(persons_checked=True, warned_person=True)
    assert with_answers(row(hits=hits), answers) == row(hits=hits, answers=answers)
    assert len(row()) == N_FEATURES
    # A version-2 row from an older gateway reads as "nothing known" of the new signals.
    assert pad_row(row()[:V2_FEATURES]) == row()


def test_two_stage_thresholds_hold_honest_customers_to_the_budget_after_the_answers():
    rng = np.random.default_rng(3)
    y = (rng.random(40_000) < 0.02).astype(np.int8)
    first = np.clip(rng.normal(0.2 + 0.5 * y, 0.2), 0, 1).round(2)
    final = np.clip(first + rng.normal(0.3 * y - 0.2 * (1 - y), 0.1), 0, 1).round(2)
    scripted = rng.random(40_000) < 0.03  # said yes to a scam's script: never cleared by the re-score
    amber, red = choose_two_stage_thresholds(first, final, y, scripted)
    honest = y == 0
    # Asked at amber, the re-score decides, unless the customer said yes to the script; a first red stands.
    alerted = ((first >= amber) & ((final >= amber) | scripted)) | (first >= red)
    held = (first >= red) | ((first >= amber) & (final >= red))
    assert alerted[honest].mean() <= AMBER_LEGIT_SHARE and held[honest].mean() <= RED_LEGIT_SHARE
    assert np.array_equal(alerted, two_stage(first, final, red, scripted) >= amber)
    # More customers are asked than end alerted: the answers clear most of them.
    assert (first[honest] >= amber).mean() > alerted[honest].mean()


def test_each_signal_the_counter_sends_catches_more_fraud_at_the_same_alert_budget():
    """The signals study on a small shifted branch: the lists and the answers each add to v1 fields
    alone at 1 % of honest customers alerted, together most, and the model stays above the rule book."""
    from counterguard.gateway.scoring.model import FraudModel, default_model_path
    from counterguard.models.signals_study import study, table
    from counterguard.models.simulate import SHIFTED, SHIFTED_SEEDS, simulate

    model = FraudModel.load(default_model_path())
    result = study(model, {"shifted": [("shifted", simulate(SHIFTED_SEEDS[0], 12_000, config=SHIFTED))]})
    rows = result["shifted"]
    at = {name: r["recall_at_legit_share"]["0.01"] for name, r in rows.items()}
    assert rows["model, v1 only"]["fraud_events"] > 100
    assert at["model, + lists"] > at["model, v1 only"] and at["model, + answers"] > at["model, v1 only"]
    assert at["model, + both"] >= max(at["model, + lists"], at["model, + answers"])
    assert at["model, v1 only"] > at["rule book, v1 only"] and at["model, + both"] > at["rule book, + both"]
    # The first verdict is the "+ lists" row: answers come only after it.
    assert rows["model, + both: first verdict"]["recall_at_legit_share"] == rows["model, + lists"]["recall_at_legit_share"]
    text = table(result)
    assert "| model, + both |" in text and "coached at 1 %" in text


def test_the_centre_learns_from_older_gateways_rows_as_nothing_known_of_the_new_signals():
    from counterguard.centre.labels import with_features
    from counterguard.core.features import FEATURES_VERSION

    v2 = row()[:V2_FEATURES]
    kept = with_features([{"event_id": "old", "features": v2, "features_version": 2},
                          {"event_id": "new", "features": row(answers={"told_to_by_caller": "no"}),
                           "features_version": FEATURES_VERSION},
                          {"event_id": "short", "features": v2[:-1], "features_version": 2},
                          {"event_id": "none", "features": None, "features_version": FEATURES_VERSION}])
    assert [e["event_id"] for e in kept] == ["old", "new"]
    assert kept[0]["features"] == row() and kept[0]["features_version"] == FEATURES_VERSION
