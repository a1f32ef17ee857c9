"""How fast centre workers empty the clustered centre's intake stream, by number of workers.

    .venv/bin/python bench/intake.py [--alerts 50000] [--workers 1,2,3] [--gateways 100]

A three-node NATS cluster ('counterguard centre cluster up') and PostgreSQL. For each number of
workers, ``--alerts`` alerts of ``--gateways`` gateways are first put into the intake stream
(``CENTRE_INTAKE``, replicated on three nodes) by JetStream publishes, 500 awaiting their
acknowledgement at a time: that rate is what the cluster takes in. Then that many workers
('centre serve --config', each its own process) start, and the time from the first alert stored to
the last gives the rate they store and receipt at. Also counted: alerts stored twice, messages the
stream handed out again, and the workers' CPU seconds. Prints a Markdown table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from centre_support import SimGateway  # noqa: E402
from counterguard.centre.jetstream import CONSUMER, STREAM  # noqa: E402
from fleet_sim import cpu_s, placement  # noqa: E402
from swarm import ClusteredCentre, issue_certificates, stop_processes  # noqa: E402

IN_FLIGHT = 500


def fleet(gateways: int) -> list[SimGateway]:
    return [SimGateway(None, None, f"gw-{i:05d}", region=placement(i)[0], branch=placement(i)[1])
            for i in range(gateways)]


def payloads(sims: list[SimGateway], n: int) -> list[tuple[str, bytes]]:
    """(subject, payload) of ``n`` new alerts spread over ``sims``; each gateway's seq goes on from
    its last run, as the store keys alerts by (gateway, seq)."""
    gateways = len(sims)
    out = []
    for k in range(n):
        g = sims[k % gateways]
        _, _, payload = g.alert_payload()
        out.append((f"counterguard.v1.{g.region}.{g.branch}.{g.gateway_id}.alert", payload.encode()))
    return out


def worker_tls_context(centre: ClusteredCentre) -> ssl.SSLContext:
    tls = centre.cluster.worker_tls()
    ctx = ssl.create_default_context(cafile=tls["ca_certs"])
    ctx.load_cert_chain(tls["certfile"], tls["keyfile"])
    return ctx


async def fill(centre: ClusteredCentre, messages: list[tuple[str, bytes]]) -> float:
    """Publish into the intake stream, IN_FLIGHT awaiting acks at a time; the seconds it took."""
    import nats

    nc = await nats.connect(servers=centre.cluster.servers(), tls=worker_tls_context(centre))
    js = nc.jetstream(timeout=30)
    t = time.perf_counter()
    for i in range(0, len(messages), IN_FLIGHT):
        await asyncio.gather(*(js.publish(s, p) for s, p in messages[i:i + IN_FLIGHT]))
    took = time.perf_counter() - t
    await nc.close()
    return took


async def redelivered(centre: ClusteredCentre) -> int:
    import nats

    nc = await nats.connect(servers=centre.cluster.servers(), tls=worker_tls_context(centre))
    n = (await nc.jetstream(timeout=30).consumer_info(STREAM, CONSUMER)).num_redelivered
    await nc.close()
    return n


def wait_for_join(centre: ClusteredCentre, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and "worker(s) on the intake stream" in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"a centre worker did not join the intake stream; see {log}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", type=int, default=50000, help="alerts put into the stream for each run")
    ap.add_argument("--workers", default="1,2,3", help="numbers of workers to run, comma-separated")
    ap.add_argument("--gateways", type=int, default=100, help="gateways the alerts come from")
    args = ap.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="cg-intake-"))
    issue_certificates(work, 0)
    centre = ClusteredCentre(work, base_port=15600, workers=0).up()
    rows, ok = [], True
    try:
        # The stream and its consumer are made by the first worker to join.
        first = centre.serve()
        wait_for_join(centre, first, work / "worker1.log")
        stop_processes([first])
        sims = fleet(args.gateways)
        for w in counts:
            before, before_redelivered = centre.store.count("alert"), asyncio.run(redelivered(centre))
            fill_s = asyncio.run(fill(centre, payloads(sims, args.alerts)))
            procs = [centre.serve() for _ in range(w)]
            target = before + args.alerts
            started = time.monotonic()
            first_at, first_n = None, 0
            while time.monotonic() - started < 300:
                n = centre.store.count("alert")
                if first_at is None and n > before:
                    first_at, first_n = time.monotonic(), n
                if n >= target:
                    break
                time.sleep(0.05)
            last_at = time.monotonic()
            cpu = cpu_s(p.pid for p in procs)
            stop_processes(procs)
            stored = centre.store.count("alert") - before
            again = asyncio.run(redelivered(centre)) - before_redelivered
            ok = ok and stored == args.alerts
            # Timed from the first alert seen stored (the workers' start-up left out) to the last.
            took = last_at - (first_at or last_at)
            rate = (target - first_n) / took if first_at and target > first_n and took > 0 else None
            rows.append((w, args.alerts / fill_s, stored, rate, cpu, again))
        distinct = len({(a["gateway_id"], a["alert_id"]) for a in centre.store.alert_index()})
        twice = centre.store.count("alert") - distinct
    finally:
        centre.down()
    version = subprocess.run(["nats-server", "--version"], capture_output=True, text=True).stdout.strip().split()[-1]
    print(f"\n### The clustered intake, by workers ({date.today().isoformat()}, {platform.node()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, nats-server {version})\n")
    print(f"{args.alerts:,} alerts of {args.gateways} gateways a run; three nodes, PostgreSQL, everything on this "
          f"machine. Stored twice over all runs: {twice}.\n")
    print("| workers | into the stream (JetStream publishes acknowledged) | stored / sent | stored and receipted | "
          "workers' CPU | handed out again |")
    print("|---:|---:|---:|---:|---:|---:|")
    for w, fill_rate, stored, rate, cpu, again in rows:
        shown = f"{rate:,.0f} alerts/s" if rate else "too few alerts to time"
        print(f"| {w} | {fill_rate:,.0f} alerts/s | {stored:,} / {args.alerts:,} | {shown} | "
              f"{cpu:.1f} s | {again} |")
    return 0 if ok and twice == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
