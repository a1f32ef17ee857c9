"""The learning loop rehearsed, week by week, on a world the bundled model never saw.

A fleet of gateways (each one branch of models/independent.py, its own seed; or, with --world
shifted, the simulator's shifted branch) serves its customers week after week. Each week:

1. **Judged first.** The week's events are scored by the model in force at the week's start, before
   anything of that week is learnt from: recall at the alert budget (share of fraud caught when
   at most --budget of honest customers are alerted), honest customers alerted and red precision
   at the model's own thresholds, next to the bundled model and the rule book on the same events.
2. **Uploaded** to a real centre store, as the gateways upload them (features, verdict, score).
3. **Labelled the way a bank learns:** supervisors record an outcome on every alert at once; of the
   frauds that went through, --report-share are reported by the police --report-delay weeks later
   (imported as case labels); everything else counts as honest once --honest-after days old.
4. **Retrained** at the week's end with ``centre train`` (centre/learning.py: time-ordered split,
   thresholds for the budget on the fleet's own honest customers; --sim-events simulated events
   weighted 0.3, as ``centre train`` adds by default). The challenger replaces the model in force
   unless it is clearly worse on the same validation frauds (the card's paired count, the rule
   ``centre promote`` applies: the labels lean toward the model in force, whose alerts made them).

At the end, the ceiling: the same network trained on every event of all but the last two weeks with
its true label, judged on those two weeks: how far the loop is from what the world allows.

    .venv/bin/python bench/learn_sim.py [--weeks 10] [--gateways 2] [--per-week 2100] [--plot FILE.svg]

Prints a Markdown table for docs/benchmarks.md (and writes the plot).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine_info import cpu_name  # noqa: E402

WEEK = 7 * 86400.0


def world(kind: str, gateways: int, events: int, model, thresholds):
    """Every gateway's events, replayed on its own, scored by the bundled model and the rule book."""
    from counterguard.models.evaluate import SHIFTED, Scored
    from counterguard.models.independent import independent_branch
    from counterguard.models.simulate import simulate

    parts = []
    for g in range(gateways):
        items = independent_branch(11 + g, events) if kind == "independent" else \
            simulate(101 + g, events, config=SHIFTED)
        # First verdicts (the lists, no answers): the centre learns from the uploaded first-verdict
        # inputs, so the loop and the bundled model are judged on the same footing.
        scored = Scored(f"gw-{g}", items, model, thresholds, answers=False)
        scored.gateway = np.full(len(scored.labels), g)
        parts.append(scored)
    whole = type(parts[0]).concat(parts, kind)
    whole.gateway = np.concatenate([p.gateway for p in parts])
    order = np.argsort(whole.epochs, kind="stable")
    for key in (*Scored.KEYS, "gateway"):
        setattr(whole, key, getattr(whole, key)[order])
    return whole


def judge(scores: np.ndarray, y: np.ndarray, amber: float, red: float, budget: float) -> dict:
    from counterguard.models.evaluate import recall_at_legit_share

    fraud, honest = y == 1, y == 0
    held = scores >= red
    return {"recall_at_budget": recall_at_legit_share(scores, y, budget) if fraud.any() else None,
            "honest_alerted": float((scores[honest] >= amber).mean()) if honest.any() else None,
            "recall_alerted": float((scores[fraud] >= amber).mean()) if fraud.any() else None,
            "red_precision": float(fraud[held].mean()) if held.any() else None}


def rule_judge(levels: np.ndarray, y: np.ndarray) -> dict:
    fraud, honest = y == 1, y == 0
    alerted, held = levels != "green", levels == "red"
    return {"recall_alerted": float(alerted[fraud].mean()) if fraud.any() else None,
            "honest_alerted": float(alerted[honest].mean()) if honest.any() else None,
            "red_precision": float(fraud[held].mean()) if held.any() else None}


def upload(store, data, idx: np.ndarray, scores: np.ndarray, amber: float, red: float, version: str) -> None:
    from counterguard.centre.schema import Record
    from counterguard.core.features import FEATURES_VERSION

    for g in np.unique(data.gateway[idx]):
        mine = idx[data.gateway[idx] == g]
        rows = [{"event_id": f"e{i}", "counter": 1, "kind": "cash_withdrawal", "amount": 1.0,
                 "ts": datetime.fromtimestamp(data.epochs[i], timezone.utc).isoformat(), "account_hash": None,
                 "level": "red" if scores[i] >= red else "amber" if scores[i] >= amber else "green",
                 "score": float(min(scores[i], 1.0)), "reasons": [], "model_version": version,
                 "watchlist_version": 1, "features": [float(v) for v in data.rows[i]], "shadow_score": None,
                 "shadow_version": None, "decided_at": "2025-01-01T00:00:00Z"} for i in mine]
        for start in range(0, len(rows), 5000):
            store.ingest([Record("events", "r", "b", f"gw-{g}", {"type": "events", "gateway_id": f"gw-{g}", "seq": 1,
                                                               "features_version": FEATURES_VERSION,
                                                               "events": rows[start:start + 5000]})])


