"""The gateway's scoring path against the same model in other runtimes: per-score p50/p99 and peak
memory for ``FraudModel.score`` (the bundled int8 .tflite in LiteRT), the same weights as an ONNX
graph in onnxruntime, and the same weights in plain numpy (float32). Each runtime runs in a process
of its own on the same feature rows of simulated counter events; onnxruntime runs from the peers
venv (bench/.venv-peers), never the product's.

    .venv/bin/python bench/scoring.py [--events 5000] [--rounds 3]

Prints a Markdown table for the "Peers, side by side" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "peers"))

from peerenv import machine_line, peers_python  # noqa: E402

WORKER = ROOT / "bench" / "peers" / "score_worker.py"


def prepare(path: Path, events: int) -> str:
    """Feature rows of simulated events, the TFLite scores for them, and the model's weights."""
    from counterguard.core.features import event_features
    from counterguard.gateway.scoring.model import FraudModel, default_model_path
    from counterguard.models.simulate import simulate
    from counterguard.models.train import replay_items
    from reference import extract_weights

    model = FraudModel.load(default_model_path())
    rows = np.array([event_features(e, h) for e, h, _ in replay_items(simulate(11, events))], np.float64)
    scores = np.array([model.score(r) for r in rows])
    np.savez(path, rows=rows, tflite_scores=scores, thresholds=np.array([model.thresholds.amber, model.thresholds.red]),
             **extract_weights(model.path, model.manifest))
    return f"model {model.name} {model.version} ({model.path.stat().st_size:,} bytes, {rows.shape[1]} features)"


def run(python, runtime: str, data: Path, rounds: int) -> dict:
    out = subprocess.run([str(python), str(WORKER), runtime, str(data), "--rounds", str(rounds)],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        return {"runtime": runtime, "error": (out.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    lines = ["| scoring path | calls | p50 | p99 | largest score difference from the gateway's | verdict level differs | "
             "peak RSS of the process |", "|---|---:|---:|---:|---:|---:|---:|"]
    names = {"tflite": "gateway: `FraudModel.score`, int8 .tflite", "numpy": "same weights, plain numpy float32",
             "onnxruntime": "same weights as ONNX, onnxruntime (1 thread)"}
    for r in results:
        if "error" in r:
            lines.append(f"| {names[r['runtime']]} | did not run: {r['error']} | | | | | |")
            continue
        diff = "-" if r["runtime"] == "tflite" else f"{r['max_abs_diff']:.4f} (mean {r['mean_abs_diff']:.4f})"
        levels = "-" if r["runtime"] == "tflite" else f"{r['level_differs']:,} of {r['events']:,} events"
        lines.append(f"| {names[r['runtime']]} ({r['version']}) | {r['calls']:,} | {r['p50_us']:.1f} µs | "
                     f"{r['p99_us']:.1f} µs | {diff} | {levels} | {r['rss_peak_mb']:.0f} MB |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=5000, help="simulated events to score")
    p.add_argument("--rounds", type=int, default=3, help="passes over them")
    args = p.parse_args(argv)
    peers = peers_python()
    with tempfile.TemporaryDirectory(prefix="counterguard-scoring-") as tmp:
        data = Path(tmp) / "rows.npz"
        described = prepare(data, args.events)
        results = [run(sys.executable, "tflite", data, args.rounds), run(sys.executable, "numpy", data, args.rounds),
                   run(peers, "onnxruntime", data, args.rounds)]
    print(f"Machine: {machine_line()}. {described}; {args.events:,} simulated events x {args.rounds} rounds, each call timed on its own.\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
