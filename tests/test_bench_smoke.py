"""Every benchmark in bench/ still runs as docs/benchmarks.md says, on tiny counts.

A documented reproduction that no longer starts is worse than none: these run each script the way
a reader would (``python bench/X.py``, from the repository) and check it finishes and prints its
table. The figures themselves are not judged here; that is what the benchmarks are for.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUNS = {
    "alert_burst.py": ["--alerts", "50", "--rounds", "1"],
    "centre.py": ["--alerts", "200", "--publishers", "1", "--dashboard-alerts", "10", "--repeat", "1"],
    "cluster.py": ["--gateways", "3", "--alerts", "1", "--gap-s", "1"],
    "counter_kinds.py": ["--frames", "20", "--list-entries", "100"],
    "drain.py": ["--alerts", "200"],
    "firmware.py": ["--burst", "20", "--capacity", "10"],
    "history.py": ["--busy", "5,50", "--others", "100", "--lookups", "10"],
    "intake.py": ["--alerts", "200", "--workers", "1", "--gateways", "5"],
    "fleet.py": ["--gateways", "10", "--processes", "1", "--per-gateway", "1", "--outage-s", "0.5", "--timeout", "60"],
    "learn_sim.py": ["--weeks", "2", "--per-week", "2100", "--gateways", "1", "--epochs", "1", "--no-ceiling"],
    "learning.py": ["--events", "1000", "--batch", "200"],
    "model.py": ["--events", "500", "--rounds", "1"],
    "person_lists.py": ["--entries", "2000", "--lookups", "1000", "--delta", "200"],
    # --lines-only: scoring.py, publish.py and drain.py, which it runs after at full size, have their own runs here
    "peers.py": ["--lines", "100", "--outage-lines", "50", "--rate", "100", "--down", "0.5", "--only", "counterguard",
                 "--lines-only"],
    "pipeline.py": ["--events", "300", "--upload-rounds", "1"],
    "publish.py": ["--messages", "300", "--repeat", "1"],
    "scoring.py": ["--events", "300", "--rounds", "1"],
    "security.py": ["--entries", "1000", "--lookups", "1000", "--bundles", "1"],
    "storm.py": ["--gateways", "3", "--processes", "1", "--stagger-s", "1", "--down-s", "1", "--timeout", "120"],
    "supervisor.py": ["--verdicts", "300", "--alerts", "10"],
    "user_lookup.py": ["--users", "20", "--probes", "5"],
}


def test_every_benchmark_script_has_a_smoke_run():
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")} - {"machine_info.py"}
    assert scripts == set(RUNS)


@pytest.mark.parametrize("script", sorted(RUNS))
def test_benchmark_runs_on_tiny_counts(script):
    done = subprocess.run([sys.executable, f"bench/{script}", *RUNS[script]], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "|" in done.stdout, done.stdout[-2000:]  # each prints a Markdown table for docs/benchmarks.md
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
