"""``counterguard evaluate``: judge a model on the later part of time and on a shifted branch, next to
the rule book, with leakage checks (models/evaluate.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _evaluate(args) -> int:
    from counterguard.core.decision import Thresholds
    from counterguard.gateway.scoring.model import FraudModel, ModelError, default_model_path
    from counterguard.models.cases import CasesError, load_cases
    from counterguard.models.evaluate import evaluate, evaluate_cases, plot, report_text, targets_met

    def progress(line: str) -> None:  # a handful of lines on stderr; stdout keeps the report alone
        if not args.quiet:
            print(f"counterguard evaluate: {line} ...", file=sys.stderr, flush=True)

    if (args.amber is None) != (args.red is None):
        print("counterguard evaluate: give both --amber and --red, or neither", file=sys.stderr)
        return 2
    if args.dialogue and args.amber is not None:
        print("counterguard evaluate: --dialogue chooses the model's dialogue thresholds; it does not go with "
              "--amber and --red", file=sys.stderr)
        return 2
    for name in ("events", "shifted_events", "independent_events"):
        if getattr(args, name) is not None and getattr(args, name) < 1000:
            print(f"counterguard evaluate: --{name.replace('_', '-')} must be at least 1000 so every set "
                  "holds some fraud", file=sys.stderr)
            return 2
    if args.cases and (args.seed is not None or args.events is not None):
        print("counterguard evaluate: --seed and --events choose the simulated sets; they do not apply to --cases",
              file=sys.stderr)
        return 2
    problems = []
    try:
        model = FraudModel.load(args.model or default_model_path())
        thresholds = Thresholds(args.amber, args.red) if args.amber is not None else None
        if args.dialogue:
            if model.dialogue_thresholds is None:
                raise ValueError(f"model {model.version} has no dialogue thresholds (trained before the caring "
                                 "dialogue was a feature); judge it without --dialogue")
            thresholds = model.dialogue_thresholds
        if args.cases:
            progress(f"reading and scoring {args.cases}")
            items, problems = load_cases(args.cases)
            report, sets = evaluate_cases(model, items, thresholds=thresholds, source=args.cases)
        else:
            report, sets = evaluate(model, thresholds=thresholds, seed=args.seed, events=args.events,
                                    shifted_events=args.shifted_events, independent_events=args.independent_events,
                                    progress=progress)
    except UnicodeDecodeError:
        print(f"counterguard evaluate: {args.cases}: not a UTF-8 text file of labelled events", file=sys.stderr)
        return 2
    except (ModelError, CasesError, ValueError) as e:
        print(f"counterguard evaluate: {e}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"counterguard evaluate: {args.cases}: {problem}", file=sys.stderr)
    if problems:
        report["data"]["bad_lines"] = len(problems)
    sys.stdout.write(report_text(report))
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"counterguard evaluate: cannot write {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    if args.plot:
        try:
            plot(sets, report, args.plot)
        except ImportError:
            print("counterguard evaluate: --plot needs matplotlib (pip install 'counterguard[train]')", file=sys.stderr)
            return 2
    if problems:
        print(f"counterguard evaluate: {len(problems)} bad lines left out of the judgement", file=sys.stderr)
        return 1
    # A model that does well only because the simulator gives the answer away is no model at all.
    if "leakage" in report and not report["leakage"]["passed"]:
        print("counterguard evaluate: leakage check failed - an amount-only or shuffled-label model does well, "
              "so the simulated data gives the answer away", file=sys.stderr)
        return 1
    met, total = targets_met(report)
    if met < total and not args.no_fail:
        print(f"counterguard evaluate: {total - met} of {total} targets NOT MET (--no-fail to exit 0 anyway)",
              file=sys.stderr)
        return 1
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="judge a fraud model against the rule book on simulated branches or a bank's labelled events",
        description="Score the simulator's later days (time-ordered split), a shifted branch and an independent "
                    "branch (another generator) with the model and with the counter rule book; print recall at "
                    "amber+red, legitimate events alerted, red precision, average precision and recall by typology, "
                    "and check that an amount-only or shuffled-label model does badly (exit 1 if not). "
                    "With --cases, judge on a file of labelled events instead (counterguard export-events --labelled); "
                    "bad lines are named on stderr, left out, and make the exit code 1. A target NOT MET makes "
                    "the exit code 1 too, unless --no-fail.")
    p.add_argument("--model", metavar="FILE.tflite", help="model to judge (default: the bundled model)")
    p.add_argument("--amber", type=float, help="amber threshold to try (with --red; default: the model's)")
    p.add_argument("--red", type=float, help="red threshold to try (with --amber)")
    p.add_argument("--dialogue", action="store_true",
                   help="judge at the model's dialogue thresholds, as a branch with [thresholds] dialogue = true "
                        "(tellers ask at every amber and send the answers)")
    p.add_argument("--seed", type=int, help="simulator seed for the own test split (default: the model's training seed)")
    p.add_argument("--events", type=int, help="events simulated with that seed (default: as many as the model "
                                               "trained on, so the last 20 %% of time is unseen)")
    p.add_argument("--shifted-events", type=int, default=60_000, help="events in the shifted set (default 60000)")
    p.add_argument("--independent-events", type=int, default=60_000,
                   help="events in the independent branch (default 60000)")
    p.add_argument("--cases", metavar="FILE.jsonl",
                   help='judge on labelled events instead of simulated ones: one {"event": ..., "label": 0|1} a line, '
                        'optional "watchlisted" and "typology"')
    p.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    p.add_argument("--plot", metavar="FILE", help="also draw precision and recall against alert rate (.svg or .png)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress lines on stderr while it works (problems are still reported)")
    p.add_argument("--no-fail", action="store_true",
                   help="exit 0 even when a target is NOT MET (a report for the record, not a gate)")
    p.set_defaults(func=_evaluate)
