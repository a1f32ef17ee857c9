"""Times one scoring runtime on the rows in a .npz written by bench/scoring.py, in a process of its
own so its peak memory is its own. Prints one JSON object.

    python bench/peers/score_worker.py tflite|numpy|onnxruntime DATA.npz [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))


NOT_WEIGHTS = ("rows", "tflite_scores", "thresholds")


def level(scores, thresholds) -> np.ndarray:
    """0 green, 1 amber, 2 red, as counterguard.core.decision draws the lines (score >= threshold)."""
    amber, red = thresholds
    return np.where(scores >= red, 2, np.where(scores >= amber, 1, 0))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("runtime", choices=["tflite", "numpy", "onnxruntime"])
    p.add_argument("data")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    data = np.load(args.data)
    rows = [np.asarray(r, np.float64) for r in data["rows"]]
    base = rss_mb()
    if args.runtime == "tflite":
        from counterguard.gateway.scoring.model import FraudModel, default_model_path

        model = FraudModel.load(default_model_path())
        score, version = model.score, f"{model.runtime}"
    elif args.runtime == "numpy":
        from reference import NumpyScorer

        weights = {k: data[k] for k in data.files if k not in NOT_WEIGHTS}
        score, version = NumpyScorer(weights).score, f"numpy {np.__version__}"
    else:
        import onnxruntime as ort
        from reference import onnx_model

        weights = {k: data[k] for k in data.files if k not in NOT_WEIGHTS}
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one counter event at a time: threads only add hand-offs
        session = ort.InferenceSession(onnx_model(weights), options, providers=["CPUExecutionProvider"])
        feed = np.zeros((1, len(rows[0])), np.float32)

        def score(row):
            feed[0] = row
            return float(session.run(None, {"features": feed})[0][0, 0])

        version = f"onnxruntime {ort.__version__}"
    loaded = rss_mb()
    scores = np.array([score(r) for r in rows])
    clock = time.perf_counter_ns
    times = []
    for _ in range(args.rounds):
        for r in rows:
            t0 = clock()
            score(r)
            times.append(clock() - t0)
    t = np.asarray(times, np.float64) / 1000.0
    diff = np.abs(scores - data["tflite_scores"])
    differs = int(np.sum(level(scores, data["thresholds"]) != level(data["tflite_scores"], data["thresholds"])))
    print(json.dumps({"runtime": args.runtime, "version": version, "calls": len(t),
                      "p50_us": float(np.percentile(t, 50)), "p99_us": float(np.percentile(t, 99)),
                      "max_abs_diff": float(diff.max()), "level_differs": differs, "events": len(rows), "mean_abs_diff": float(diff.mean()),
                      "rss_start_mb": base, "rss_loaded_mb": loaded, "rss_peak_mb": rss_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
