"""``counterguard centre train``: a challenger trained end to end on a small fleet's uploaded,
labelled events (real TensorFlow, the real int8 conversion, the gateway's own model loader), judged
on time-ordered validation next to the model in force, with thresholds that keep the stated budget."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from counterguard.centre.schema import Record
from counterguard.centre.store import open_store
from counterguard.centre.labels import CaseLabel
from counterguard.core.features import FEATURES_VERSION, event_features
from counterguard.core.manifest import account_hash
from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.models.simulate import simulate
from counterguard.models.train import replay_items

KEY = bytes.fromhex("22" * 32)
GATEWAYS = ("gw-t-1", "gw-t-2")


def fleet(db, n: int = 6000, seed: int = 5, label_fraud: bool = True) -> tuple[list[dict], float]:
    """``n`` simulated events uploaded by two gateways, scored by the bundled model as the model in
    force; every fraud confirmed by a police case file. Returns (events, a 'now' 60 days after the last)."""
    model = FraudModel.load(default_model_path())
    rows = []
    for event, history, item in replay_items(simulate(seed, n)):
        features = event_features(event, history)
        score = model.score(features)
        rows.append({"event_id": event.event_id, "counter": event.counter, "kind": event.kind,
                     "amount": event.amount, "ts": event.ts.isoformat(), "account_hash": account_hash(KEY, event.account),
                     "level": "red" if score >= model.thresholds.red else "amber" if score >= model.thresholds.amber
                     else "green", "score": round(score, 4), "reasons": [], "model_version": model.version,
                     "watchlist_version": 1, "features": [round(v, 5) for v in features], "shadow_score": None,
                     "shadow_version": None, "decided_at": event.ts.isoformat(), "label": item["label"]})
    with open_store(db) as store:
        for i, gw in enumerate(GATEWAYS):
            mine = rows[i::2]
            body = {"type": "events", "gateway_id": gw, "seq": 1, "features_version": FEATURES_VERSION,
                    "events": [{k: v for k, v in r.items() if k != "label"} for r in mine]}
            store.ingest([Record("events", "610100", "b0231", gw, body)])
            if label_fraud:
                store.add_labels([CaseLabel(n, "fraud", "police", f"XA-{n}", event_id=r["event_id"], gateway_id=gw)
                                  for n, r in enumerate(mine) if r["label"] == 1], file="police.jsonl", imported_at=0)
    last = max(datetime.fromisoformat(r["ts"]) for r in rows)
    return rows, (last + timedelta(days=60)).timestamp()


def train(db, out, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "counterguard", "centre", "train", "--store", str(db), "--out",
                           str(out), "--epochs", "3", *map(str, extra)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("tensorflow", reason="training needs tensorflow-cpu (setup.sh installs the train extra)")
    tmp = tmp_path_factory.mktemp("train")
    rows, _ = fleet(tmp / "centre.db")
    done = train(tmp / "centre.db", tmp / "model", "--json", "--model-version", "fleet-test-1")
    assert done.returncode == 0, done.stderr[-3000:]
    return rows, json.loads(done.stdout), tmp / "model"


def test_the_card_names_its_data_and_validation_is_later_than_all_training(trained):
    rows, card, _ = trained
    fraud = sum(r["label"] for r in rows)
    d, v = card["data"], card["validation"]
    assert (d["events"], d["fraud"], d["gateways"]) == (len(rows), fraud, 2)
    # Police confirmed every fraud; everything else is old enough to count as honest, and says so.
    assert d["label_sources"] == {"police": fraud, "unlabelled": len(rows) - fraud}
    assert d["unlabelled_treated_as_honest_after_days"] == 30
    # by default the simulator stands beside the fleet, and the card says how much of it and how heavy
    sim = d["simulated"]
    assert sim["weight"] == 0.3 and 15_000 < sim["events"] <= 20_000 and sim["fraud"] > 0
    times = sorted(datetime.fromisoformat(r["ts"]).timestamp() for r in rows)
    split = datetime.fromisoformat(d["split_at"].replace("Z", "+00:00")).timestamp()
    later = [t for t in times if t >= split]
    assert v["events"] == len(later) and 0 < v["events"] < len(rows) * 0.3  # the latest part of the span only
    assert v["fraud"] == sum(r["label"] for r in rows if datetime.fromisoformat(r["ts"]).timestamp() >= split)
    for side in ("challenger", "model_in_force"):
        for figure in v[side]["at_budget"].values():
            assert figure["fraud_labels"] == v["fraud"]  # how many labels stand behind each figure
            lo, hi = figure["interval_95"]
            assert lo <= figure["recall"] <= hi
    assert v["model_in_force"]["versions"] == {FraudModel.load(default_model_path()).version: v["events"]}


def test_the_gateway_loads_the_challenger_and_its_thresholds_keep_the_budget(trained):
    rows, card, out = trained
    model = FraudModel.load(out / "counterguard-fleet.tflite")
    assert model.version == "fleet-test-1"
    assert (model.thresholds.amber, model.thresholds.red) == (card["thresholds"]["amber"], card["thresholds"]["red"])
    split = datetime.fromisoformat(card["data"]["split_at"].replace("Z", "+00:00")).timestamp()
    honest_train = [r for r in rows if r["label"] == 0 and datetime.fromisoformat(r["ts"]).timestamp() < split]
    scores = np.asarray([model.score(r["features"]) for r in honest_train])
    assert (scores >= model.thresholds.amber).mean() <= 0.01 + 1e-9   # the stated 1 % budget
    assert (scores >= model.thresholds.red).mean() <= 0.002 + 1e-9    # red: a fifth of it
    ours = card["validation"]["challenger"]
    assert ours["honest_alerted_share"] is not None and ours["reds"] >= 0
    # the paired view counts the very frauds behind each recall: both + one side's own = what it caught
    v = card["validation"]
    for b in ("0.005", "0.01", "0.02"):
        same = v["paired"][b]
        assert same["both"] + same["challenger_only"] == round(ours["at_budget"][b]["recall"] * v["fraud"])
        assert same["both"] + same["in_force_only"] == round(v["model_in_force"]["at_budget"][b]["recall"] * v["fraud"])
        assert same["verdict"] in ("better", "worse", "no clear difference")


def test_without_enough_fraud_labels_training_says_what_to_do(tmp_path):
    pytest.importorskip("tensorflow", reason="training needs tensorflow-cpu")
    fleet(tmp_path / "centre.db", n=2000, label_fraud=False)
    done = train(tmp_path / "centre.db", tmp_path / "model")
    assert done.returncode == 2
    assert "too few fraud labels: 0 in the training part" in done.stderr
    assert "counterguard centre label" in done.stderr and "--sim-events" in done.stderr
    assert not (tmp_path / "model").exists()


def test_the_latest_days_wait_for_complete_labels_before_anything_is_judged_on_them(tmp_path):
    """Among events younger than the honest-after age only alerts and reported frauds carry labels, so
    judging on them would make any model look blind next to another: they are left out, and counted."""
    pytest.importorskip("tensorflow", reason="training needs tensorflow-cpu")
    from counterguard.centre import learning
    from counterguard.centre.store import open_store

    rows, _ = fleet(tmp_path / "centre.db")
    times = [datetime.fromisoformat(r["ts"]).timestamp() for r in rows]
    now = max(times) + 10 * 86400.0
    mature = now - 14 * 86400.0
    young_frauds = sum(1 for r, t in zip(rows, times) if t > mature and r["label"] == 1)
    assert young_frauds > 0
    with open_store(tmp_path / "centre.db") as store:
        card = learning.train_from_store(store, tmp_path / "model", now=now, honest_after_days=14, epochs=2,
                                         log=lambda *_: None)
    assert card["data"]["left_out"]["too_recent_to_judge"] == young_frauds
    split = datetime.fromisoformat(card["data"]["split_at"].replace("Z", "+00:00")).timestamp()
    judged = [r for r, t in zip(rows, times) if split <= t <= mature]
    assert card["validation"]["events"] == len(judged)
    assert card["validation"]["fraud"] == sum(r["label"] for r in judged) > 0


def test_an_alert_whose_customer_answered_is_learnt_from_again_with_the_answers(tmp_path):
    pytest.importorskip("tensorflow", reason="training needs tensorflow-cpu")
    from centre_support import SimGateway
    from counterguard.centre import learning, schema
    from counterguard.centre.store import open_store
    from counterguard.core import messages

    rows, now = fleet(tmp_path / "centre.db")
    early = [i for i, r in enumerate(rows[: len(rows) // 2]) if r["label"] == 1][:5]
    records = []
    sims = {gw: SimGateway(None, None, gw, region="610100", branch="b0231") for gw in GATEWAYS}  # one seq each
    for i in early:
        gw = GATEWAYS[i % 2]
        sim = sims[gw]
        root = f"{messages.PREFIX}/610100/b0231/{gw}"
        _, alert_id, payload = sim.alert_payload(level="amber")
        alert = {**json.loads(payload), "event_id": rows[i]["event_id"]}
        _, payload = sim.follow_up("outcome", alert_id, outcome="confirmed_fraud")
        outcome = {**json.loads(payload), "answers": [
            {"key": "signal.told_to_by_caller", "question": "Did someone tell you to?", "answer": "yes"}]}
        records += [schema.check(f"{root}/alert", json.dumps(alert).encode()),
                    schema.check(f"{root}/outcome", json.dumps(outcome).encode())]
    with open_store(tmp_path / "centre.db") as store:
        store.ingest(records)
        card = learning.train_from_store(store, tmp_path / "model", now=now, epochs=2, log=lambda *_: None)
    assert card["data"]["answered"] == len(early) == 5
