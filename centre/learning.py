"""Retraining at the centre: a challenger model from the fleet's own uploaded, labelled events.

``counterguard centre train`` joins every label the centre holds to the events the gateways
uploaded (centre/labels.py), replays nothing (the features are the ones the gateways computed, by
the one feature module), and trains the same small network as ``models/train.py``, converted to
int8 the same way, so a gateway loads it like the bundled model.

Judged the way a model-risk team would:

- **Time-ordered, on complete labels.** Of the events old enough that an unlabelled one counts as
  honest (``honest_after_days``), the first 80 % of the time span trains and the last 20 %
  validates; no validation event, and nothing after them, is trained on. Younger events wait: among
  them only the model in force's own alerts are labelled yet, which would make it look blind next to
  any challenger.
- **Thresholds for a stated budget** (``--budget``, default 1 % of honest customers alerted amber or
  red, a fifth of that red), set on the fleet's own honest customers in the training part.
- **At fixed budgets, next to the model in force.** On the validation events: recall at 0.5/1/2 %
  of honest customers alerted, red precision at the chosen thresholds, each with the number of
  labels behind it and a 95 % Wilson interval, and the same figures for the scores the gateways'
  model in force gave those very events.
- **While labels are few**, simulated events (``--sim-events``) join the training part, each
  weighing ``--sim-weight`` of a fleet event; the card says how many and how much.

The card (``counterguard-fleet.json`` beside the ``.tflite``) names its data: the time range,
event and label counts per source, how unlabelled events were treated, the simulator's share, and
the model's sha256. ``centre push-model --shadow`` sends it to the gateways as a challenger first.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from counterguard.centre.drift import reference_from_rows
from counterguard.centre.labels import labelled_events, labels_complete_before, utc_text, with_features
from counterguard.core.features import N_FEATURES, with_answers

NAME = "counterguard-fleet"
BUDGETS = (0.005, 0.01, 0.02)
RED_PART = 0.2          # red's budget: a fifth of the alert budget
MIN_FRAUD_TRAIN = 10    # fraud labels the training part needs (simulated events may make up the rest)
MIN_FRAUD_TEST = 3      # ... and the validation part, or no figure would mean anything
PAIRED_Z = 1.96         # how clearly the model in force must catch more of the same frauds to call a challenger worse


class LearningError(ValueError):
    """Retraining cannot go ahead; the message says what is missing and what to do."""


def wilson(k: int, n: int, z: float = 1.96) -> list | None:
    """95 % Wilson interval of a share k/n, as [low, high] (None for n = 0)."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def recall_at(scores: np.ndarray, y: np.ndarray, share: float) -> dict:
    """Recall when at most ``share`` of the honest events are alerted, with its count and interval."""
    from counterguard.models.evaluate import recall_at_legit_share

    fraud = int((y == 1).sum())
    recall = recall_at_legit_share(scores, y, share) if fraud and (y == 0).any() else None
    caught = 0 if recall is None else int(round(recall * fraud))
    return {"recall": None if recall is None else round(recall, 4), "fraud_labels": fraud,
            "honest_labels": int((y == 0).sum()), "interval_95": wilson(caught, fraud)}


def paired(challenger: np.ndarray, in_force: np.ndarray, y: np.ndarray, share: float) -> dict:
    """The two models on the very same fraud events, each at the score cut that keeps it within
    ``share`` of honest customers alerted: how many one catches and the other misses, and a verdict.

    The model in force's figures lean its way: its own alerts were labelled by the supervisors, while
    the frauds it missed are known only when reported later, so a challenger that catches those gets
    only part of the credit. A challenger is therefore called worse only when the model in force
    catches clearly more of the same frauds (a paired sign test, z > 1.96), not whenever its
    recall is a point lower."""
    from counterguard.models.evaluate import legit_cut

    fraud = y == 1
    if not fraud.any() or not (y == 0).any():
        return {"challenger_only": 0, "in_force_only": 0, "both": 0, "z": None, "verdict": "no fraud labels"}
    mine = challenger[fraud] > legit_cut(challenger, y, share)
    theirs = in_force[fraud] > legit_cut(in_force, y, share)
    only_mine, only_theirs = int((mine & ~theirs).sum()), int((theirs & ~mine).sum())
    z = (only_theirs - only_mine) / math.sqrt(only_mine + only_theirs) if only_mine + only_theirs else 0.0
    verdict = "worse" if z > PAIRED_Z else "better" if z < -PAIRED_Z else "no clear difference"
    return {"challenger_only": only_mine, "in_force_only": only_theirs, "both": int((mine & theirs).sum()),
            "z": round(z, 2), "verdict": verdict}


def paired_line(same: dict) -> str:
    """``paired``'s figures at the 1 % budget as one line of a report."""
    return (f"on the same frauds at the 1 % budget: {same['both']} caught by both, {same['in_force_only']} only "
            f"by the model in force, {same['challenger_only']} only by the challenger: {same['verdict']}")


