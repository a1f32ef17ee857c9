"""A reconnect storm: every gateway of a large fleet comes back at once after the clustered centre
broker restarts.

    .venv/bin/python bench/storm.py [--gateways 10000] [--processes 4] [--sub-qos 0] [--down-s 5]

Simulated gateways (tests/swarm.py: each its own client certificate, the uplink's subscriptions,
outbox and jittered back-off) connect over MQTT with mTLS to a three-node NATS cluster
('counterguard centre cluster up') with two centre workers ('centre serve --config') writing to
PostgreSQL. Once every gateway is in and has had one alert receipted, the whole cluster is stopped
('cluster down'), each gateway raises one more alert while it is down, and the cluster is started
again ('cluster up'). Measured: how long until every gateway is connected with its receipts
subscription granted, how many attempts that took, the CPU time the nodes, the simulated fleet
and the centre workers used meanwhile, and the alert ledger (sent, stored, stored twice,
receipted). Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fleet_sim import cpu_s, ensure_fd_limit, histogram, percentile  # noqa: E402
from swarm import ClusteredCentre, Swarm, issue_certificates, outcome  # noqa: E402


def wait(swarm: Swarm, predicate, timeout: float, what: str) -> bool:
    """swarm.wait_for, saying how far the fleet got every 10 s (on stderr, off the table)."""
    deadline = time.monotonic() + timeout
    while True:
        if swarm.wait_for(predicate, min(10.0, max(0.0, deadline - time.monotonic()))):
            return True
        print(f"  {what}: {swarm.totals()}", file=sys.stderr, flush=True)
        if time.monotonic() >= deadline:
            return False


def first_after(times: list[float], t: float) -> float | None:
    return next((x for x in sorted(times) if x > t), None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gateways", type=int, default=10000, help="simulated gateways")
    ap.add_argument("--processes", type=int, default=4, help="worker processes the gateways are split over")
    ap.add_argument("--sub-qos", type=int, choices=(0, 1), default=0,
                    help="QoS of the gateways' subscriptions (0: what the uplink asks for; 1: to see what it costs)")
    ap.add_argument("--down-s", type=float, default=5.0, help="seconds the cluster stays down")
    ap.add_argument("--stagger-s", type=float, default=60.0,
                    help="the fleet's first connections are spread over this many seconds")
    ap.add_argument("--backoff-min", type=float, default=1.0, help="the uplink's backoff_min")
    ap.add_argument("--backoff-max", type=float, default=120.0, help="the uplink's backoff_max")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up on any phase after this many seconds")
    args = ap.parse_args(argv)
    ensure_fd_limit(args.gateways)  # a node may hold the whole fleet after the others failed
    work = Path(tempfile.mkdtemp(prefix="cg-storm-"))
    t = time.monotonic()
    issue_certificates(work, args.gateways)
    issue_s = time.monotonic() - t
    centre = ClusteredCentre(work, base_port=15400)
    t = time.monotonic()
    centre.up()
    up_s = time.monotonic() - t
    cluster = centre.cluster
    swarm = Swarm(work, centre.nodes, sub_qos=args.sub_qos, gateways=args.gateways, processes=args.processes,
                  backoff=(args.backoff_min, args.backoff_max), stagger_s=args.stagger_s, republish_after_s=30.0)
    n = args.gateways
    ok = True
    try:
        t0 = time.monotonic()
        swarm.start()
        if not wait(swarm, lambda s: s["ready"] == n, args.timeout + args.stagger_s, "first connections"):
            print(f"the fleet did not come in: {swarm.totals()}\n{swarm.errors()}", file=sys.stderr)
            return 1
        first_in_s = time.monotonic() - t0
        swarm.raise_alerts(1, over_s=5.0)
        if not wait(swarm, lambda s: s["raised"] == n and s["outbox"] == 0, args.timeout, "first alerts"):
            print(f"the first alerts were not all receipted: {swarm.totals()}", file=sys.stderr)
            ok = False
        # The restart: every node stopped (as 'cluster down' does), one alert each while it is down.
        stopped_at = time.monotonic()
        cluster.down(timeout=60)
        swarm.raise_alerts(1, over_s=max(0.5, args.down_s / 2))
        time.sleep(max(0.0, args.down_s - (time.monotonic() - stopped_at)))
        fleet_cpu = cpu_s(swarm.pids())
        workers_cpu = cpu_s(w.pid for w in centre.workers)
        started_at = time.monotonic()
        cluster.up(ca_dir=work / "ca", timeout=120)
        healthy_at = time.monotonic()
        done = wait(swarm, lambda s: s["ready"] == n and s["raised"] == 2 * n and s["outbox"] == 0, args.timeout,
                    "after the restart")
        settled_at = time.monotonic()
        # The nodes were started by 'up', so all their CPU time is the storm's.
        nodes_cpu = cpu_s(cluster.pid(i) for i in range(cluster.nodes))
        fleet_cpu = cpu_s(swarm.pids()) - fleet_cpu
        workers_cpu = cpu_s(w.pid for w in centre.workers) - workers_cpu
        if not done:
            print(f"the storm did not settle within {args.timeout:.0f} s: {swarm.totals()}", file=sys.stderr)
            ok = False
        time.sleep(2)
        stored, distinct = centre.ledger()
    finally:
        reports = swarm.stop()
        centre.down()
    sent, unreceipted = outcome(reports)
    back = [first_after(r["ready"], stopped_at) for r in reports]
    came_back = [b - started_at for b in back if b is not None]
    attempts = sum(r["attempts"] for r in reports)
    before = sum(sum(1 for c in r["connects"] if c <= stopped_at) for r in reports)
    refused_subs = sum(r["refused_subscriptions"] for r in reports)
    refused_connack = sum(r["refused_connack"] for r in reports)
    cores = os.cpu_count()
    version = subprocess.run(["nats-server", "--version"], capture_output=True, text=True).stdout.strip().split()[-1]
    print(f"\n### Reconnect storm ({date.today().isoformat()}, {platform.node()}, {cores} cores, "
          f"Python {platform.python_version()}, nats-server {version})\n")
    print(f"{n} simulated gateways in {args.processes} processes, subscriptions at QoS {args.sub_qos}, "
          f"back-off {args.backoff_min:g}-{args.backoff_max:g} s jittered; 3 nodes, 2 centre workers, PostgreSQL; "
          f"cluster down for {started_at - stopped_at:.1f} s.\n")
    print("| measure | value |\n| --- | --- |")
    print(f"| certificates issued / cluster, PostgreSQL and workers first up | {issue_s:.1f} s / {up_s:.1f} s |")
    print(f"| first connections (spread over {args.stagger_s:.0f} s) all in | {first_in_s:.1f} s |")
    print(f"| cluster healthy again | {healthy_at - started_at:.1f} s after 'up' |")
    if came_back:
        print(f"| gateways back with receipts subscribed | {len(came_back)} of {n} |")
        print(f"| back after 'up' (median / p90 / p99 / last) | {percentile(came_back, 0.5):.1f} / "
              f"{percentile(came_back, 0.9):.1f} / {percentile(came_back, 0.99):.1f} / {max(came_back):.1f} s |")
    print(f"| every gateway back and every alert receipted | {settled_at - started_at:.1f} s after 'up' |")
    print(f"| connection attempts after the stop (failed: no TCP or TLS / closed before CONNACK / refused in "
          f"CONNACK) | {attempts - before} ({sum(r['refused'] for r in reports)} / "
          f"{sum(r['dropped'] for r in reports)} / {refused_connack}) |")
    print(f"| receipt subscriptions refused (connection left, as the uplink does) | {refused_subs} |")
    print(f"| CPU from 'up' until settled: the three nodes / the simulated fleet / the centre workers (of "
          f"{cores} cores x {settled_at - started_at:.0f} s) | {nodes_cpu:.0f} / {fleet_cpu:.0f} / {workers_cpu:.0f} s |")
    print(f"| alerts sent / stored / stored twice / unreceipted at the end | {sent} / {stored} / "
          f"{stored - distinct} / {unreceipted} |")
    print("\nGateways back (receipts subscribed) after 'up', 2 s bins:\n")
    print("```\n" + histogram(came_back, bin_s=2.0) + "\n```")
    ok = ok and stored == distinct == sent and not unreceipted and len(came_back) == n
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
