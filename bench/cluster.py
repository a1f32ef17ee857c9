"""The clustered centre under faults: simulated gateways (tests/swarm.py: MQTT with their own
certificates, the uplink's subscriptions, outbox and jittered back-off, failing over to the next
node) stream alerts and events for learning (batches of scored events, as the gateway's upload sends
them) into a three-node NATS cluster ('counterguard centre cluster up') with two
centre workers ('centre serve --config', each its own process) writing to PostgreSQL, while

  (a) one broker node is SIGKILLed, then restarted,
  (b) one centre worker is SIGKILLed (and a new one started),
  (c) PostgreSQL restarts.

    .venv/bin/python bench/cluster.py [--gateways 1000] [--processes 4] [--alerts 6] [--batches 1]
                                      [--events 50] [--gap-s 12]

Prints the ledger (alerts sent, stored, stored twice, receipted; events uploaded, stored, batches
receipted), the intake rate, and for each
fault how long until the intake was back to half its rate before the fault and (node kill) until
every displaced gateway was connected again with its receipts subscribed. Prints a Markdown
section for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fleet_sim import ensure_fd_limit, percentile  # noqa: E402
from swarm import ClusteredCentre, Swarm, issue_certificates, outcome, upload_outcome  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gateways", type=int, default=1000, help="simulated gateways")
    ap.add_argument("--processes", type=int, default=4, help="worker processes the gateways are split over")
    ap.add_argument("--alerts", type=int, default=6, help="alerts per gateway per phase (4 phases)")
    ap.add_argument("--batches", type=int, default=1, help="event batches per gateway per phase (0: alerts only)")
    ap.add_argument("--events", type=int, default=50, help="scored events in a batch")
    ap.add_argument("--gap-s", type=float, default=12.0, help="seconds between faults")
    args = ap.parse_args(argv)
    ensure_fd_limit(args.gateways)  # a node may hold the whole fleet after the others failed
    work = Path(tempfile.mkdtemp(prefix="cg-cluster-bench-"))
    t_setup = time.monotonic()
    issue_certificates(work, args.gateways)
    centre = ClusteredCentre(work, base_port=15200).up()
    cluster = centre.cluster
    swarm = Swarm(work, centre.nodes, gateways=args.gateways, processes=min(args.processes, args.gateways),
                  stagger_s=min(10.0, args.gateways / 100), republish_after_s=30.0)
    n = args.gateways
    swarm.start()
    try:
        if not swarm.wait_for(lambda s: s["ready"] == n, 180):
            print(f"the fleet did not come in: {swarm.totals()}\n{swarm.errors()}", file=sys.stderr)
            return 1
        setup_s = time.monotonic() - t_setup
        print(f"setup {setup_s:.1f} s: {n} gateways connected", flush=True)
        samples: list[tuple[float, int, int]] = []  # (seconds since t0, alerts stored, events kept)
        stop = threading.Event()
        t0 = time.monotonic()

        def sampler():
            while not stop.is_set():
                try:
                    samples.append((time.monotonic() - t0, centre.store.count("alert"), centre.store.event_count()))
                except Exception:  # PostgreSQL restarting
                    pass
                stop.wait(0.5)

        threading.Thread(target=sampler, daemon=True).start()

        def phase():
            swarm.raise_alerts(args.alerts, over_s=args.gap_s)
            if args.batches:
                swarm.upload_events(args.batches, args.events, over_s=args.gap_s)

        faults = {}
        phase()
        time.sleep(args.gap_s)
        # (a) a broker node
        faults["node"] = time.monotonic()
        phase()
        cluster.kill_node(1)
        time.sleep(3)
        cluster.start_node(1)
        t_restart = time.monotonic()
        cluster.wait_healthy(60)
        node_healthy_s = time.monotonic() - t_restart
        time.sleep(max(0.0, faults["node"] + args.gap_s - time.monotonic()))
        # (b) a centre worker
        faults["worker"] = time.monotonic()
        phase()
        centre.workers[0].send_signal(signal.SIGKILL)
        centre.workers[0].wait(10)
        centre.workers[0] = centre.serve()
        time.sleep(args.gap_s)
        # (c) PostgreSQL
        faults["postgres"] = time.monotonic()
        phase()
        centre.pg.restart()
        total = 4 * args.alerts * n
        batches = 4 * args.batches * n
        done = swarm.wait_for(lambda s: s["raised"] == total and s["uploaded"] == batches and s["outbox"] == 0
                              and s["ready"] == n, args.gap_s + 240)
        done_s = time.monotonic() - t0
        time.sleep(1)
        stop.set()
        stored, distinct = centre.ledger()
        events_kept = centre.store.event_count()
    finally:
        reports = swarm.stop()
        centre.down()
    sent, unreceipted = outcome(reports)
    uploaded_batches, uploaded, batches_waiting = upload_outcome(reports)
    # The gateways on the killed node: lost their connection within a second of the kill.
    back = []
    for r in reports:
        lost = [t for t in r["losses"] if faults["node"] <= t <= faults["node"] + 1.0]
        if lost:
            ready = [t for t in r["ready"] if t > lost[0]]
            back.append(ready[0] - lost[0] if ready else float("inf"))

    def recovery(at: float, column: int = 1) -> str:
        """How long after ``at`` the intake (column 1: alerts, 2: events) was back to half its rate of
        the 6 s before."""
        at -= t0
        series = [(row[0], row[column]) for row in samples]
        before = [c for t, c in series if at - 6 <= t <= at]
        if len(before) < 2:
            return "n/a"
        rate = (before[-1] - before[0]) / 6
        prev = None
        for t, c in series:
            if t <= at:
                prev = (t, c)
                continue
            if prev and (c - prev[1]) / max(t - prev[0], 1e-6) >= rate / 2:
                return f"{t - at:.1f} s"
            prev = (t, c)
        return "not within the run"

    node_at = faults["node"] - t0
    steady = [(a, e) for t, a, e in samples if 1 <= t <= node_at]
    steady_rate, steady_events = ((steady[-1][i] - steady[0][i]) / max(node_at - 1, 1) if len(steady) > 1 else 0
                                  for i in (0, 1))
    version = subprocess.run(["nats-server", "--version"], capture_output=True, text=True).stdout.strip().split()[-1]
    print(f"\n### Clustered centre under faults ({date.today().isoformat()}, {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()})\n")
    print(f"{n} gateways in {swarm.processes} processes, 3 nats-server {version} nodes, 2 centre workers, "
          f"PostgreSQL; {sent} alerts and {uploaded} events for learning sent over {4 * args.gap_s:.0f} s.\n")
    print("| measure | value |\n| --- | --- |")
    print(f"| alerts sent / stored / stored twice | {sent} / {stored} / {stored - distinct} |")
    print(f"| alerts still unreceipted at the end | {unreceipted} |")
    if uploaded_batches:
        print(f"| events for learning uploaded / kept at the centre ({uploaded_batches} batches of {args.events}) | "
              f"{uploaded} / {events_kept} |")
        print(f"| event batches still unreceipted at the end | {batches_waiting} |")
    print(f"| receipt subscriptions refused (connection left and made again) | "
          f"{sum(r['refused_subscriptions'] for r in reports)} |")
    print(f"| intake rate before the faults | {steady_rate:.0f} alerts/s"
          + (f" and {steady_events:.0f} events/s" if uploaded_batches else "") + " (what the fleet offered) |")
    print(f"| every alert{' and event batch' if uploaded_batches else ''} stored and receipted | {done_s:.1f} s after the start |")
    def back_to_half(fault: str) -> str:
        alerts = recovery(faults[fault])
        return f"{alerts} (events: {recovery(faults[fault], 2)})" if uploaded_batches else alerts

    print(f"| (a) node SIGKILLed: intake back to half rate | {back_to_half('node')} |")
    finite = [b for b in back if b != float("inf")]
    print(f"| (a) displaced gateways back on another node, receipts subscribed (median / max) | "
          f"{(percentile(finite, 0.5) if finite else float('nan')):.1f} s / {max(back or [float('nan')]):.1f} s "
          f"({len(finite)} of {len(back)}) |")
    print(f"| (a) restarted node healthy again | {node_healthy_s:.1f} s after its restart |")
    print(f"| (b) worker SIGKILLed: intake back to half rate | {back_to_half('worker')} |")
    print(f"| (c) PostgreSQL restarted: intake back to half rate | {back_to_half('postgres')} |")
    events_ok = events_kept == uploaded and not batches_waiting
    return 0 if done and stored == distinct == sent and not unreceipted and events_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
