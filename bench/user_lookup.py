"""What finding a certificate's user costs a clustered centre broker as the fleet grows.

    .venv/bin/python bench/user_lookup.py [--users 1000,10000] [--probes 100]

nats-server maps each client certificate to a user of its config (``verify_and_map``). Gateway
certificates name their gateway by a URI, ``urn:counterguard:gateway:ID``, which NATS looks up in
one step; certificates issued before carried the subject alone, which NATS matches by comparing it
with every user's name in turn while holding the server's lock. For each fleet size and each kind
of certificate, a three-node cluster (``centre cluster up``) with the whole fleet in its user list
takes ``--probes`` gateways' connections one after another on one node: the TLS handshake and
CONNECT to CONNACK are timed apart. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
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

from counterguard.centre.cluster import Cluster, node_ports  # noqa: E402
from fleet_sim import gateway_id, percentile  # noqa: E402
from swarm import CONNACK, connect_packet, issue_certificates, read_packet  # noqa: E402


async def connect_once(pki: Path, gid: str, port: int) -> tuple[float, float]:
    """(TLS handshake s, CONNECT to accepted CONNACK s) of one gateway, which then hangs up."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca" / "ca.crt"))
    ctx.load_cert_chain(str(pki / gid / "gateway.crt"), str(pki / gid / "gateway.key"))
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    t1 = time.perf_counter()
    try:
        writer.write(connect_packet(gid, 30, f"counterguard/v1/probe/{gid}", "offline"))
        kind, _, body = await asyncio.wait_for(read_packet(reader), 30)
        if kind != CONNACK or len(body) < 2 or body[1] != 0:
            raise RuntimeError(f"{gid} was refused: packet {kind}, body {body!r}")
        return t1 - t0, time.perf_counter() - t1
    finally:
        writer.close()


def measure(users: int, probes: int, *, uri: bool, base_port: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="cg-lookup-"))
    try:
        issue_certificates(work, users, uri=uri)
        cluster = Cluster(work / "run", nodes=3, base_port=base_port)
        cluster.up(ca_dir=work / "ca", timeout=120)
        try:
            port = node_ports(base_port, 0).mqtt
            step = max(1, users // probes)

            async def run():
                return [await connect_once(work, gateway_id(i * step % users), port) for i in range(probes)]

            times = asyncio.run(run())
        finally:
            cluster.down()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tls, connack = [t for t, _ in times], [c for _, c in times]
    return {"tls": percentile(tls, 0.5), "median": percentile(connack, 0.5), "p90": percentile(connack, 0.9)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", default="1000,10000", help="fleet sizes (gateways in the user list), comma-separated")
    ap.add_argument("--probes", type=int, default=100, help="connections timed, one after another, per run")
    ap.add_argument("--base-port", type=int, default=16400, help="first of the cluster's 30 loopback ports")
    args = ap.parse_args(argv)
    sizes = [int(n) for n in args.users.split(",")]
    version = subprocess.run(["nats-server", "--version"], capture_output=True, text=True).stdout.strip().split()[-1]
    print(f"\n### A certificate's user ({date.today().isoformat()}, {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, nats-server {version})\n")
    print(f"{args.probes} connections one after another to one node of three; milliseconds.\n")
    print("| gateways in the user list | certificate names the gateway by | TLS handshake, median | "
          "CONNECT to CONNACK, median | p90 |")
    print("|---:|---|---:|---:|---:|")
    for users in sizes:
        for uri in (True, False):
            r = measure(users, min(args.probes, users), uri=uri, base_port=args.base_port)
            print(f"| {users:,} | {'URI' if uri else 'subject only (before)'} | {r['tls'] * 1e3:.1f} | "
                  f"{r['median'] * 1e3:.1f} | {r['p90'] * 1e3:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
