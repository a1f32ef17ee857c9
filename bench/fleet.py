"""Fleet simulation: a thousand or more branch gateways against one local mosquitto and the real
centre (``counterguard centre run``, two intake workers, SQLite), with the broker restarted mid-run.

    .venv/bin/python bench/fleet.py [--gateways 1000 2000] [--processes 4] [--outage-s 4] [--control]

For each fleet size: how long the fleet takes to connect, how the reconnects after the restart
spread (percentiles, the busiest 100 ms, a text histogram), when every gateway is back, when every
outbox is empty, and the ledger (alerts raised = alerts stored at the centre, none twice).
``--control`` runs the same fleet once more with the jitter taken out of the back-off (every gateway
waits the whole window), to show what the jitter prevents.

The simulated gateways are tests/fleet_sim.py, the same the test suite runs (tests/test_fleet.py).
Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from counterguard.centre.store import open_store  # noqa: E402
from fleet_sim import histogram, percentile, rehearse_broker_restart, spread_problems  # noqa: E402
from counterguard.gateway.link.broker import PrivateBroker  # noqa: E402


def busiest_slice(delays: list[float], slice_s: float = 0.1) -> int:
    slots: dict[int, int] = {}
    for d in delays:
        slots[int(d / slice_s)] = slots.get(int(d / slice_s), 0) + 1
    return max(slots.values())


def one_run(gateways: int, args, *, jitter: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="counterguard-fleet-") as tmp, PrivateBroker() as broker:
        store = os.path.join(tmp, "centre.db")
        label = f"{gateways} gateways, {'jittered' if jitter else 'no jitter'}"
        run = rehearse_broker_restart(broker, store, gateways=gateways, processes=args.processes,
                                      per_gateway=args.per_gateway, outage_s=args.outage_s, jitter=jitter,
                                      timeout=args.timeout, say=lambda line: print(f"[{label}] {line}", file=sys.stderr))
        with open_store(store) as reader:
            records = reader.records(kind="alert", limit=10 * run.alerts + 10)
            online = sum(1 for g in reader.gateways() if g["state"] == "online")
    sent = run.sent()
    stored = {(r["gateway_id"], r["seq"]): r["alert_id"] for r in records}
    delays = [d for d in run.delays() if d is not None]
    waits = [w for w in run.waits() if w is not None]
    return {
        "label": label, "gateways": gateways, "jitter": jitter,
        "connect_s": run.online_at - run.started_at,
        "raised": len(sent), "during_outage": run.raised_during_outage(), "stored": len(records),
        "exact": stored == sent and len(records) == len(sent),
        "duplicates": run.centre_counts.get("duplicates", 0),
        "outboxes_left": sum(1 for gw in run.reports if gw["outbox"]),
        "came_back": len(delays), "online_at_centre": online,
        "p10": percentile(delays, 0.1), "p50": percentile(delays, 0.5), "p90": percentile(delays, 0.9),
        "max": max(delays), "first_second": sum(d < 1.0 for d in delays), "busiest": busiest_slice(delays),
        "back_s": None if run.back_at is None else run.back_at - run.restarted_at,
        "drained_s": None if run.drained_at is None else run.drained_at - run.restarted_at,
        "outage_s": run.restarted_at - run.stopped_at,
        "waits_iqr": percentile(waits, 0.75) - percentile(waits, 0.25),
        "problems": spread_problems(delays, waits),
        "histogram": histogram(delays),
    }


def _s(value) -> str:
    return "did not happen" if value is None else f"{value:.1f} s"


def render(results: list[dict], args) -> str:
    cmd = "bench/fleet.py " + " ".join(sys.argv[1:])
    lines = [
        "## Fleet simulation", "",
        f"Measured {date.today().isoformat()} on {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, mosquitto on loopback, the centre as `counterguard centre run` with "
        f"two intake workers on SQLite; the machine was shared with other work while measuring. "
        f"`.venv/bin/python {cmd.strip()}`.", "",
        f"Each gateway raises {args.per_gateway} alerts at random moments over {args.outage_s + 6:.0f} s; the broker is "
        f"stopped once a quarter of them are raised and started again {args.outage_s:.0f} s later. "
        "Back-off: `mqtt.backoff_min_s` 1 s, `mqtt.backoff_max_s` 120 s (the defaults). Reconnect delay: from the "
        "broker being started again to the gateway's first new session.", "",
        "| fleet | connect all | alerts raised (during outage) | stored at the centre | resends absorbed | "
        "outboxes left | reconnect p10 / p50 / p90 / max | within 1st second | busiest 100 ms | back-off waits, "
        "interquartile | all back | all outboxes empty | spread check (tests/test_fleet.py) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['label']} | {r['connect_s']:.1f} s | {r['raised']:,} ({r['during_outage']:,}) | "
            f"{r['stored']:,}{' exactly' if r['exact'] else ' MISMATCH'} | {r['duplicates']:,} | {r['outboxes_left']} | "
            f"{r['p10']:.1f} / {r['p50']:.1f} / {r['p90']:.1f} / {r['max']:.1f} s | {r['first_second']} | "
            f"{r['busiest']} | {r['waits_iqr']:.2f} s | {_s(r['back_s'])} | {_s(r['drained_s'])} | "
            f"{'passes' if not r['problems'] else 'fails: ' + '; '.join(r['problems'])} |")
    for r in results:
        lines += ["", f"Reconnect delay after the restart, {r['label']} (0.5 s bins):", "", "```",
                  r["histogram"], "```"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, nargs="+", default=[1000])
    parser.add_argument("--processes", type=int, default=4, help="fleet worker processes")
    parser.add_argument("--per-gateway", type=int, default=5, help="alerts each gateway raises")
    parser.add_argument("--outage-s", type=float, default=4.0, help="how long the broker stays down")
    parser.add_argument("--timeout", type=float, default=180.0, help="bound on each phase of a run")
    parser.add_argument("--control", action="store_true", help="also run without jitter, for comparison")
    args = parser.parse_args()
    results = []
    for n in args.gateways:
        results.append(one_run(n, args, jitter=True))
        if args.control:
            results.append(one_run(n, args, jitter=False))
    print(render(results, args))


if __name__ == "__main__":
    main()
