"""Thousands of simulated gateways on a clustered centre broker, for bench/cluster.py and bench/storm.py.

tests/fleet_sim.py drives paho clients, whose TLS handshake blocks the whole worker process: fine
for a plain loopback mosquitto, too slow for thousands of mTLS sessions arriving at once. Here each
worker process runs its gateways as asyncio tasks over a small MQTT 3.1.1 client (the version
nats-server speaks), so handshakes overlap the way independent gateways' do. Each simulated
gateway behaves as the product's uplink (gateway/link/uplink.py) does:

- its own client certificate from the centre CA (``PKI/gw-NNNNN/gateway.crt``), so the broker maps
  it to that gateway's permissions;
- a clean session with the retained ``offline`` status as its last will, ``online`` on connecting;
- the same subscriptions as the uplink (``provisioning.broker_config.gateway_reads``: receipts, the
  centre status, the manifests and watchlists), at QoS 1 unless told otherwise; a refused receipt
  subscription ends the connection, as the uplink does;
- an in-memory outbox only the centre's receipts close, resent in ``seq`` order (alerts ahead of
  event batches) on every new connection, when the centre announces itself, and when unreceipted
  for ``republish_after_s``;
- events for learning: batches of scored events built with the product's own message code
  (``messages.events_body``, ``finalise``, ``pack_events``), queued in the same outbox;
- on a lost connection the next node of the list, after the uplink's own jittered ``Backoff``.

``Swarm`` is fleet_sim's ``Fleet`` with this worker: the same commands, progress and per-gateway
reports (so ``reconnect_delays``, ``percentile`` and ``histogram`` read both), plus ``ready``: the
times each session had its receipt subscription granted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import ssl
import struct
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from counterguard.core import messages  # noqa: E402
from counterguard.core.features import FEATURES_VERSION, N_FEATURES  # noqa: E402
from counterguard.gateway.link.uplink import Backoff  # noqa: E402
from counterguard.provisioning.broker_config import gateway_reads  # noqa: E402
from centre_support import PostgresServer  # noqa: E402
from counterguard.centre.cluster import Cluster, node_ports  # noqa: E402
from counterguard.centre.store import open_store  # noqa: E402
from counterguard.provisioning.ca import CertificateAuthority  # noqa: E402
from pki_support import issue_without_uri  # noqa: E402
from fleet_sim import (CST, Fleet, alert_body, gateway_id, heartbeat_body, placement, status_body,  # noqa: E402
                       worker_arguments)

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 1, 2, 3, 4, 8, 9, 12, 13, 14


# -- MQTT 3.1.1, as little as a gateway needs ------------------------------------------------------
def _text(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def packet(first: int, body: bytes) -> bytes:
    n, length = len(body), bytearray()
    while True:
        n, digit = divmod(n, 128)
        length.append(digit | (0x80 if n else 0))
        if not n:
            return bytes([first]) + bytes(length) + body


def connect_packet(client_id: str, keepalive: int, will_topic: str, will: str) -> bytes:
    flags = 0x02 | 0x04 | (1 << 3) | 0x20  # clean session, a will at QoS 1, retained
    return packet(CONNECT << 4, _text("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
                  + _text(client_id) + _text(will_topic) + _text(will))


def publish_packet(topic: str, payload: str | bytes, *, qos: int = 0, pid: int = 0, retain: bool = False) -> bytes:
    head = _text(topic) + (struct.pack("!H", pid) if qos else b"")
    return packet((PUBLISH << 4) | (qos << 1) | int(retain), head + (payload.encode() if isinstance(payload, str) else payload))


def subscribe_packet(pid: int, topics, qos: int) -> bytes:
    return packet((SUBSCRIBE << 4) | 0x02, struct.pack("!H", pid) + b"".join(_text(t) + bytes([qos]) for t in topics))


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        digit = (await reader.readexactly(1))[0]
        length += (digit & 0x7F) << shift
        if not digit & 0x80:
            break
        shift += 7
    return first >> 4, first & 0x0F, await reader.readexactly(length) if length else b""


def events_batch(gateway: str, first: int, count: int, rng: random.Random) -> str:
    """The body of a batch of ``count`` scored events (the gateway's events ``first`` on), as the
    gateway's upload builds it before the send-time fields: mostly green, with the model's inputs."""
    ts, decided = datetime.now(CST).isoformat(timespec="seconds"), messages.iso(time.time())
    items = []
    for n in range(first, first + count):
        level = "green" if rng.random() < 0.9 else "amber"
        items.append(json.dumps({
            "event_id": f"{gateway}-u{n:07d}", "counter": 1 + n % 4, "kind": "cash_withdrawal",
            "amount": float(rng.choice((300, 1500, 5000, 20000))), "ts": ts, "account_hash": f"{rng.getrandbits(256):064x}",
            "level": level, "score": round(rng.random() * (0.5 if level == "green" else 0.9), 4),
            "reasons": [] if level == "green" else ["large_cash"], "model_version": "fraud-mlp-1",
            "watchlist_version": 1, "features": [round(rng.random(), 5) for _ in range(N_FEATURES)],
            "shadow_score": None, "shadow_version": None, "decided_at": decided}, separators=(",", ":")))
    return messages.events_body(items, gateway_id=gateway, features_version=FEATURES_VERSION, first=first,
                                last=first + count - 1)


# -- one simulated gateway ---------------------------------------------------------------------------
class SwarmGateway:
    def __init__(self, index: int, pki: Path, nodes: list[int], *, backoff: Backoff, sub_qos: int = 0,
                 keepalive: int = 30, heartbeat_s: float = 30.0, republish_after_s: float = 30.0,
                 connect_timeout: float = 10.0):
        self.gateway_id = gateway_id(index)
        self.region, self.branch = placement(index)
        self.topics = messages.Topics(self.region, self.branch, self.gateway_id)
        self.subscriptions = gateway_reads({"region": self.region, "branch": self.branch, "cn": self.gateway_id})
        d = pki / self.gateway_id
        self.ctx = ssl.create_default_context(cafile=str(pki / "ca" / "ca.crt"))
        self.ctx.load_cert_chain(str(d / "gateway.crt"), str(d / "gateway.key"))
        self.nodes, self.node = nodes, index % len(nodes)
        self.backoff, self.sub_qos = backoff, sub_qos
        self.keepalive, self.heartbeat_s, self.republish_after_s = keepalive, heartbeat_s, republish_after_s
        self.connect_timeout = connect_timeout
        self.bdseq = self.seq = self.pid = 0
        # seq -> [kind ("alert" or "events"), body, created wall time, last sent (monotonic) or None]
        self.outbox: dict[int, list] = {}
        self.sent: list[tuple[int, str, float]] = []  # alerts: (seq, alert id, raised)
        self.uploads: list[tuple[int, int, int]] = []  # event batches: (seq, first event, events)
        self.events_topic = self.topics.for_kind("events")
        self.writer: asyncio.StreamWriter | None = None
        self.online = self.ready = False
        self.next_attempt = self.attempt_due = 0.0
        self.next_heartbeat = self.next_ping = 0.0
        self.connects: list[float] = []  # CONNACK accepted
        self.tried: list[float] = []  # when the back-off had scheduled each of those attempts
        self.ready_at: list[float] = []  # receipt subscription granted
        self.losses: list[float] = []
        self.attempts = self.refused = self.dropped = self.refused_connack = self.refused_subscriptions = 0
        self.publishes = self.centre_announcements = 0
        self.closing = False

    def _next_pid(self) -> int:
        self.pid = self.pid % 65535 + 1
        return self.pid

    def _write(self, data: bytes) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(data)

    # -- outbox -------------------------------------------------------------------------------------
    def raise_alert(self, now: float, rng: random.Random) -> None:
        self.seq += 1
        alert_id, body = alert_body(self.gateway_id, self.seq, now, rng)
        self.outbox[self.seq] = ["alert", body, time.time(), None]
        self.sent.append((self.seq, alert_id, now))
        if self.online:
            self.publish_due(now)

    def upload(self, events: int, now: float, rng: random.Random) -> None:
        """Queue the next ``events`` scored events as one batch for learning."""
        self.seq += 1
        first = sum(count for _, _, count in self.uploads)
        self.outbox[self.seq] = ["events", events_batch(self.gateway_id, first, events, rng), time.time(), None]
        self.uploads.append((self.seq, first, events))
        if self.online:
            self.publish_due(now)

    def publish_due(self, now: float, *, all_rows: bool = False) -> None:
        wall = time.time()
        for seq in sorted(self.outbox, key=lambda s: (self.outbox[s][0] == "events", s)):  # alerts first
            kind, body, created, last = row = self.outbox[seq]
            if not all_rows and last is not None and now - last < self.republish_after_s:
                continue
            payload = messages.finalise(body, seq=seq, region=self.region, branch=self.branch,
                                        historical=wall - created > 10)
            topic = self.topics.alert
            if kind == "events":
                topic, payload = self.events_topic, messages.pack_events(payload)
            self._write(publish_packet(topic, payload, qos=1, pid=self._next_pid()))
            row[3] = now
            self.publishes += 1

    def tick(self, now: float) -> None:
        if not self.online:
            return
        if now >= self.next_heartbeat:
            created = [row[2] for row in self.outbox.values()]
            self._write(publish_packet(self.topics.heartbeat, heartbeat_body(self.bdseq, now, created)))
            self.next_heartbeat = now + self.heartbeat_s
        if now >= self.next_ping:
            self._write(packet(PINGREQ << 4, b""))
            self.next_ping = now + self.keepalive / 2
        if self.outbox:
            self.publish_due(now)

    # -- connection ---------------------------------------------------------------------------------
    async def run(self, start_at: float) -> None:
        self.next_attempt = start_at
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        while not self.closing:
            await self._session()
            if self.closing:
                break
            self.node = (self.node + 1) % len(self.nodes)  # the uplink moves to the next broker
            delay = self.backoff.next()
            self.next_attempt = time.monotonic() + delay
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        self.attempts += 1
        self.bdseq += 1
        self.attempt_due = self.next_attempt
        deadline = time.monotonic() + self.connect_timeout
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.nodes[self.node], ssl=self.ctx), self.connect_timeout)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            self.refused += 1
            return
        self.writer = writer
        try:
            writer.write(connect_packet(self.gateway_id, self.keepalive, self.topics.status,
                                        status_body(self.gateway_id, "offline", self.bdseq)))
            try:
                kind, _, body = await asyncio.wait_for(read_packet(reader), max(0.1, deadline - time.monotonic()))
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ssl.SSLError):
                self.dropped += 1  # in, then closed (or left waiting) without a CONNACK: a broker not ready
                return
            if kind != CONNACK or len(body) < 2 or body[1] != 0:
                self.refused_connack += 1
                return
            now = time.monotonic()
            self.connects.append(now)
            self.tried.append(self.attempt_due)
            self.backoff.reset()
            self.online, self.ready = True, False
            sub_pid = self._next_pid()
            writer.write(subscribe_packet(sub_pid, self.subscriptions, self.sub_qos))
            writer.write(publish_packet(self.topics.status, status_body(self.gateway_id, "online", self.bdseq),
                                        qos=1, pid=self._next_pid(), retain=True))
            self.next_heartbeat = self.next_ping = now
            self.tick(now)
            self.publish_due(now, all_rows=True)  # what went out on the old connection may be lost with it
            while not self.closing:
                kind, flags, body = await asyncio.wait_for(read_packet(reader), self.keepalive * 1.5)
                if kind == SUBACK and struct.unpack("!H", body[:2])[0] == sub_pid:
                    if body[2] & 0x80:  # the receipts: without them the outbox never empties
                        self.refused_subscriptions += 1
                        return
                    self.ready = True
                    self.ready_at.append(time.monotonic())
                elif kind == PUBLISH:
                    self._on_publish(flags, body)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ssl.SSLError, ValueError):
            pass
        finally:
            if self.online and not self.closing:
                self.losses.append(time.monotonic())
            self.online = self.ready = False
            self.writer = None
            if not self.closing:
                writer.close()

    def _on_publish(self, flags: int, body: bytes) -> None:
        n = struct.unpack("!H", body[:2])[0]
        topic = body[2:2 + n].decode()
        qos = (flags >> 1) & 3
        at = 2 + n
        if qos:
            self._write(packet(PUBACK << 4, body[at:at + 2]))
            at += 2
        payload = body[at:]
        if topic == self.topics.receipt:
            for seq in messages.parse_receipt(payload):
                self.outbox.pop(seq, None)
        elif topic == messages.CENTRE_STATUS and not flags & 1:
            # A live "online": the centre is back and may have lost what it had not receipted.
            if messages.parse_centre_status(payload) == "online":
                self.centre_announcements += 1
                self.publish_due(time.monotonic(), all_rows=True)

    def close(self) -> None:
        self.closing = True
        if self.writer is not None and self.online:
            self.writer.write(packet(DISCONNECT << 4, b""))
            self.writer.close()

    def report(self) -> dict:
        return {"gateway_id": self.gateway_id, "region": self.region, "branch": self.branch, "sent": self.sent,
                "uploads": self.uploads, "outbox": sorted(self.outbox), "connects": self.connects, "tried": self.tried,
                "ready": self.ready_at, "losses": self.losses, "attempts": self.attempts,
                "publishes": self.publishes, "bdseq": self.bdseq, "refused": self.refused, "dropped": self.dropped,
                "refused_connack": self.refused_connack, "refused_subscriptions": self.refused_subscriptions,
                "centre_announcements": self.centre_announcements}


# -- a worker process: many gateways, one event loop ---------------------------------------------------
async def run_worker(args) -> None:
    rng = random.Random(args.seed)
    jitter = rng.random if args.jitter else (lambda: 1.0)
    nodes = [int(p) for p in args.nodes.split(",")]
    gateways = [SwarmGateway(i, Path(args.pki), nodes, backoff=Backoff(args.backoff_min, args.backoff_max, jitter),
                             sub_qos=args.sub_qos, heartbeat_s=args.heartbeat_s,
                             republish_after_s=args.republish_after_s)
                for i in range(args.first, args.first + args.count)]
    start = time.monotonic()
    tasks = [asyncio.ensure_future(gw.run(start + rng.random() * args.stagger_s)) for gw in gateways]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    due: list[tuple[float, SwarmGateway, int]] = []  # (when, gateway, events: 0 for an alert)
    pending = bytearray()
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)

    def emit(kind: str, body) -> None:
        sys.stdout.write(json.dumps({kind: body}) + "\n")
        sys.stdout.flush()

    def on_command() -> None:
        nonlocal pending
        try:
            chunk = os.read(stdin, 65536)
        except BlockingIOError:
            return
        if not chunk:
            stop.set()  # the parent went away
            return
        pending += chunk
        while b"\n" in pending:
            line, _, rest = bytes(pending).partition(b"\n")
            pending = bytearray(rest)
            command = json.loads(line)
            if command.get("stop"):
                stop.set()
            elif "raise" in command or "upload" in command:  # alerts (events 0) or batches of events
                t0 = time.monotonic()
                each, events = (command["upload"], command["events"]) if "upload" in command else (command["raise"], 0)
                due.extend((t0 + rng.random() * command["over_s"], gw, events) for gw in gateways for _ in range(each))
                due.sort(key=lambda d: -d[0])

    loop.add_reader(stdin, on_command)
    while not stop.is_set():
        now = time.monotonic()
        while due and due[-1][0] <= now:
            _, gw, events = due.pop()
            if events:
                gw.upload(events, now, rng)
            else:
                gw.raise_alert(now, rng)
        for gw in gateways:
            gw.tick(now)
        emit("progress", {"online": sum(gw.online for gw in gateways), "ready": sum(gw.ready for gw in gateways),
                          "outbox": sum(len(gw.outbox) for gw in gateways), "raised": sum(len(gw.sent) for gw in gateways),
                          "uploaded": sum(len(gw.uploads) for gw in gateways),
                          "due": len(due), "connects": sum(len(gw.connects) for gw in gateways)})
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except asyncio.TimeoutError:
            pass
    loop.remove_reader(stdin)
    for gw in gateways:
        gw.close()
    await asyncio.sleep(0.2)  # let the DISCONNECTs go out
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    emit("report", [gw.report() for gw in gateways])


def issue_certificates(pki: Path, gateways: int, *, uri: bool = True) -> None:
    """A centre CA under ``pki/ca`` and a certificate for each simulated gateway under ``pki/gw-NNNNN``;
    ``uri=False``: certificates as issued before they named the gateway by URI (tests/pki_support.py)."""
    ca = CertificateAuthority.create(pki / "ca")
    with ca.many():
        for n in range(gateways):
            region, branch = placement(n)
            if uri:
                ca.issue(gateway_id(n), role="gateway", region=region, branch=branch, out_dir=pki / gateway_id(n))
            else:
                issue_without_uri(ca, gateway_id(n), pki / gateway_id(n), region=region, branch=branch)


def stop_processes(procs) -> None:
    """SIGTERM each, then wait; one still busy after 30 s (a worker writing what it held) is killed."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


class ClusteredCentre:
    """``centre cluster up`` (three nodes) under ``work/run`` with the CA in ``work/ca``, PostgreSQL,
    and ``workers`` centre workers (``centre serve --config``, each its own process)."""

    def __init__(self, work: Path, *, base_port: int, workers: int = 2):
        self.work, self.n_workers = Path(work), workers
        self.cluster = Cluster(self.work / "run", nodes=3, base_port=base_port)
        self.nodes = [node_ports(base_port, i).mqtt for i in range(3)]
        self.workers: list[subprocess.Popen] = []
        self.pg = self.store = None

    def up(self, timeout: float = 120.0) -> "ClusteredCentre":
        self.cluster.up(ca_dir=self.work / "ca", timeout=timeout)
        self.pg = PostgresServer().start()
        url = self.pg.create_database("centre")
        self.conf = self.work / "centre.toml"
        self.conf.write_text((self.cluster.dir / "centre.toml").read_text().replace(
            f'url = "{(self.cluster.dir / "centre.db").resolve()}"', f'url = "{url}"'))
        self.workers = [self.serve() for _ in range(self.n_workers)]
        self.store = open_store(url)
        return self

    def serve(self) -> subprocess.Popen:
        """One more centre worker; its output goes to ``work/workerN.log``."""
        log = open(self.work / f"worker{len(list(self.work.glob('worker*.log'))) + 1}.log", "ab")
        try:
            return subprocess.Popen([sys.executable, "-m", "counterguard.cli", "centre", "serve", "--config",
                                     str(self.conf), "--no-dashboard"], stdout=log, stderr=log, cwd=ROOT)
        finally:
            log.close()

    def ledger(self) -> tuple[int, int]:
        """(alerts stored, distinct (gateway, alert id)) at the centre."""
        return self.store.count("alert"), len({(a["gateway_id"], a["alert_id"]) for a in self.store.alert_index()})

    def down(self) -> None:
        stop_processes(self.workers)  # what a killed worker held, the stream keeps
        if self.store is not None:
            self.store.close()
        self.cluster.down()
        if self.pg is not None:
            self.pg.stop()


def outcome(reports: list[dict]) -> tuple[int, int]:
    """(alerts the fleet raised, alerts still in its outboxes) from ``Swarm.stop``'s reports."""
    waiting = sum(len(set(r["outbox"]) - {seq for seq, _, _ in r["uploads"]}) for r in reports)
    return sum(len(r["sent"]) for r in reports), waiting


def upload_outcome(reports: list[dict]) -> tuple[int, int, int]:
    """(event batches the fleet queued, events in them, batches still in its outboxes)."""
    batches = [(seq, count) for r in reports for seq, _, count in r["uploads"]]
    waiting = sum(len(set(r["outbox"]) & {seq for seq, _, _ in r["uploads"]}) for r in reports)
    return len(batches), sum(count for _, count in batches), waiting


class Swarm(Fleet):
    """``gateways`` simulated mTLS gateways over the ``nodes`` (MQTT ports on 127.0.0.1) of a
    clustered broker, split over ``processes`` worker processes; certificates under ``pki``."""

    def __init__(self, pki: Path, nodes: list[int], *, sub_qos: int = 0, **fleet):
        super().__init__("127.0.0.1", nodes[0], **fleet)
        self.pki, self.nodes, self.sub_qos = Path(pki), list(nodes), sub_qos

    def upload_events(self, batches: int, events: int, over_s: float) -> int:
        """Every gateway queues ``batches`` batches of ``events`` scored events for learning at random
        moments over the next ``over_s`` seconds; returns how many events that is in all."""
        self._send({"upload": batches, "events": events, "over_s": over_s})
        return batches * events * self.gateways

    def worker_command(self, p: int, first: int, count: int) -> list[str]:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--pki", str(self.pki),
               "--nodes", ",".join(map(str, self.nodes)), "--sub-qos", str(self.sub_qos),
               "--first", str(first), "--count", str(count), "--seed", str(self.seed + p),
               "--backoff-min", str(self.backoff[0]), "--backoff-max", str(self.backoff[1]),
               "--heartbeat-s", str(self.heartbeat_s), "--republish-after-s", str(self.republish_after_s),
               "--stagger-s", str(self.stagger_s)]
        return cmd if self.jitter else cmd + ["--no-jitter"]


def _main(argv=None) -> None:
    w = argparse.ArgumentParser(description="one swarm worker process (started by Swarm)")
    w.add_argument("--pki", required=True)
    w.add_argument("--nodes", required=True, help="MQTT ports of the nodes, comma-separated")
    w.add_argument("--sub-qos", type=int, choices=(0, 1), default=0)
    worker_arguments(w)
    asyncio.run(run_worker(w.parse_args(argv)))


if __name__ == "__main__":
    _main()
