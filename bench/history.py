"""What an account's day costs a verdict: its history read back and summarised, for busy accounts.

Every verdict summarises the account's events of the last 24 hours (core/features.py
``summarise_history``: how many, how much, at how many other counters). A market trader's account
or a mule account worked at several counters can hold hundreds of events a day. The gateway lets
SQLite summarise them from the index (``Store.account_summary``); this bench puts that next to
reading the same rows back into Python and summarising them there (``Store.account_history`` and
``summarise_history``, what the gateway did before), on a store file with other accounts' traffic.

    .venv/bin/python bench/history.py [--busy 10,100,1000,5000] [--lookups 2000]

Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CST = timezone(timedelta(hours=8))
BUSY = "6222020200112233445"


def fill(store, busy: int, others: int, now: datetime) -> None:
    """``busy`` events of one account over the last 20 hours at four counters, and ``others`` events
    of 5,000 other accounts, written as the counter line writes them."""
    from counterguard.core.clock import Stamp
    from counterguard.core.decision import Verdict
    from counterguard.core.events import parse_event

    def record(n: int, account: str, when: datetime, counter: int, amount: float) -> None:
        ev = parse_event({"event_id": f"e{n}", "ts": when.isoformat(), "counter": counter, "kind": "cash_withdrawal",
                          "account": account, "amount": amount})
        store.record_verdict(ev, json.dumps({"event_id": ev.event_id}).encode(), f"sha-{n}",
                             Verdict(ev.event_id, "green", 0.1, (), "Proceed", counter), Stamp(time.time(), 0.0, True),
                             model_version="bench", watchlist_version=1, gateway_id="gw-bench")

    with store.batch():
        for n in range(busy):
            record(n, BUSY, now - timedelta(seconds=72_000 * (n + 1) / (busy + 1)), 1 + n % 4, 200.0 + n)
        for n in range(others):
            account = f"62220202{n % 5000:011d}"
            record(busy + n, account, now - timedelta(seconds=80_000 * (n + 1) / (others + 1)), 1 + n % 6, 50.0 + n)


def per_lookup(fn, lookups: int) -> float:
    """Median µs of one call over five timed passes of ``lookups // 5`` calls."""
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(max(1, lookups // 5)):
            fn()
        runs.append((time.perf_counter() - t0) / max(1, lookups // 5) * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", default="10,100,1000,5000",
                        help="events of the busy account in the last 20 hours, comma-separated (default 10,100,1000,5000)")
    parser.add_argument("--others", type=int, default=20_000, help="other accounts' events in the store (default 20000)")
    parser.add_argument("--lookups", type=int, default=2000, help="verdicts timed per size (default 2000)")
    args = parser.parse_args()
    sizes = [int(v) for v in args.busy.split(",")]

    from counterguard.core.features import DAY, summarise_history
    from counterguard.gateway.store.db import HISTORY_LIMIT, Store

    now = datetime.now(CST).replace(microsecond=0)
    epoch = now.timestamp()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for busy in sizes:
            with Store(Path(tmp) / f"history-{busy}.db") as store:
                fill(store, busy, args.others, now)
                in_sql = store.account_summary(BUSY, epoch, 2)
                in_python = summarise_history(store.account_history(BUSY, epoch - DAY, epoch), epoch, 2)
                if in_sql != in_python:
                    raise SystemExit(f"the two summaries differ for {busy} events: {in_sql} against {in_python}")
                sql = per_lookup(lambda: store.account_summary(BUSY, epoch, 2), args.lookups)
                python = per_lookup(lambda: summarise_history(store.account_history(BUSY, epoch - DAY, epoch),
                                                              epoch, 2), args.lookups)
                rows.append((busy, min(busy, HISTORY_LIMIT), python, sql))

    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{date.today().isoformat()}; {args.others:,} other events in the store, {args.lookups:,} verdicts a size\n")
    print("| the account's events today | summarised (the latest, at most) | read back and summarised in Python, µs a verdict "
          "| summarised by SQLite from the index, µs a verdict |\n|---:|---:|---:|---:|")
    for busy, used, python, sql in rows:
        print(f"| {busy:,} | {used:,} | {python:,.1f} | {sql:,.1f} |")


if __name__ == "__main__":
    main()