def judged(scores: np.ndarray, y: np.ndarray, amber: float | None = None, red: float | None = None) -> dict:
    """Recall at each budget and, at the given thresholds, the alerted shares and red precision."""
    out = {"at_budget": {f"{b:g}": recall_at(scores, y, b) for b in BUDGETS}}
    if amber is not None:
        fraud, honest = y == 1, y == 0
        held, alerted = scores >= red, scores >= amber
        out["thresholds"] = {"amber": amber, "red": red}
        out["honest_alerted_share"] = round(float(alerted[honest].mean()), 4) if honest.any() else None
        out["recall_alerted"] = round(float(alerted[fraud].mean()), 4) if fraud.any() else None
        reds = int(held.sum())
        out["red_precision"] = round(float(fraud[held].mean()), 4) if reds else None
        out["red_precision_interval_95"] = wilson(int(fraud[held].sum()), reds)
        out["reds"] = reds
    return out


def _rows(events: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
    usable = with_features(events)
    usable.sort(key=lambda e: (e["ts_epoch"], e["gateway_id"], e["event_id"]))
    x = np.asarray([e["features"] for e in usable], np.float32).reshape(-1, N_FEATURES)
    y = np.asarray([e["label"] for e in usable], np.int8)
    t = np.asarray([e["ts_epoch"] for e in usable], np.float64)
    in_force = np.asarray([e["score"] for e in usable], np.float32)
    return x, y, t, in_force, usable


def train_from_store(store, out: Path, *, now: float | None = None, honest_after_days: float = 30,
                     since_days: float | None = None, budget: float = 0.01, sim_events: int = 0,
                     sim_weight: float = 0.3, seed: int = 7, epochs: int | None = None, version: str | None = None,
                     log=print) -> dict:
    """Train, judge and write a challenger from the store's labelled events; returns its card."""
    from counterguard.models import train as base

    if not 0 < budget < 0.5:
        raise LearningError(f"the alert budget must be a share between 0 and 0.5 (0.01 is 1 %), got {budget}")
    now = time.time() if now is None else now
    t0 = time.monotonic()
    since = None if since_days is None else now - since_days * 86400.0
    events, label_counts = labelled_events(store, now=now, honest_after_days=honest_after_days, since_epoch=since)
    x, y, t, in_force, usable = _rows(events)
    if len(y) == 0:
        raise LearningError(f"no labelled events with features to learn from ({store.event_count()} uploaded events "
                            f"in all; an event counts once it is labelled or {honest_after_days:g} days old): let "
                            "the gateways upload for longer, or import case files with 'counterguard centre label'")
    # Judged only on events old enough to be fully labelled: in the last honest_after_days only the
    # model in force's own alerts carry labels, so its honest customers there would all be its own
    # false alarms, and it would look blind next to any challenger. Training stays before the judged
    # part, so the events younger than that wait for their labels.
    mature = t <= labels_complete_before(now, honest_after_days)
    if not mature.any():
        raise LearningError(f"no labelled event is {honest_after_days:g} days old yet, so none can be judged with "
                            "complete labels: let the gateways upload for longer")
    cut = t[mature][~base.time_split(t[mature])].min()
    test_mask = mature & (t >= cut)
    train_mask = t < cut
    too_recent = int((~mature).sum())
    fraud_train, fraud_test = int(y[train_mask].sum()), int(y[test_mask].sum())
    if fraud_test < MIN_FRAUD_TEST or (fraud_train < MIN_FRAUD_TRAIN and not sim_events):
        raise LearningError(
            f"too few fraud labels: {fraud_train} in the training part and {fraud_test} in the validation part "
            f"(the last 20 % of {utc_text(t.min())} to {utc_text(t[mature].max())}); need {MIN_FRAUD_TRAIN} and {MIN_FRAUD_TEST}. "
            "Import confirmed cases ('counterguard centre label'), widen --since, or add simulated events "
            "(--sim-events) while the fleet's own labels are few")
    base.seed_everything(seed)
    x_train, y_train = x[train_mask], y[train_mask]
    # An alert whose customer answered the caring questions is learnt from twice, as models/train.py
    # does: as first scored, and with the answers filled in, so the challenger can re-score answers.
    answered = [i for i in np.flatnonzero(train_mask) if usable[i].get("answers")]
    if answered:
        x_train = np.concatenate([x_train, np.asarray([with_answers(x[i], usable[i]["answers"]) for i in answered],
                                                      np.float32)])
        y_train = np.concatenate([y_train, y[answered]])
    weights = np.ones(len(y_train), np.float32)
    sim = None
    if sim_events:
        from counterguard.models.simulate import simulate

        try:
            sim = base.Source("simulated", simulate(seed, sim_events), cases=False)
        except SystemExit as exc:  # the simulator's own split found no fraud
            raise LearningError(f"--sim-events {sim_events}: {exc}") from None
        x_train = np.concatenate([x_train, sim.x[sim.train]])
        y_train = np.concatenate([y_train, sim.y[sim.train]])
        weights = np.concatenate([weights, np.full(int(sim.train.sum()), sim_weight, np.float32)])
    mean, scale = base.standardiser(x_train)
    std = lambda rows: base.standardised(rows, mean, scale)  # noqa: E731
    log(f"training on {int(train_mask.sum())} fleet events ({fraud_train} fraud)"
        + (f" and {int(sim.train.sum())} simulated (weight {sim_weight:g})" if sim else "")
        + (f"; {len(answered)} of them again with the customer's answers" if answered else "")
        + f"; validating on the {int(test_mask.sum())} latest fully labelled ({fraud_test} fraud)"
        + (f"; {too_recent} younger than {honest_after_days:g} days wait for their labels" if too_recent else ""))
    model = base.fit(std(x_train), y_train, seed, epochs or base.EPOCHS, weights)
    tflite = base.int8_model(model, x_train, y_train, mean, scale, seed)

    # Thresholds on the fleet's own honest customers (training part), for the stated budget.
    fleet_train_scores = base.int8_scores(tflite, std(x[train_mask]))
    amber, red = base.choose_thresholds(fleet_train_scores, y[train_mask], amber_share=budget,
                                        red_share=budget * RED_PART)
    test_scores = base.int8_scores(tflite, std(x[test_mask]))
    y_test = y[test_mask]
    challenger = judged(test_scores, y_test, amber, red)
    champion = judged(in_force[test_mask], y_test)
    versions = Counter(e["model_version"] for e, m in zip(usable, test_mask) if m)
    test_sources = Counter(e["label_source"] for e, m in zip(usable, test_mask) if m)

    version = version or datetime.fromtimestamp(now, timezone.utc).strftime("fleet-%Y%m%d-%H%M")
    model_path = base.write_model(out, NAME, tflite)
    card = {
        **base.card_head(NAME, version, mean, scale, tflite, amber, red),
        "threshold_rule": f"lowest int8 score levels alerting at most {budget:.2%} (amber or red) and "
                          f"{budget * RED_PART:.2%} (red) of the fleet's honest customers in the training part",
        "data": {
            "from": utc_text(t.min()), "to": utc_text(t.max()), "split_at": utc_text(cut),
            "events": int(len(y)), "fraud": int(y.sum()), "honest": int((y == 0).sum()),
            "gateways": len({e["gateway_id"] for e in usable}),
            "label_sources": dict(label_counts),
            "unlabelled_treated_as_honest_after_days": honest_after_days,
            "left_out": {"without_features": len(events) - len(usable), "too_recent_to_judge": too_recent},
            "answered": len(answered),  # training events learnt from again with the customer's answers
            "since_days": since_days,
            "simulated": None if sim is None else {"events": int(sim.train.sum()), "weight": sim_weight,
                                                   "seed": seed, "fraud": int(sim.y[sim.train].sum())},
        },
        "validation": {
            "split": f"last 20 % of the time span of the events at least {honest_after_days:g} days old (fully "
                     "labelled); never trained on, and nothing later trained on either",
            "events": int(len(y_test)), "fraud": int(y_test.sum()), "label_sources": dict(test_sources),
            "challenger": challenger,
            "model_in_force": {**champion, "versions": dict(versions)},
            "paired": {f"{b:g}": paired(test_scores, in_force[test_mask], y_test, b) for b in BUDGETS},
        },
        # What the model learnt on, binned, so 'centre drift --card' measures how far today is from it.
        "reference": reference_from_rows(x[train_mask], fleet_train_scores >= amber),
        "seed": seed,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_s": round(time.monotonic() - t0, 1),
    }
    (out / f"{NAME}.json").write_text(json.dumps(card, indent=1) + "\n")
    log(f"model {model_path} ({len(tflite)} bytes), version {version}, thresholds amber={amber} red={red}")
    return card


def summary(card: dict) -> str:
    """The card's verdict in a few lines, challenger next to the model in force."""
    d, v = card["data"], card["validation"]
    lines = [f"{card['name']} {card['version']}: {d['events']} labelled events from {d['gateways']} gateway(s), "
             f"{d['from']} to {d['to']} ({d['fraud']} fraud; labels: "
             + ", ".join(f"{k} {n}" for k, n in sorted(d["label_sources"].items())) + ")",
             f"validation: {v['events']} events from {d['split_at']} ({v['fraud']} fraud), never trained on",
             f"{'alert budget':<14} {'challenger':>22} {'model in force':>22}"]
    for b in BUDGETS:
        key = f"{b:g}"
        cells = []
        for side in (v["challenger"], v["model_in_force"]):
            r = side["at_budget"][key]
            ci = r["interval_95"]
            cells.append("-" if r["recall"] is None else f"{r['recall']:.1%} [{ci[0]:.0%}-{ci[1]:.0%}]")
        lines.append(f"{b:<14.1%} {cells[0]:>22} {cells[1]:>22}   recall, of {v['fraud']} fraud")
    lines.append(paired_line(v["paired"]["0.01"]))
    c = v["challenger"]
    rp = "-" if c["red_precision"] is None else f"{c['red_precision']:.1%} of {c['reds']} reds"
    lines.append(f"at its thresholds: {c['honest_alerted_share']:.2%} of honest customers alerted, "
                 f"{c['recall_alerted']:.1%} of fraud alerted, red precision {rp}")
    return "\n".join(lines)
