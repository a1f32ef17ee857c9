"""Fraud model benchmark: how long one counter event's score takes on this machine.

Times ``FraudModel.score`` (standardise, quantise, invoke the int8 TFLite model, read the score) on
simulated counter events, and the same plus ``event_features`` (what the gateway adds per event
before the store). Real parts: the bundled model in the installed TFLite runtime.

    .venv/bin/python bench/model.py [--events 20000] [--rounds 5]

Prints a Markdown table for the "Fraud model" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine_info import cpu_name  # noqa: E402


def timings(fn, inputs, rounds: int) -> np.ndarray:
    """Per-call wall time in microseconds, each call timed on its own (so p99 shows the tail)."""
    clock = time.perf_counter_ns
    out = []
    for _ in range(rounds):
        for item in inputs:
            t0 = clock()
            fn(item)
            out.append(clock() - t0)
    return np.asarray(out, np.float64) / 1000.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=20_000, help="simulated events to score (default 20000)")
    p.add_argument("--rounds", type=int, default=5, help="passes over them (default 5)")
    args = p.parse_args(argv)

    from counterguard.core.features import event_features
    from counterguard.gateway.scoring.model import FraudModel, default_model_path
    from counterguard.models.simulate import simulate
    from counterguard.models.train import replay_items

    model = FraudModel.load(default_model_path())
    pairs = [(event, history) for event, history, _ in replay_items(simulate(11, args.events))]
    rows = [event_features(e, h) for e, h in pairs]
    for row in rows[:2000]:  # warm up caches and the interpreter
        model.score(row)
    score = timings(model.score, rows, args.rounds)
    full = timings(lambda pair: model.score(event_features(*pair)), pairs, args.rounds)

    def line(name, t):
        return (f"| {name} | {len(t):,} | {np.percentile(t, 50):.1f} | {np.percentile(t, 99):.1f} | "
                f"{np.percentile(t, 99.9):.1f} | {t.max():.0f} |")

    print(f"Model {model.name} {model.version} ({default_model_path().stat().st_size:,} bytes, {model.runtime}), "
          f"{cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {date.today().isoformat()}")
    print()
    print("| step | calls | p50 (us) | p99 (us) | p99.9 (us) | max (us) |")
    print("|---|---|---|---|---|---|")
    print(line("`FraudModel.score` (standardise, quantise, int8 invoke)", score))
    print(line("`event_features` + `FraudModel.score`", full))
    return 0


if __name__ == "__main__":
    sys.exit(main())
