"""Cold start on schema-v1 fields: does a model trained across many simulated branches, each with its
own habits, do better on a branch it never saw than the bundled model trained on one?

It trains a challenger with ``counterguard.models.train`` across ``--worlds`` randomized branches
(``counterguard.models.simulate.simulate_worlds``: each draws its own typology mix and fraud rate,
amounts, teller-flag and purpose habits, payee data and missing fields) and judges it next to the
bundled model and the rule book on three sets neither trained on:

- **held-out worlds**: 16 randomized branches drawn for another seed (``HELD_OUT_SEED``);
- **shifted branch**: ``SHIFTED``, the seeds of ``counterguard evaluate``;
- **independent branch**: models/independent.py, the seeds of ``counterguard evaluate``; a second
  generator written apart from the simulator, used only to judge.

Each at alert budgets of 0.5, 1 and 2 % of honest customers (score cut, ties not let in), and at the
model's own thresholds (fraud alerted, honest alerted, red precision), with alerted shares by
typology and the number of events behind each::

    python -m counterguard.models.cold_start --out /tmp/cold-start     # about 7 minutes on 2 cores

It writes OUT/table.md and OUT/cold-start.json and prints the table (models/README.md, "Cold
start"). A challenger already in OUT with the same seed, events and worlds is judged, not retrained.
Needs the ``train`` extra (TensorFlow).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

WORLDS = 480
EVENTS = 2_400_000      # 5,000 events (about 17 branch days) a world
HELD_OUT_SEED = 8       # the held-out worlds' seed; never a training seed here
HELD_OUT_WORLDS = 16
HELD_OUT_EVENTS = 160_000
JUDGED_EVENTS = 60_000  # shifted and independent sets, as counterguard evaluate judges them
BUDGETS = ("0.005", "0.01", "0.02")


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def judge(model, sets: dict) -> dict:
    """Model and rule-book metrics of one model on each named set of ``(name, items)`` branches."""
    from counterguard.models.evaluate import Scored, model_metrics, rulebook_metrics

    out = {}
    for key, branches in sets.items():
        data = Scored.concat([Scored(name, items, model, model.thresholds) for name, items in branches], key)
        out[key] = {"model": model_metrics(data), "rule_book": rulebook_metrics(data)}
    return out


def table(results: dict) -> str:
    """Markdown: one block of rows per set, the rule book then each model; then typologies per set."""
    lines = ["| set | who | fraud (events) | " + " | ".join(f"fraud alerted at {_pct(float(b))}" for b in BUDGETS)
             + " | fraud alerted | honest alerted | red precision | average precision |",
             "|---|---|---|" + "---|" * (len(BUDGETS) + 4)]
    first = next(iter(results.values()))
    for key in first:
        for who, per_set in (("rule book", first[key]["rule_book"]),
                             *((name, res[key]["model"]) for name, res in results.items())):
            m = per_set
            lines.append(f"| {key} | {who} | {m['fraud_events']} ({m['events']:,}) | "
                         + " | ".join(_pct(m["recall_at_legit_share"][b]) for b in BUDGETS)
                         + f" | {_pct(m['recall_alerted'])} | {_pct(m['legit_alerted_share'])} "
                           f"| {_pct(m['red_precision'])} | {m['average_precision']:.3f} |")
    for key in first:
        rule = first[key]["rule_book"]
        names = list(results)
        budgets = ", ".join(_pct(float(b)) for b in BUDGETS)
        lines += ["", f"Alerted share by typology, {key} (fraud typologies first; model columns at {budgets} "
                      "of honest customers alerted, then at its thresholds):", "",
                  "| typology | events | rule book | " + " | ".join(
                      f"{n} at {_pct(float(b))}" for n in names for b in BUDGETS) + " | "
                  + " | ".join(f"{n} at thresholds" for n in names) + " |",
                  "|---|---|---|" + "---|" * (len(names) * (len(BUDGETS) + 1))]
        kinds = rule["fraud_typologies"] + [t for t in rule["events_by_typology"] if t not in rule["fraud_typologies"]]
        for t in kinds:
            cells = [_pct(results[n][key]["model"]["alerted_share_by_typology_at_legit_share"][b].get(t))
                     for n in names for b in BUDGETS]
            cells += [_pct(results[n][key]["model"]["alerted_share_by_typology"].get(t)) for n in names]
            lines.append(f"| {t}{' (fraud)' if t in rule['fraud_typologies'] else ''} | "
                         f"{rule['events_by_typology'][t]:,} | {_pct(rule['alerted_share_by_typology'].get(t))} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m counterguard.models.cold_start", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the challenger model and the table")
    p.add_argument("--seed", type=int, default=7, help="training seed (default 7)")
    p.add_argument("--worlds", type=int, default=WORLDS, help=f"randomized training branches (default {WORLDS})")
    p.add_argument("--events", type=int, default=EVENTS, help=f"simulated training events in all (default {EVENTS})")
    p.add_argument("--model", type=Path, action="append", default=[], metavar="FILE.tflite",
                   help="judge another model as well (repeatable)")
    args = p.parse_args(argv)
    if args.seed == HELD_OUT_SEED:
        p.error(f"--seed {HELD_OUT_SEED} draws the held-out worlds; train with another seed")

    from counterguard.gateway.scoring.model import FraudModel, default_model_path
    from counterguard.models.evaluate import INDEPENDENT_SEEDS
    from counterguard.models.independent import independent_branch
    from counterguard.models.simulate import SHIFTED, SHIFTED_SEEDS, simulate, simulate_worlds

    challenger = args.out / "counterguard-v1.tflite"
    card = args.out / "counterguard-v1.json"
    trained = json.loads(card.read_text()) if card.exists() else {}
    if (trained.get("seed"), trained.get("events"), trained.get("worlds")) != (args.seed, args.events, args.worlds):
        from counterguard.models.train import train

        print(f"training across {args.worlds} worlds ({args.events} events)", file=sys.stderr)
        train(args.seed, args.events, args.out, worlds=args.worlds, log=lambda *_: None)

    per = lambda seeds: JUDGED_EVENTS // len(seeds)  # noqa: E731
    sets = {
        "held-out worlds": simulate_worlds(HELD_OUT_SEED, HELD_OUT_WORLDS, HELD_OUT_EVENTS),
        "shifted": [(f"shifted {s}", simulate(s, per(SHIFTED_SEEDS), config=SHIFTED)) for s in SHIFTED_SEEDS],
        "independent": [(f"independent {s}", independent_branch(s, per(INDEPENDENT_SEEDS))) for s in INDEPENDENT_SEEDS],
    }
    models = {"bundled": default_model_path(), f"{args.worlds} worlds": challenger}
    models.update({path.stem if path.stem not in models else str(path): path for path in args.model})
    results = {}
    for name, path in models.items():
        print(f"judging {name} ({path})", file=sys.stderr)
        results[name] = judge(FraudModel.load(path), sets)
    text = table(results)
    (args.out / "table.md").write_text(text, encoding="utf-8")
    (args.out / "cold-start.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
