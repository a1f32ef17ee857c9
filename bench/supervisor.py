"""Supervisor workflow benchmarks: how fast an acknowledgement reaches the lamps, how fast the
branch console answers with a busy day in the store, how long the shift report takes, how fast a
teller's own report lights the lamps, and how long a day's events take to export.
Real parts: SQLite (synchronous=FULL), gpiozero mock pins, the console's HTTP server on loopback.

    .venv/bin/python bench/supervisor.py [--verdicts 20000] [--alerts 400]

Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import statistics
import sys
import tempfile
import time
import urllib.parse
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpiozero.pins.mock import MockFactory  # noqa: E402

from counterguard.core.clock import Clock, Stamp  # noqa: E402
from counterguard.core.weblogin import Sessions, hash_password  # noqa: E402
from counterguard.gateway.branch.console.server import BranchConsole  # noqa: E402
from counterguard.core.decision import Verdict  # noqa: E402
from counterguard.core.events import parse_event  # noqa: E402
from counterguard.gateway.branch.export import export_events  # noqa: E402
from counterguard.gateway.counter.lamps import LampBoard  # noqa: E402
from counterguard.gateway.branch.lifecycle import Lifecycle  # noqa: E402
from counterguard.hardware.pinmap import default_pinmap_path, load_pinmap  # noqa: E402
from counterguard.gateway.questions import load_questions  # noqa: E402
from counterguard.gateway.branch.report import build_report, render_html, render_text  # noqa: E402
from counterguard.gateway.store.db import Store  # noqa: E402


def fill_day(store: Store, verdicts: int, alerts: int) -> list[str]:
    """A busy day: ``verdicts`` verdicts spread over 08:00-18:00, every n-th an alert (a third red)."""
    start = datetime.combine(date.today(), datetime.min.time()).astimezone().timestamp() + 8 * 3600
    every = max(1, verdicts // max(1, alerts))
    ids = []
    with store.batch():
        for i in range(verdicts):
            wall = start + i * (10 * 3600 / verdicts)
            alert = i % every == 0 and len(ids) < alerts
            level = ("red" if len(ids) % 3 == 0 else "amber") if alert else "green"
            body = {"event_id": f"b-{i}", "ts": datetime.fromtimestamp(wall).astimezone().isoformat(),
                    "counter": 1 + i % 4, "kind": "cash_withdrawal", "account": f"62220202{i:011d}",
                    "amount": 50000.0 if alert else 800.0}
            ev = parse_event(body)
            reasons = ("large_cash", "customer_on_phone") if alert else ()
            got = store.record_verdict(ev, json.dumps(body).encode(), f"s{i}", Verdict(ev.event_id, level, 0.9 if alert else 0.1, reasons,
                                                                    "text", ev.counter),
                                       Stamp(wall, 0.0, True), model_version="m", watchlist_version=1, gateway_id="gw-b")
            if got is not None:
                ids.append(got.alert_id)
    return ids


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--verdicts", type=int, default=20000)
    ap.add_argument("--alerts", type=int, default=400)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "gw.db")
        t0 = time.perf_counter()
        ids = fill_day(store, args.verdicts, args.alerts)
        alerted = {row[0] for row in store.db.execute("SELECT event_id FROM alerts")}
        rows.append(("filling the day", f"{args.verdicts:,} verdicts, {len(ids)} alerts in {time.perf_counter() - t0:.1f} s", "-"))
        lamps = LampBoard.from_pinmap(load_pinmap(default_pinmap_path()), pin_factory=MockFactory())
        life = Lifecycle(store, lamps, Clock(assume_synced=True), gateway_id="gw-b")
        life.restore_lamps()

        # Acknowledge then close, one alert at a time: store commit (FULL) + lamps, as the button does.
        ack_ms, close_ms = [], []
        for alert_id in ids[:200]:
            t = time.perf_counter()
            life.acknowledge(alert_id, by="S1", via="console")
            ack_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            life.record_outcome(alert_id, "false_alarm", by="S1")
            close_ms.append((time.perf_counter() - t) * 1000)
        rows.append(("acknowledge -> lamps (store FULL fsync + lamp change)",
                     f"p50 {statistics.median(ack_ms):.1f} ms, p99 {pct(ack_ms, .99):.1f} ms", "≤ 100 ms"))
        rows.append(("record outcome -> lamp off", f"p50 {statistics.median(close_ms):.1f} ms, p99 {pct(close_ms, .99):.1f} ms",
                     "≤ 100 ms"))

        console = BranchConsole(store, life, Sessions(hash_password("bench")), load_questions(), host="127.0.0.1",
                                port=0, branch="bench", lamps=lamps).start()
        conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=30)
        t = time.perf_counter()
        conn.request("POST", "/login", urllib.parse.urlencode({"staff": "S1", "password": "bench"}),
                     {"Content-Type": "application/x-www-form-urlencoded"})
        res = conn.getresponse()
        res.read()
        login_ms = (time.perf_counter() - t) * 1000
        cookie = res.getheader("Set-Cookie").split(";")[0]
        state_ms, size = [], 0
        for _ in range(30):
            t = time.perf_counter()
            conn.request("GET", "/api/state", headers={"Cookie": cookie})
            body = conn.getresponse().read()
            state_ms.append((time.perf_counter() - t) * 1000)
            size = len(body)
        n_today = len(json.loads(body)["today"])
        rows.append(("console login (scrypt n=2^14)", f"{login_ms:.0f} ms", "≤ 1 s"))
        rows.append((f"console /api/state, {n_today} alerts today ({size / 1024:.0f} KiB JSON)",
                     f"p50 {statistics.median(state_ms):.0f} ms, max {max(state_ms):.0f} ms", "≤ 500 ms (polled every 2 s)"))
        console.stop()

        t = time.perf_counter()
        report = build_report(store, date.today(), branch="bench", gateway_id="gw-b")
        text, page = render_text(report), render_html(report)
        rows.append((f"shift report, {args.verdicts:,} verdicts and {len(ids)} alerts (text + HTML)",
                     f"{(time.perf_counter() - t) * 1000:.0f} ms ({len(page) / 1024:.0f} KiB HTML)", "≤ 5 s"))

        # Staff raise red on events the model answered green: one transaction (FULL) + lamps each.
        green = [f"b-{i}" for i in range(args.verdicts) if f"b-{i}" not in alerted][:100]
        raise_ms = []
        for event_id in green:
            t = time.perf_counter()
            life.raise_alert(event_id, "red", by="T1", via="console", note="bench")
            raise_ms.append((time.perf_counter() - t) * 1000)
        rows.append(("staff raise red -> lamps (store FULL fsync + lamp change)",
                     f"p50 {statistics.median(raise_ms):.1f} ms, p99 {pct(raise_ms, .99):.1f} ms", "≤ 100 ms"))

        for labelled in (False, True):
            t = time.perf_counter()
            exp = export_events(store, date.today(), date.today(), labelled=labelled)
            size = sum(len(line) + 1 for line in exp.lines)
            rows.append((f"export-events{' --labelled' if labelled else ''}, a day of {exp.events:,} events",
                         f"{(time.perf_counter() - t) * 1000:.0f} ms ({size / 1024:.0f} KiB)", "≤ 10 s"))
        lamps.close()
        store.close()

    print(f"Measured {date.today().isoformat()} on {platform.machine()}, Python {platform.python_version()}, "
          f"`bench/supervisor.py --verdicts {args.verdicts} --alerts {args.alerts}`.\n")
    print("| measure | result | goal |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
