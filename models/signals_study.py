"""What each counter signal is worth: the model and the rule book with v1 fields only, with the lists
of persons, with the customer's answers, and with both, on worlds the model never trained on.

    python -m counterguard.models.signals_study [--model PATH] [--events 60000] [--json out.json]

One model judged four ways: a counter whose terminal sends no identity and no answers sees those
signals as absent (core/features.py), so the same model file serves all four, and the "v1 only"
row is what a gateway without v2 terminals gets. Each row gives the final verdict's fraud alerted
at 0.5, 1 and 2 % of honest customers alerted (the teller asks the caring questions at amber and
the answers re-score the event: models/train.py ``two_stage``), the red precision at the model's
own thresholds, and the coached victims apart (victims told by the fraudster to hide the signs).
The numbers of fraud events and coached victims behind each figure are printed with it. Rows
with the answers use the model's dialogue thresholds (the tellers ask at amber and the answers
clear most), rows without them its first-verdict thresholds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.models.evaluate import (
    INDEPENDENT_SEEDS,
    Scored,
    coached_metrics,
    level_metrics,
    level_ranking,
    pct,
)
from counterguard.models.simulate import SHIFTED, SHIFTED_SEEDS, simulate

VARIANTS = (("v1 only", False, False), ("+ lists", True, False), ("+ answers", False, True), ("+ both", True, True))
BUDGETS = ("0.005", "0.01", "0.02")


def sets(events: int) -> dict:
    """The judged worlds' items: the independent branch and the shifted simulated branch."""
    from counterguard.models.independent import independent_branch

    per = max(1, events // 3)
    return {"independent": [(f"independent seed {s}", independent_branch(s, per)) for s in INDEPENDENT_SEEDS],
            "shifted": [(f"shifted seed {s}", simulate(s, per, config=SHIFTED)) for s in SHIFTED_SEEDS]}


def _row(levels, data: Scored, ranking) -> dict:
    m = level_metrics(levels, data.labels, data.typologies, ranking)
    fraud_kinds = m["fraud_typologies"]
    return {
        "fraud_events": m["fraud_events"],
        "recall_at_legit_share": {b: m["recall_at_legit_share"][b] for b in BUDGETS},
        "recall_alerted": m["recall_alerted"],
        "legit_alerted_share": m["legit_alerted_share"],
        "red_precision": m["red_precision"],
        "reds": int((levels == "red").sum()),
        "coached_victims": coached_metrics(levels, data, ranking),
        "by_typology_at_1pct": {name: m["alerted_share_by_typology_at_legit_share"]["0.01"][name] for name in fraud_kinds},
        "fraud_by_typology": {name: int(((data.typologies == name) & (data.labels == 1)).sum()) for name in fraud_kinds},
    }


def study(model: FraudModel, items_by_set: dict, progress=lambda line: None) -> dict:
    out = {}
    for set_name, parts in items_by_set.items():
        rows = {}
        for label, lists, answers in VARIANTS:
            progress(f"{set_name}: {label}")
            # With the answers the tellers ask at amber and the re-score decides: the dialogue thresholds.
            thresholds = (model.dialogue_thresholds or model.thresholds) if answers else model.thresholds
            data = Scored.concat([Scored(name, items, model, thresholds, lists=lists, answers=answers)
                                  for name, items in parts], set_name)
            rows[f"model, {label}"] = _row(data.levels, data, data.scores)
            if label == "v1 only":
                rows["rule book, v1 only"] = _row(data.rule_first_levels, data, level_ranking(data.rule_first_levels))
            if label == "+ both":
                rows["model, + both: first verdict"] = _row(data.first_levels, data, data.first_scores)
                rows["rule book, + both"] = _row(data.rule_levels, data, level_ranking(data.rule_levels))
        out[set_name] = rows
    return out



def table(result: dict) -> str:
    lines = []
    for set_name, rows in result.items():
        any_row = next(iter(rows.values()))
        kinds = list(any_row["fraud_by_typology"])
        lines += [f"**{set_name}** ({any_row['fraud_events']} fraud events, "
                  f"{any_row['coached_victims']['events']} of them coached victims; "
                  + ", ".join(f"{k} {n}" for k, n in any_row["fraud_by_typology"].items()) + ")", "",
                  "| inputs | fraud alerted at 0.5 % | at 1 % | at 2 % | red precision (reds) | coached at 1 % | "
                  + " | ".join(f"{k} at 1 %" for k in kinds) + " |",
                  "|---|---:|---:|---:|---:|---:|" + "---:|" * len(kinds)]
        for name, r in rows.items():
            at = r["recall_at_legit_share"]
            lines.append(f"| {name} | {pct(at['0.005'])} | {pct(at['0.01'])} | {pct(at['0.02'])} | "
                         f"{pct(r['red_precision'])} ({r['reds']}) | "
                         f"{pct(r['coached_victims']['recall_at_legit_share']['0.01'])} | "
                         + " | ".join(pct(r["by_typology_at_1pct"].get(k)) for k in kinds) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m counterguard.models.signals_study", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="the .tflite to judge (default: the bundled model)")
    p.add_argument("--events", type=int, default=60_000, help="events per judged world, shared by its seeds (default 60000)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON to this file")
    args = p.parse_args(argv)
    if args.events < 3000:
        p.error("--events must be at least 3000 so each seed holds some fraud")
    model = FraudModel.load(args.model or default_model_path())
    result = study(model, sets(args.events), progress=lambda line: print(line, file=sys.stderr))
    print(f"model {model.name} {model.version} (amber {model.thresholds.amber:.4f}, red {model.thresholds.red:.4f})\n")
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps({"model": {"name": model.name, "version": model.version, "sha256": model.sha256},
                                         "events": args.events, "sets": result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
