"""The fraud model at the counter: the bundled int8 model, its manifest checks, and the simulator
and training pipeline that produced it. Runs on the gateway's own Python (no TensorFlow); the
end-to-end training test runs only where TensorFlow is installed."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from counterguard.core.decision import Thresholds
from counterguard.core.events import parse_event
from counterguard.core.features import FEATURE_NAMES, FEATURES_VERSION, NO_HISTORY, History, event_features
from counterguard.gateway.scoring.model import FraudModel, ModelError, default_model_path
from counterguard.models.simulate import (
    FRAUD,
    SHIFTED_SEEDS,
    TYPOLOGIES,
    WORLD_RANGES,
    SimConfig,
    random_world,
    simulate,
    simulate_worlds,
    world_seeds,
)
from counterguard.models.train import feature_rows, item_hits, time_split

GOLDEN = default_model_path().with_name("golden.json")
CST = timezone(timedelta(hours=8))
# One int8 output step is 1/256; a golden row whose float score is within this distance of a
# threshold may land on the other side of it after quantisation. All other rows must agree.
NEAR_THRESHOLD = 0.01
# Largest allowed |int8 score - float score| on any golden row (quantisation of the hidden layers).
MAX_SCORE_GAP = 0.05


@pytest.fixture(scope="module")
def model():
    return FraudModel.load(default_model_path())


def level(score: float, t: Thresholds) -> str:
    return "red" if score >= t.red else "amber" if score >= t.amber else "green"


def counter_event(amount: float, **fields) -> dict:
    body = {"event_id": "e-1", "ts": datetime(2024, 5, 6, 10, 30, tzinfo=CST).isoformat(), "counter": 1,
            "kind": "cash_withdrawal", "account": "6222020200000000101", "amount": amount}
    body.update(fields)
    return body


def score_of(model, body: dict, history: History = NO_HISTORY) -> float:
    return model.score(event_features(parse_event(body), history))


# --- the bundled model -----------------------------------------------------------------------------

def test_the_bundled_model_loads_in_litert_and_describes_itself(model):
    manifest = json.loads(default_model_path().with_suffix(".json").read_text())
    assert model.runtime == "ai-edge-litert"
    assert model.version == manifest["version"]
    assert model.sha256 == manifest["sha256"]
    assert model.path == default_model_path()
    assert model.thresholds == Thresholds(manifest["thresholds"]["amber"], manifest["thresholds"]["red"])
    assert manifest["features_version"] == FEATURES_VERSION
    assert default_model_path().stat().st_size <= 16 * 1024  # fits the downlink's model budget


def test_int8_model_gives_the_float_models_levels_on_the_golden_rows(model):
    golden = json.loads(GOLDEN.read_text())
    t = model.thresholds
    assert golden["thresholds"] == {"amber": t.amber, "red": t.red}
    levels = Counter()
    for row in golden["rows"]:
        float_score = row["float_score"]
        int8_score = model.score(row["features"])
        levels[level(float_score, t)] += 1
        assert abs(int8_score - float_score) <= MAX_SCORE_GAP, row
        if min(abs(float_score - t.amber), abs(float_score - t.red)) > NEAR_THRESHOLD:
            assert level(int8_score, t) == level(float_score, t), (int8_score, row)
    assert len(golden["rows"]) >= 45 and min(levels[name] for name in ("green", "amber", "red")) >= 10


def test_the_67_year_old_on_the_phone_withdrawing_50000_is_red_and_a_300_yuan_withdrawal_green(model):
    intercept = counter_event(50000, customer_age=67, account_age_days=11000, balance_before=52300, purpose="home",
                              teller_flags=["customer_on_phone", "urgent", "declared_purpose_mismatch"])
    everyday = counter_event(300, customer_age=40, account_age_days=3000, balance_before=3000, purpose="daily")
    assert level(score_of(model, intercept), model.thresholds) == "red"
    assert level(score_of(model, everyday), model.thresholds) == "green"


@pytest.mark.parametrize("riskier, safer", [
    pytest.param(counter_event(50000, customer_age=72, account_age_days=9000, balance_before=55000,
                               teller_flags=["customer_on_phone"]),
                 counter_event(500, customer_age=72, account_age_days=9000, balance_before=55000, purpose="daily"),
                 id="elderly 50,000 on the phone vs 500 daily"),
    pytest.param(counter_event(48000, customer_age=22, account_age_days=20, balance_before=49000,
                               inbound_24h=49000, inbound_count_24h=18),
                 counter_event(48000, customer_age=45, account_age_days=5000, balance_before=600000,
                               inbound_24h=0, inbound_count_24h=0, purpose="business"),
                 id="new account cashing out inbound vs business owner with savings"),
    pytest.param(counter_event(30000, kind="transfer_out", customer_age=58, account_age_days=4000,
                               balance_before=32000, purpose="investment", teller_flags=["urgent", "anxious"]),
                 counter_event(3000, kind="transfer_out", customer_age=58, account_age_days=4000,
                               balance_before=32000, purpose="transfer_to_relative"),
                 id="urgent investment transfer of the savings vs family transfer"),
])
def test_riskier_counter_events_score_higher(model, riskier, safer):
    assert score_of(model, riskier) > score_of(model, safer)


def test_a_coached_transfer_to_a_new_young_payee_is_alerted_and_the_same_to_a_known_payee_is_not(model):
    # A victim coached to say "for my son's flat", calm, moving most of her savings: only the payee gives it away.
    coached = dict(kind="transfer_out", customer_age=66, account_age_days=8000, balance_before=98000, purpose="home")
    to_mule = counter_event(90000, **coached, payee_new=True, payee_account_age_days=21)
    to_son = counter_event(90000, **coached, payee_new=False, payee_account_age_days=3650)
    assert level(score_of(model, to_mule), model.thresholds) != "green"
    assert level(score_of(model, to_son), model.thresholds) == "green"
    assert score_of(model, to_mule) > score_of(model, to_son)


def test_a_second_large_withdrawal_at_another_counter_within_the_hour_scores_higher(model):
    body = counter_event(20000, customer_age=28, account_age_days=1500, balance_before=21000)
    earlier_visit = History(count_1h=1, count_24h=1, amount_24h=40000, other_counters_24h=1)
    assert score_of(model, body, earlier_visit) > score_of(model, body)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)))
def test_any_finite_row_scores_between_0_and_1(model, row):
    assert 0.0 <= model.score(row) <= 1.0


def test_score_many_matches_score_in_order(model):
    rows, _, _, _ = feature_rows(simulate(3, 300))
    rows = rows.tolist()
    assert model.score_many(rows) == [model.score(r) for r in rows]


def test_a_row_of_the_wrong_length_is_refused(model):
    with pytest.raises(ValueError, match=f"{len(FEATURE_NAMES)} values"):
        model.score([0.0] * (len(FEATURE_NAMES) - 1))


# --- a model that must not be used ------------------------------------------------------------------

@pytest.fixture
def installed(tmp_path):
    """A copy of the bundled model and manifest that a test may damage."""
    path = tmp_path / "counterguard-v1.tflite"
    shutil.copy(default_model_path(), path)
    shutil.copy(default_model_path().with_suffix(".json"), path.with_suffix(".json"))
    return path


def edit_manifest(path, **changes):
    manifest_path = path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    manifest.update(changes)
    manifest_path.write_text(json.dumps(manifest))


def test_a_tampered_model_file_is_refused_naming_the_file(installed):
    data = bytearray(installed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    installed.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256") as e:
        FraudModel.load(installed)
    assert e.value.path == str(installed) and str(installed) in str(e.value)


def test_a_model_trained_on_other_feature_names_is_refused(installed):
    names = list(FEATURE_NAMES)
    names[3], names[4] = names[4], names[3]
    edit_manifest(installed, feature_names=names)
    with pytest.raises(ModelError, match="feature names differ .* position 3") as e:
        FraudModel.load(installed)
    assert e.value.path == str(installed.with_suffix(".json"))


def test_a_model_for_another_features_version_is_refused(installed):
    edit_manifest(installed, features_version=FEATURES_VERSION + 1)
    with pytest.raises(ModelError, match=f"features version {FEATURES_VERSION + 1}") as e:
        FraudModel.load(installed)
    assert str(installed.with_suffix(".json")) in str(e.value)


def test_a_model_without_its_manifest_is_refused(installed):
    installed.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="manifest .* is missing") as e:
        FraudModel.load(installed)
    assert e.value.path == str(installed.with_suffix(".json"))


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"name": "x"}', "lacks version"),
])
def test_a_broken_manifest_is_refused_with_what_is_wrong(installed, text, problem):
    installed.with_suffix(".json").write_text(text)
    with pytest.raises(ModelError, match=problem):
        FraudModel.load(installed)


def test_a_manifest_with_impossible_thresholds_is_refused(installed):
    edit_manifest(installed, thresholds={"amber": 0.9, "red": 0.5})
    with pytest.raises(ModelError, match="thresholds"):
        FraudModel.load(installed)


def test_a_missing_model_file_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no such model file") as e:
        FraudModel.load(tmp_path / "nothing.tflite")
    assert e.value.path == str(tmp_path / "nothing.tflite")


# --- the simulator and the features it is trained on ------------------------------------------------

@pytest.fixture(scope="module")
def branch():
    return simulate(11, 20_000)


def test_the_simulator_is_deterministic_for_a_seed():
    assert simulate(5, 2000) == simulate(5, 2000)
    assert simulate(5, 2000) != simulate(6, 2000)


def test_every_simulated_event_is_a_valid_schema_v1_event_in_time_order(branch):
    events = [parse_event(item["event"]) for item in branch]
    assert len(events) == 20_000
    assert all(a.ts <= b.ts for a, b in zip(events, events[1:]))
    assert len({e.event_id for e in events}) == len(events)


def test_the_simulated_branch_has_every_typology_about_1_to_2_percent_fraud_and_returning_customers(branch):
    typologies = Counter(item["typology"] for item in branch)
    assert set(typologies) == set(TYPOLOGIES)
    assert all(item["label"] == (item["typology"] in FRAUD) for item in branch)
    assert 0.01 <= sum(item["label"] for item in branch) / len(branch) <= 0.02
    visits = Counter(item["event"]["account"] for item in branch)
    assert sum(1 for n in visits.values() if n > 1) > 1000


def test_mules_come_back_and_their_history_shows_it(branch):
    rows, _, labels, _ = feature_rows(branch)
    count_24h = FEATURE_NAMES.index("log_history_count_24h")
    mule_rows = [r for r, item in zip(rows, branch) if item["typology"] == "mule_cash_out"]
    ordinary_rows = [r for r, item in zip(rows, branch) if item["typology"] == "ordinary"]
    repeat = lambda rs: sum(r[count_24h] > 0 for r in rs) / len(rs)  # noqa: E731
    assert repeat(mule_rows) > 0.3 > repeat(ordinary_rows)
    assert labels.sum() == sum(item["label"] for item in branch)


def test_training_rows_are_the_gateways_own_features():
    items = simulate(2, 200)
    rows, final, _, _ = feature_rows(items)
    first = parse_event(items[0]["event"])
    assert rows.shape == final.shape == (200, len(FEATURE_NAMES))
    hits = item_hits(items[0])
    assert rows[0].tolist() == pytest.approx(event_features(first, NO_HISTORY, hits), rel=1e-6)
    # The same event once the customer has answered: the first row with the answer columns filled in.
    assert final[0].tolist() == pytest.approx(event_features(first, NO_HISTORY, hits, items[0]["signals"]["answers"]),
                                              rel=1e-6)


def test_replay_refuses_events_out_of_time_order():
    items = simulate(2, 50)
    with pytest.raises(ValueError, match="time order"):
        feature_rows(items[::-1])


def test_the_test_split_is_the_later_part_of_time_never_a_random_draw(branch):
    _, _, _, epochs = feature_rows(branch)
    train = time_split(epochs)
    assert 0.75 < train.mean() < 0.85
    assert epochs[train].max() < epochs[~train].min()


def test_a_simulator_config_with_an_unknown_typology_is_refused():
    with pytest.raises(ValueError, match="unknown typologies .*card_skimming"):
        SimConfig(mix={"ordinary": 1.0, "card_skimming": 0.1})


# --- many simulated branches, each with its own habits -----------------------------------------------

def test_each_simulated_world_draws_its_own_habits_and_the_same_seed_draws_the_same_world():
    worlds = [random_world(s) for s in world_seeds(7, 40)]
    assert random_world(world_seeds(7, 1)[0]) == worlds[0]
    fraud_share = [sum(w.mix[n] for n in FRAUD) / sum(w.mix.values()) for w in worlds]
    assert max(fraud_share) > 2 * min(fraud_share)  # fraud rate varies
    for knob in ("amount_scale", "flag_attention", "purpose_unrecorded", "coached_share", "payee_age_known"):
        values = [getattr(w, knob) for w in worlds]
        lo, hi = WORLD_RANGES[knob]
        assert lo <= min(values) < max(values) <= hi, knob
    # the honest look-alikes and each typology's amounts move from world to world, not all together
    assert len({round(w.mix["business_cash"] / w.mix["trader_cash"], 6) for w in worlds}) == len(worlds)
    assert len({round(w.amount_by_typology["safe_account"], 6) for w in worlds}) == len(worlds)
    assert not set(world_seeds(7, 1000)) & set(SHIFTED_SEEDS)


def test_simulated_worlds_are_separate_branches_with_their_own_time_lines_and_typology_mixes():
    worlds = simulate_worlds(7, 4, 12_000)
    assert [len(items) for _, items in worlds] == [3000] * 4
    ids = [item["event"]["event_id"] for _, items in worlds for item in items]
    assert len(set(ids)) == len(ids)
    accounts = [{item["event"]["account"] for item in items} for _, items in worlds]
    assert not accounts[0] & accounts[1]
    for _, items in worlds:
        events = [parse_event(item["event"]) for item in items]
        assert all(a.ts <= b.ts for a, b in zip(events, events[1:]))
    shares = [Counter(item["typology"] for item in items) for _, items in worlds]
    assert len({s["business_cash"] for s in shares}) > 1 and len({s["safe_account"] for s in shares}) > 1
    assert simulate_worlds(7, 4, 12_000) == worlds  # reproducible


def test_a_branch_whose_tellers_skip_the_purpose_and_the_flags_sends_fewer_of_them():
    quiet = SimConfig(purpose_unrecorded=0.5, purpose_vague=0.5, flag_attention=0.3)
    ref, other = simulate(4, 6000), simulate(4, 6000, config=quiet)
    share = lambda items, key: sum(key in i["event"] for i in items) / len(items)  # noqa: E731
    assert share(other, "purpose") < 0.7 * share(ref, "purpose")
    assert share(other, "teller_flags") < 0.5 * share(ref, "teller_flags")
    vague = lambda items: sum(i["event"].get("purpose") == "other" for i in items) / len(items)  # noqa: E731
    assert vague(other) > vague(ref)


# --- training end to end (only where TensorFlow is installed) ---------------------------------------

def test_training_end_to_end_writes_a_model_the_gateway_loads(tmp_path):
    pytest.importorskip("tensorflow")
    from counterguard.models.train import train

    manifest = train(3, 6000, tmp_path, epochs=2, log=lambda *_: None)
    model = FraudModel.load(tmp_path / "counterguard-v1.tflite")
    assert model.sha256 == manifest["sha256"]
    assert 0 < model.thresholds.amber < model.thresholds.red <= 1
    assert 0 <= manifest["metrics"]["average_precision"] <= 1
    golden = json.loads((tmp_path / "golden.json").read_text())
    assert all(0.0 <= model.score(r["features"]) <= 1.0 for r in golden["rows"])


def test_training_on_a_banks_labelled_cases_sets_thresholds_on_them_and_names_them(tmp_path):
    pytest.importorskip("tensorflow")
    from counterguard.models.cases import file_digest, write_cases
    from counterguard.models.evaluate import evaluate
    from counterguard.models.independent import independent_branch
    from counterguard.models.train import train

    cases = tmp_path / "region.jsonl"
    items = independent_branch(5, 6000)
    write_cases(items, cases)
    with cases.open("a") as f:
        f.write("not a case\n")  # a bad line is named and left out, not fatal
    said = []
    manifest = train(3, 0, tmp_path / "own", epochs=2, cases=[cases], cases_weight=2.0, log=said.append)
    assert any("line 6001" in line and "left out" in line for line in said)
    record = manifest["cases"][0]
    assert record == {"file": "region.jsonl", "sha256": file_digest(cases), "events": 6000,
                      "fraud_events": sum(i["label"] for i in items), "bad_lines": 1}
    assert manifest["events"] == 0 and manifest["cases_weight"] == 2.0 and "worlds" not in manifest
    assert "of the labelled cases" in manifest["threshold_rule"]
    assert set(manifest["metrics_by_source"]) == {str(cases)}
    model = FraudModel.load(tmp_path / "own" / "counterguard-v1.tflite")
    assert model.sha256 == manifest["sha256"] and 0 < model.thresholds.amber < model.thresholds.red <= 1
    # Thresholds come from the cases' own earlier days: at most about 1 % of their honest events alerted.
    assert manifest["metrics"]["train_legit_alerted_share"] <= 0.011
    # No simulated days to test on: evaluate says so instead of inventing a split.
    with pytest.raises(ValueError, match="trained on labelled cases alone"):
        evaluate(model)

    mixed = train(3, 3000, tmp_path / "mixed", epochs=2, cases=[cases], log=lambda *_: None)
    assert set(mixed["metrics_by_source"]) == {"simulated", str(cases)} and mixed["events"] == 3000


def test_training_across_simulated_worlds_splits_each_by_time_and_names_them_in_the_card(tmp_path):
    pytest.importorskip("tensorflow")
    from counterguard.models.train import train

    manifest = train(3, 12_000, tmp_path, epochs=1, worlds=4, log=lambda *_: None)
    assert manifest["worlds"] == 4 and manifest["events"] == 12_000
    assert "each of the 4 simulated worlds" in manifest["metrics"]["split"]
    assert manifest["metrics"]["events"] == pytest.approx(0.2 * 12_000, rel=0.1)
    assert FraudModel.load(tmp_path / "counterguard-v1.tflite").sha256 == manifest["sha256"]


@pytest.mark.parametrize("args, problem", [
    (["--events", "0"], "nothing to train on"),
    (["--events", "5000", "--worlds", "10"], "at least 1000 --events per world"),
    (["--events", "500"], "at least 1000"),
    (["--cases", "/nonexistent/cases.jsonl", "--events", "0"], "/nonexistent/cases.jsonl"),
    (["--cases", "x.jsonl", "--cases-weight", "0"], "--cases-weight must be greater than 0"),
])
def test_the_training_command_refuses_what_it_cannot_train_on(args, problem, tmp_path):
    pytest.importorskip("tensorflow")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "counterguard.models.train", "--out", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and problem in done.stderr
    assert not (tmp_path / "counterguard-v1.tflite").exists()


def test_the_documented_training_command_is_the_one_behind_the_bundled_model():
    # `python -m counterguard.models.train` with its defaults must reproduce the committed model (models/README.md).
    import counterguard.models.train as training

    manifest = json.loads(default_model_path().with_suffix(".json").read_text())
    assert (manifest["seed"], manifest["events"], manifest["version"]) == (7, training.EVENTS, training.VERSION)
    assert manifest.get("worlds", 0) == training.WORLDS
    assert manifest["metrics"]["int8_float_level_agreement"] >= 0.99
