"""What a bank's own labelled events buy: train on "history" from branches unlike the training
simulator, judge on an unseen branch of the same kind.

The independent generator (models/independent.py) stands in for a bank whose branches differ from
the simulator the bundled model learnt from. Its seeds 21, 22, ... play the bank's labelled
history (what ``counterguard export-events --labelled`` would give, every fraud labelled); its
evaluation seeds (11, 12, 13, as in ``counterguard evaluate``) play next month's branch. For each
amount of history the study trains two models with ``counterguard.models.train`` - on the cases alone, and on
the simulator plus the cases - and judges them next to the bundled model and the rule book::

    python -m counterguard.models.cases_study --out /tmp/cases-study          # about 5 minutes on 2 cores

It writes a Markdown table to OUT/table.md and prints it at the end (models/README.md, "What a
bank's own events buy"). The evaluation
seeds never train anything. Needs the ``train`` extra (TensorFlow).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HISTORY_SEEDS = (21, 22, 23, 24)
HISTORY_EVENTS = 60_000  # per seed: about 200 branch days each
SIZES = (1, 2, 4)        # history seeds used, i.e. 60,000 / 120,000 / 240,000 events


def row(name: str, data, metrics) -> str:
    m = metrics(data)
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    return (f"| {name} | {pct(m['recall_alerted'])} | {pct(m['legit_alerted_share'])} | {pct(m['red_precision'])} "
            f"| {m['average_precision']:.3f} | {pct(m['recall_at_legit_share']['0.01'])} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m counterguard.models.cases_study", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="working folder for the cases files and models")
    p.add_argument("--events", type=int, default=60_000, help="events in the judged branch (default 60000)")
    args = p.parse_args(argv)

    from counterguard.gateway.scoring.model import FraudModel, default_model_path
    from counterguard.models.cases import write_cases
    from counterguard.models.evaluate import independent_set, model_metrics, rulebook_metrics
    from counterguard.models.independent import independent_branch
    from counterguard.models.train import EVENTS, train

    args.out.mkdir(parents=True, exist_ok=True)
    history = []
    for seed in HISTORY_SEEDS[:max(SIZES)]:
        path = args.out / f"history-{seed}.jsonl"
        write_cases(independent_branch(seed, HISTORY_EVENTS), path)
        history.append(path)

    bundled = FraudModel.load(default_model_path())
    judged = independent_set(bundled, bundled.thresholds, args.events)
    lines = ["| model | fraud alerted | legitimate alerted | red precision | average precision | fraud alerted at 1 % |",
             "|---|---|---|---|---|---|",
             row("rule book", judged, rulebook_metrics),
             row("bundled (simulator only)", judged, model_metrics)]
    quiet = lambda *_: None  # noqa: E731
    for size in SIZES:
        cases = history[:size]
        for label, n_sim in (("cases only", 0), ("simulator + cases", EVENTS)):
            folder = args.out / f"{size}-{'cases' if not n_sim else 'mixed'}"
            train(7, n_sim, folder, cases=cases, log=quiet)
            model = FraudModel.load(folder / "counterguard-v1.tflite")
            data = independent_set(model, model.thresholds, args.events)
            lines.append(row(f"{label}, {size * HISTORY_EVENTS:,} labelled events", data, model_metrics))
        print(f"trained on {size} history branch(es)", file=sys.stderr)
    table = "\n".join(lines) + "\n"
    (args.out / "table.md").write_text(table, encoding="utf-8")
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
