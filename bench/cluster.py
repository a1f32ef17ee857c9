"""The clustered centre under faults: simulated gateways (MQTT with their own certificates, alerts
resent until receipted, failing over to the next node) stream alerts into a three-node NATS
cluster ('counterguard centre cluster up') with two centre workers ('centre serve --config', each
its own process) writing to PostgreSQL, while

  (a) one broker node is SIGKILLed, then restarted,
  (b) one centre worker is SIGKILLed (and a new one started),
  (c) PostgreSQL restarts.

    .venv/bin/python bench/cluster.py [--gateways 1000] [--alerts 6] [--gap-s 12]

All gateways run in this one process: paho waits on select(), which takes no file descriptor above
1024, so one process carries about 330 TLS gateways. 1,000 need the fleet split over processes
(as bench/fleet.py does), which this bench does not do yet.

Prints the ledger (alerts sent, stored, stored twice, receipted), the intake rate, and for each
fault how long until the intake was back to half its rate before the fault and (node kill) until
every displaced gateway was connected again. Prints a Markdown section for docs/reliability.md.
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

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from centre_support import PostgresServer, SimGateway  # noqa: E402
from counterguard.centre.cluster import Cluster, node_ports  # noqa: E402
from counterguard.centre.store import open_store  # noqa: E402
from counterguard.core import messages  # noqa: E402
from counterguard.provisioning.ca import CertificateAuthority  # noqa: E402


class Gateway:
    """One simulated gateway: alerts kept until receipted, resent every ``resend_s``; on a lost
    connection it moves to the next node, as the real uplink does."""

    def __init__(self, n: int, pki: Path, nodes: list[int], resend_s: float = 5.0):
        self.cn = f"gw-{n:05d}"
        self.sim = SimGateway(None, None, self.cn, region="r1", branch=f"b{n // 50:03d}")
        self.nodes, self.node = nodes, n % len(nodes)
        self.pending: dict[int, tuple[float, str]] = {}
        self.receipted: set[int] = set()
        self.lock = threading.Lock()
        self.resend_s = resend_s
        self.connected = threading.Event()
        self.lost_at: float | None = None
        self.back_after: list[float] = []
        self.refused_subscriptions = 0
        c = self.sim.client
        c.tls_set(ca_certs=str(pki / "ca" / "ca.crt"), certfile=str(pki / self.cn / "gateway.crt"),
                  keyfile=str(pki / self.cn / "gateway.key"))
        c.reconnect_delay_set(0.2, 2.0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe

    def start(self):
        self.sim.client.connect_async("127.0.0.1", self.nodes[self.node], keepalive=10)
        self.sim.client.loop_start()

    def _on_connect(self, client, userdata, flags, rc, props):
        if rc.is_failure:
            return
        client.subscribe([(self.sim.topics.receipt, 1)])
        client.publish(self.sim.topics.status, self.sim.status("online"), qos=1, retain=True)
        if self.lost_at is not None:
            self.back_after.append(time.monotonic() - self.lost_at)
            self.lost_at = None
        self.connected.set()
        self.resend(force=True)

    def _on_subscribe(self, client, userdata, mid, reason_codes, props):
        # A clustered broker refuses subscriptions while it elects a leader; without the receipt
        # subscription no receipt ever comes on this connection. The product's uplink leaves the
        # connection; this simulated gateway asks again a moment later, which the cluster then grants.
        if any(rc.is_failure for rc in reason_codes):
            self.refused_subscriptions += 1
            timer = threading.Timer(1.0, lambda: client.subscribe([(self.sim.topics.receipt, 1)]))
            timer.daemon = True
            timer.start()

    def _on_disconnect(self, client, userdata, flags, rc, props):
        self.connected.clear()
        if self.lost_at is None:
            self.lost_at = time.monotonic()
        self.node = (self.node + 1) % len(self.nodes)
        client._host, client._port = "127.0.0.1", self.nodes[self.node]  # paho reconnects to the next node

    def _on_message(self, client, userdata, msg):
        seqs = messages.parse_receipt(msg.payload)
        with self.lock:
            for s in seqs:
                self.pending.pop(s, None)
                self.receipted.add(s)

    def raise_alert(self):
        seq, _, payload = self.sim.alert_payload()
        with self.lock:
            self.pending[seq] = (time.monotonic(), payload)
        self.sim.client.publish(self.sim.topics.alert, payload, qos=1)

    def resend(self, force=False):
        now = time.monotonic()
        with self.lock:
            due = [(s, p) for s, (t, p) in self.pending.items() if force or now - t >= self.resend_s]
            for s, p in due:
                self.pending[s] = (now, p)
        for _, p in due:
            self.sim.client.publish(self.sim.topics.alert, p, qos=1)


def serve(conf: Path, log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    p = subprocess.Popen([sys.executable, "-m", "counterguard.cli", "centre", "serve", "--config", str(conf),
                          "--no-dashboard"], stdout=out, stderr=out)
    out.close()
    return p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gateways", type=int, default=1000)
    ap.add_argument("--alerts", type=int, default=6, help="alerts per gateway per phase (4 phases)")
    ap.add_argument("--gap-s", type=float, default=12.0, help="seconds between faults")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cg-cluster-bench-"))
    t_setup = time.monotonic()
    ca = CertificateAuthority.create(work / "ca")
    for n in range(args.gateways):
        ca.issue(f"gw-{n:05d}", role="gateway", region="r1", branch=f"b{n // 50:03d}", out_dir=work / f"gw-{n:05d}")
    cluster = Cluster(work / "run", nodes=3, base_port=15200)
    cluster.up(ca_dir=work / "ca")
    pg = PostgresServer().start()
    url = pg.create_database("centre")
    conf = work / "centre.toml"
    conf.write_text((cluster.dir / "centre.toml").read_text().replace(
        f'url = "{(cluster.dir / "centre.db").resolve()}"', f'url = "{url}"'))
    workers = [serve(conf, work / f"worker{i}.log") for i in (1, 2)]
    store = open_store(url)
    nodes = [node_ports(cluster.base_port, i).mqtt for i in range(3)]
    fleet = [Gateway(n, work, nodes) for n in range(args.gateways)]
    for g in fleet:
        g.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(g.connected.is_set() for g in fleet):
        time.sleep(0.2)
    setup_s = time.monotonic() - t_setup
    print(f"setup {setup_s:.1f} s: {sum(g.connected.is_set() for g in fleet)}/{len(fleet)} gateways connected",
          flush=True)

    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sampler():
        while not stop.is_set():
            try:
                samples.append((time.monotonic() - t0, store.count("alert")))
            except Exception:  # PostgreSQL restarting
                pass
            stop.wait(0.5)

    def sender(phases):
        per_phase = args.alerts * len(fleet)
        for _ in range(phases):
            start = time.monotonic()
            for i in range(per_phase):
                fleet[i % len(fleet)].raise_alert()
                if i % 200 == 199:  # spread the phase over gap_s
                    lag = start + args.gap_s * (i + 1) / per_phase - time.monotonic()
                    if lag > 0:
                        time.sleep(lag)
            for g in fleet:
                g.resend()

    def resender():
        while not stop.wait(2.0):
            for g in fleet:
                if g.connected.is_set():
                    g.resend()

    threading.Thread(target=sampler, daemon=True).start()
    threading.Thread(target=resender, daemon=True).start()
    send = threading.Thread(target=sender, args=(4,), daemon=True)
    send.start()
    faults = {}
    time.sleep(args.gap_s)
    # (a) a broker node
    on_node2 = [g for g in fleet if g.node == 1]
    faults["node"] = time.monotonic() - t0
    cluster.kill_node(1)
    time.sleep(3)
    cluster.start_node(1)
    t_restart = time.monotonic()
    cluster.wait_healthy(60)
    node_healthy_s = time.monotonic() - t_restart
    time.sleep(max(0.0, args.gap_s - 3))
    # (b) a centre worker
    faults["worker"] = time.monotonic() - t0
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait(10)
    workers[0] = serve(conf, work / "worker3.log")
    time.sleep(args.gap_s)
    # (c) PostgreSQL
    faults["postgres"] = time.monotonic() - t0
    subprocess.run(pg._as + [f"{pg.bin}/pg_ctl", "-D", pg.dir, "-m", "fast", "-w", "restart", "-o",
                             f"-p {pg.port} -k {pg.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
                             "-l", os.path.join(pg.dir, "server.log")], capture_output=True, timeout=120)
    send.join()
    sent = sum(g.sim.seq for g in fleet)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and any(g.pending for g in fleet):
        time.sleep(0.5)
    done_s = time.monotonic() - t0
    time.sleep(1)
    stop.set()
    stored = store.count("alert")
    distinct = len({(a["gateway_id"], a["alert_id"]) for a in store.alert_index()})
    unreceipted = sum(len(g.pending) for g in fleet)
    back = [d for g in on_node2 for d in g.back_after[:1]]

    def recovery(at: float) -> str:
        before = [c for t, c in samples if at - 6 <= t <= at]
        if len(before) < 2:
            return "n/a"
        rate = (before[-1] - before[0]) / 6
        prev = None
        for t, c in samples:
            if t <= at:
                prev = (t, c)
                continue
            if prev and (c - prev[1]) / max(t - prev[0], 1e-6) >= rate / 2:
                return f"{t - at:.1f} s"
            prev = (t, c)
        return "not within the run"

    steady = [c for t, c in samples if 1 <= t <= faults["node"]]
    steady_rate = (steady[-1] - steady[0]) / max(faults["node"] - 1, 1) if len(steady) > 1 else 0
    cores = os.cpu_count()
    print(f"\n### Clustered centre under faults ({date.today().isoformat()}, {platform.node()}, {cores} cores, "
          f"{platform.python_version()})\n")
    print(f"{len(fleet)} gateways, 3 nats-server {subprocess.run(['nats-server', '--version'], capture_output=True, text=True).stdout.strip().split()[-1]} "
          f"nodes, 2 centre workers, PostgreSQL; {sent} alerts sent over {4 * args.gap_s:.0f} s.\n")
    print("| measure | value |\n| --- | --- |")
    print(f"| alerts sent / stored / stored twice | {sent} / {stored} / {stored - distinct} |")
    print(f"| alerts still unreceipted at the end | {unreceipted} |")
    print(f"| receipt subscriptions refused (asked again 1 s later) | {sum(g.refused_subscriptions for g in fleet)} |")
    print(f"| intake rate before the faults | {steady_rate:.0f} alerts/s (what the fleet offered) |")
    print(f"| every alert stored and receipted | {done_s:.1f} s after the start |")
    print(f"| (a) node SIGKILLed: intake back to half rate | {recovery(faults['node'])} |")
    print(f"| (a) displaced gateways reconnected (median / max) | "
          f"{(sorted(back)[len(back) // 2] if back else float('nan')):.1f} s / {max(back or [float('nan')]):.1f} s "
          f"({len(back)} of {len(on_node2)}) |")
    print(f"| (a) restarted node healthy again | {node_healthy_s:.1f} s after its restart |")
    print(f"| (b) worker SIGKILLed: intake back to half rate | {recovery(faults['worker'])} |")
    print(f"| (c) PostgreSQL restarted: intake back to half rate | {recovery(faults['postgres'])} |")
    for g in fleet:
        g.sim.client.loop_stop()
    for w in workers:
        w.terminate()
        w.wait(30)
    store.close()
    cluster.down()
    pg.stop()
    return 0 if stored == distinct == sent and not unreceipted else 1


if __name__ == "__main__":
    raise SystemExit(main())
