"""What the lists of persons cost a gateway: memory for a million entries, a lookup on the counter's
path, a delta and a full list applied, and reading the list back at start. Results go in
docs/benchmarks.md ("Lists of persons").

    .venv/bin/python bench/person_lists.py [--entries 1000000] [--lookups 200000] [--delta 10000]

The full list is applied as the centre sends it: numbered parts of core.lists.MAX_PER_MANIFEST
entries, one version. Memory is the process's resident size after the list is read back from the
store at start, against before (a fresh PersonLists, as after a restart), and at its peak while a
delta is applied.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from counterguard.core.lists import MAX_PER_MANIFEST, WARNED, WARNED_CATEGORIES
from counterguard.gateway.scoring.person_lists import PersonLists
from counterguard.gateway.store.db import Store


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    try:  # Linux: writing 5 resets the peak resident size to the current one
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def entries(rng: random.Random, n: int) -> list:
    today = date.today()
    out = []
    for _ in range(n):
        start = today - timedelta(days=rng.randrange(0, 60))
        out.append([rng.randbytes(32).hex(), rng.choice(WARNED_CATEGORIES), start.isoformat(),
                    (today + timedelta(days=rng.randrange(30, 365))).isoformat()])  # all in force today
    return out


def read_back(path: str) -> None:
    """Print [seconds, MB added] for reading the lists back from the store at ``path``."""
    with Store(path) as store:
        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        lists = PersonLists(store)
        took = time.perf_counter() - t
        gc.collect()
        print(json.dumps([took, rss_mb() - before]))
        del lists


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--read-back", metavar="STORE", help=argparse.SUPPRESS)
    ap.add_argument("--entries", type=int, default=1_000_000, help="entries in the list")
    ap.add_argument("--lookups", type=int, default=200_000, help="lookups timed (half hits, half misses)")
    ap.add_argument("--delta", type=int, default=10_000, help="entries in the delta (half added, half removed)")
    args = ap.parse_args()
    if args.read_back:
        return read_back(args.read_back)
    rng = random.Random(18)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gateway.db"
        listed = entries(rng, args.entries)
        with Store(path) as store:
            lists = PersonLists(store)
            parts = [listed[i:i + MAX_PER_MANIFEST] for i in range(0, len(listed), MAX_PER_MANIFEST)] or [[]]
            t = time.perf_counter()
            for n, part in enumerate(parts, 1):
                lists.apply(WARNED, {"version": 1, "full": True, "add": part, "part": n, "parts": len(parts)})
            rows.append((f"full list of {args.entries:,} in {len(parts)} parts applied",
                         f"{time.perf_counter() - t:.1f} s"))
        hashes = [e[0] for e in listed]
        del lists, listed
        gc.collect()
        # Memory as a gateway starting up sees it: a fresh process, the list read back from its store.
        fresh = subprocess.run([sys.executable, __file__, "--read-back", str(path)], capture_output=True, text=True,
                               check=True)
        load_s, held = json.loads(fresh.stdout)
        rows.append(("read back at start", f"{load_s:.2f} s"))
        rows.append(("memory added, list in force (a fresh process)", f"{held:.1f} MB"))
        with Store(path) as store:
            lists = PersonLists(store)
            today = date.today().toordinal()
            probe = [rng.choice(hashes) if i % 2 else rng.randbytes(32).hex() for i in range(args.lookups)]
            match = lists.match
            found = 0
            t = time.perf_counter()
            for h in probe:
                found += match(WARNED, h, today) is not None
            per = (time.perf_counter() - t) / max(1, len(probe))
            assert found == len(probe) // 2, f"{found} of the {len(probe) // 2} listed hashes matched"
            rows.append((f"lookup (mean of {len(probe):,}, half on the list)", f"{per * 1e6:.2f} µs"))
            half = args.delta // 2
            add = entries(rng, half)
            remove = rng.sample(hashes, min(half, len(hashes)))
            reset_peak()
            base = rss_mb()
            t = time.perf_counter()
            result = lists.apply(WARNED, {"version": 2, "full": False, "base_version": 1, "add": add, "remove": remove})
            rows.append((f"delta of {args.delta:,} (+{len(add):,} -{len(remove):,}) applied",
                         f"{(time.perf_counter() - t) * 1e3:.0f} ms"))
            rows.append(("memory peak above the list in force while applying", f"{peak_mb() - base:.1f} MB"))
            assert result.size == args.entries, result
            # The same size of change as the centre sends it: messages of at most MAX_PER_MANIFEST entries.
            gone = set(remove)
            add2 = entries(rng, half)
            remove2 = rng.sample([h for h in hashes if h not in gone], min(half, len(hashes) - len(gone)))
            pieces = [(add2[i:i + MAX_PER_MANIFEST], []) for i in range(0, len(add2), MAX_PER_MANIFEST)]
            pieces += [([], remove2[i:i + MAX_PER_MANIFEST]) for i in range(0, len(remove2), MAX_PER_MANIFEST)]
            t = time.perf_counter()
            for n, (a, r) in enumerate(pieces):
                lists.apply(WARNED, {"version": 3 + n, "full": False, "base_version": 2 + n, "add": a, "remove": r})
            rows.append((f"another {args.delta:,} as {len(pieces)} signed deltas of at most {MAX_PER_MANIFEST:,}, "
                         "applied in turn", f"{(time.perf_counter() - t) * 1e3:.0f} ms"))
    print(f"| lists of persons, {args.entries:,} entries | result |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