def label(store, data, idx, source: str, line0: int) -> None:
    from counterguard.centre.labels import CaseLabel

    store.add_labels([CaseLabel(line0 + n, "fraud" if data.labels[i] else "not_fraud", source, f"c{i}",
                                event_id=f"e{i}", gateway_id=f"gw-{data.gateway[i]}") for n, i in enumerate(idx)],
                     file=source, imported_at=0)


def ceiling(data, weeks: np.ndarray, last: int, budget: float, epochs: int, seed: int) -> float | None:
    """The same network on every earlier event with its true label, judged on the last two weeks."""
    from counterguard.models import train as base

    train_mask, test_mask = weeks < last - 1, weeks >= last - 1
    x, y = data.rows[train_mask].astype(np.float32), data.labels[train_mask]
    mean, scale = base.standardiser(x)
    std = lambda r: np.clip((r - mean) / scale, -base.CLIP, base.CLIP).astype(np.float32)  # noqa: E731
    model = base.fit(std(x), y, seed, epochs)
    rng = np.random.default_rng(seed)
    cal = np.concatenate([std(x[rng.choice(len(x), min(len(x), 8192), replace=False)]), std(x[y == 1])])
    scores = base.int8_scores(base.to_int8_tflite(model, cal), std(data.rows[test_mask].astype(np.float32)))
    scores = np.where(data.scores[test_mask] >= 1.0, 1.0, scores)  # a watchlist hit is red whatever the model
    return judge(scores, data.labels[test_mask], 2.0, 2.0, budget)["recall_at_budget"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", choices=("independent", "shifted"), default="independent")
    parser.add_argument("--weeks", type=int, default=10)
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--per-week", type=int, default=2100, help="events per gateway per week (default 2100)")
    parser.add_argument("--budget", type=float, default=0.01)
    parser.add_argument("--report-share", type=float, default=0.6, help="missed frauds the police report later")
    parser.add_argument("--report-delay", type=int, default=2, help="weeks until they do (default 2)")
    parser.add_argument("--honest-after", type=float, default=14.0, help="days until an unlabelled event "
                                                                          "counts as honest (default 14)")
    parser.add_argument("--sim-events", type=int, default=20000, help="simulated events each retraining adds, "
                                                                      "as 'centre train' does by default (default 20000)")
    parser.add_argument("--sim-until-fraud", type=int, help="add them only while the fleet has fewer fraud labels "
                                                            "than this (default: always)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--plot", help="write the weekly curves to this SVG")
    args = parser.parse_args()

    from counterguard.centre import learning
    from counterguard.centre.store import open_store
    from counterguard.gateway.scoring.model import FraudModel, default_model_path

    t0 = time.monotonic()
    bundled = FraudModel.load(default_model_path())
    data = world(args.world, args.gateways, args.weeks * args.per_week, bundled, bundled.thresholds)
    weeks = ((data.epochs - data.epochs.min()) // WEEK).astype(int)
    last = min(args.weeks, int(weeks.max()) + 1)
    watch = data.scores >= 1.0
    rng = random.Random(args.seed)
    champion, champion_name = bundled, bundled.version
    rows, reports = [], []  # reports: (week due, event indices) of missed frauds the police will report
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "centre.db") as store:
        line = 0
        for w in range(last):
            idx = np.flatnonzero(weeks == w)
            y = data.labels[idx]
            in_force = champion_name
            scores = np.where(watch[idx], 1.0,
                              np.asarray([champion.score(r) for r in data.rows[idx]]) if champion is not bundled
                              else data.scores[idx])
            th = champion.thresholds
            mine = judge(scores, y, th.amber, th.red, args.budget)
            theirs = judge(data.scores[idx], y, bundled.thresholds.amber, bundled.thresholds.red, args.budget)
            rules = rule_judge(data.rule_levels[idx], y)
            all_scores = np.zeros(len(data.labels))
            all_scores[idx] = scores
            upload(store, data, idx, all_scores, th.amber, th.red, champion_name)
            alerted = idx[scores >= th.amber]
            label(store, data, alerted, "supervisor", line)
            line += len(alerted)
            missed = [i for i in idx[(scores < th.amber) & (data.labels[idx] == 1)] if rng.random() < args.report_share]
            reports.append((w + args.report_delay, np.asarray(missed, int)))
            due = [r for r in reports if r[0] <= w]
            reports = [r for r in reports if r[0] > w]
            for _, found in due:
                label(store, data, found, "police", line)
                line += len(found)
            promoted = ""
            end = data.epochs[idx].max() + 1
            if w < last - 1:
                fraud_labels = sum(1 for lab in store.labels() if lab.label == "fraud")
                add_sim = args.sim_until_fraud is None or fraud_labels < args.sim_until_fraud
                try:
                    with contextlib.redirect_stdout(sys.stderr):  # TensorFlow's converter talks on stdout
                        card = learning.train_from_store(
                            store, Path(tmp) / f"week-{w}", now=end, honest_after_days=args.honest_after,
                            budget=args.budget, sim_events=args.sim_events if add_sim else 0,
                            seed=args.seed, epochs=args.epochs, version=f"week-{w + 1}", log=lambda m: None)
                    key = f"{args.budget:g}"
                    new = card["validation"]["challenger"]["at_budget"][key]["recall"] or 0.0
                    old = card["validation"]["model_in_force"]["at_budget"][key]["recall"] or 0.0
                    # The promotion gate's rule (centre/comparison.py): not clearly worse on the same frauds.
                    verdict = card["validation"]["paired"][key]["verdict"]
                    if verdict != "worse":
                        champion = FraudModel.load(Path(tmp) / f"week-{w}" / "counterguard-fleet.tflite")
                        champion_name = champion.version
                        promoted = f"{champion_name} ({new:.0%} vs {old:.0%} on validation: {verdict})"
                    else:
                        promoted = f"kept ({new:.0%} vs {old:.0%}: clearly worse)"
                except learning.LearningError as exc:
                    promoted = f"not yet: {str(exc)[:60]}"
            rows.append({"week": w + 1, "events": len(idx), "fraud": int(y.sum()), "model": mine, "bundled": theirs,
                         "rules": rules, "in_force": in_force, "next": promoted})
            print(f"week {w + 1}: {json.dumps({k: v for k, v in rows[-1].items() if k in ('model', 'rules')})}",
                  file=sys.stderr, flush=True)
        top = None
        if not args.no_ceiling and last >= 4:
            with contextlib.redirect_stdout(sys.stderr):
                top = ceiling(data, weeks, last, args.budget, args.epochs, args.seed)

    pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    print(f"Machine: {platform.machine()}, {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{date.today().isoformat()}; {time.monotonic() - t0:.0f} s. World: {args.world}, {args.gateways} "
          f"gateway(s), {len(data.labels):,} events ({data.labels.mean():.2%} fraud); budget {args.budget:.1%}; "
          f"{args.report_share:.0%} of missed frauds reported {args.report_delay} weeks later; unlabelled counts "
          f"as honest after {args.honest_after:g} days.\n")
    print(f"| week | events (fraud) | model in force | recall at {args.budget:.1%} budget: loop / bundled | "
          "honest alerted: loop / rule book | recall alerted: loop / rule book | red precision: loop | after the week |")
    print("|---:|---:|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['week']} | {r['events']:,} ({r['fraud']}) | {r['in_force']} | {pct(r['model']['recall_at_budget'])} / "
              f"{pct(r['bundled']['recall_at_budget'])} | {pct(r['model']['honest_alerted'])} / "
              f"{pct(r['rules']['honest_alerted'])} | {pct(r['model']['recall_alerted'])} / "
              f"{pct(r['rules']['recall_alerted'])} | {pct(r['model']['red_precision'])} | {r['next'] or '-'} |")
    if top is not None:
        tail = [r["model"]["recall_at_budget"] for r in rows[-2:] if r["model"]["recall_at_budget"] is not None]
        print(f"\nCeiling: the same network trained on weeks 1-{last - 2} with every true label reaches "
              f"{top:.1%} recall at the {args.budget:.1%} budget on weeks {last - 1}-{last}; the loop's model in "
              f"force reaches {np.mean(tail):.1%} there (mean of the two weeks).")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.6))
        x = [r["week"] for r in rows]
        for key, name in (("model", "model in force (learning loop)"), ("bundled", "bundled model")):
            ax.plot(x, [r[key]["recall_at_budget"] for r in rows], marker="o", label=name)
        ax.plot(x, [r["rules"]["recall_alerted"] for r in rows], marker="s", linestyle="--", label="rule book (all it alerts)")
        if top is not None:
            ax.axhline(top, color="grey", linestyle=":", label="ceiling (all true labels)")
        ax.set_xlabel("week")
        ax.set_ylabel(f"fraud caught at {args.budget:.1%} of honest alerted")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title(f"Learning from its own outcomes: {args.world} world")
        fig.tight_layout()
        fig.savefig(args.plot)


if __name__ == "__main__":
    main()
