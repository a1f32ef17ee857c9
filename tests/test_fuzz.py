"""Fuzzing in every test run: each crash ever found is replayed, and the frame decoder, the event
validator and the whole counter path (decoder, validation, SQLite store, model, replies) get a short
coverage-guided fuzz run (atheris) that stops by itself.

A new crash lands in fuzz/regressions/ (named ``wire-crash-...``, ``events-crash-...`` or
``counter-crash-...``); commit it and the replay test keeps it fixed for ever after.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FUZZ = REPO / "fuzz"
REGRESSIONS = FUZZ / "regressions"
TARGETS = ("wire", "events", "counter")
# Seconds of fuzzing per target on each run; FUZZ_SECONDS=600 for a longer hunt by hand.
SECONDS = int(os.environ.get("FUZZ_SECONDS", "10"))


def harness(target: str):
    spec = importlib.util.spec_from_file_location(f"fuzz_{target}", FUZZ / f"fuzz_{target}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def regressions(target: str) -> list[Path]:
    return sorted(p for p in REGRESSIONS.glob(f"{target}-*") if p.is_file())


def test_every_saved_crash_is_replayed_and_now_handled():
    replayed = 0
    for target in TARGETS:
        check = harness(target).check
        for case in regressions(target):
            check(case.read_bytes())  # raises, naming the promise broken, if the bug is back
            replayed += 1
    # The cases found so far: a deeply nested payload, a NAK quoting a kilobyte of junk, a
    # 400-digit amount, a deeply nested event field, an event_id that is half a surrogate pair
    # (it used to end the counter line's thread). None may go missing.
    assert replayed >= 5 and len(list(REGRESSIONS.iterdir())) == replayed


def test_the_seed_corpora_start_from_good_frames_and_accepted_events():
    from counterguard.core import wire
    from counterguard.core.events import parse_event

    frames = [item for seed in (FUZZ / "corpus" / "wire").iterdir()
              for item in wire.FrameDecoder().feed(seed.read_bytes()[1:]) if isinstance(item, wire.Frame)]
    assert {"EVT", "HB", "ACK"} <= {f.type for f in frames}
    seeds = sorted((FUZZ / "corpus" / "events").iterdir())
    assert seeds
    for seed in seeds:
        parse_event(json.loads(seed.read_bytes()))  # each one a good event, the fuzzer's starting point
        harness("events").check(seed.read_bytes())
    counter = sorted((FUZZ / "corpus" / "counter").iterdir())
    assert {"lone-surrogate-event-id.json", "red-intercept.json"} <= {p.name for p in counter}
    for seed in counter:
        harness("counter").check(seed.read_bytes())


def test_a_counter_line_answers_every_frame_of_a_poisoned_stream_and_the_next_good_one():
    """The whole-path promise on the frame that used to end the line's thread, on its own and
    inside a burst of noise: one reply per frame, the good events after it ACKed."""
    check = harness("counter").check
    poison = (REGRESSIONS / "counter-lone-surrogate-event-id").read_bytes()
    check(poison)
    check(b"$EVT 9 " + poison + b"*00000000\n$$$\n" + poison + b"\x00\xff" * 40)


@pytest.mark.parametrize("target", TARGETS)
def test_a_bounded_coverage_guided_fuzz_run_finds_no_crash(target, tmp_path):
    pytest.importorskip("atheris", reason="atheris has wheels for x86_64 Linux only")
    before = set(regressions(target))
    corpus = tmp_path / "corpus"  # new inputs go here, not into the checked-in seeds
    corpus.mkdir()
    run = subprocess.run(
        [sys.executable, str(FUZZ / f"fuzz_{target}.py"), str(corpus), str(FUZZ / "corpus" / target),
         f"-max_total_time={SECONDS}", "-timeout=20", "-rss_limit_mb=2048", "-print_final_stats=1",
         f"-artifact_prefix={REGRESSIONS}/{target}-"],
        capture_output=True, text=True, timeout=SECONDS + 120, cwd=REPO)
    found = sorted(set(regressions(target)) - before)
    assert run.returncode == 0 and not found, (
        f"fuzzing {target} found a crash, saved as {[str(p) for p in found]}; commit it and fix the bug\n"
        + run.stderr[-4000:])
    runs = [line for line in run.stderr.splitlines() if line.startswith("Done ")]
    assert runs and int(runs[-1].split()[1]) > 100, run.stderr[-2000:]
