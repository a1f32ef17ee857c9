"""The clustered centre on a real three-node NATS cluster (Debian's nats-server, JetStream + MQTT):
the gateways' certificates and permissions hold as on mosquitto, retained status and last wills
reach the fleet view, and alerts and uploaded events for learning are stored exactly once and
receipted while a broker node or a centre worker is killed. Skipped, with the reason, where nats-server or nats-py is not installed
(setup.sh installs both)."""

from __future__ import annotations

import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from counterguard.centre.cluster import Cluster, ClusterError, find_nats_server, node_ports
from counterguard.centre.config import CentreConfigError, load_config
from counterguard.centre.store import open_store
from counterguard.core import messages
from counterguard.core.clock import Clock
from counterguard.gateway.link.upload import EventUpload
from counterguard.gateway.link.uplink import Uplink
from counterguard.gateway.scoring.assessor import Assessor
from counterguard.gateway.scoring.watchlist import Watchlist
from counterguard.gateway.store.db import Store
from counterguard.provisioning.ca import CertificateAuthority

from centre_support import SimGateway, postgres  # noqa: F401  (fixture)
from conftest import wait_until
from pki_support import issue_without_uri
from test_event_upload import MODEL, day_of_events, score_and_keep
from test_uplink import BRANCH, GW, REGION, raise_alert

try:
    find_nats_server()
    import nats  # noqa: F401
except (ClusterError, ImportError) as exc:
    pytest.skip(f"clustered centre not testable here: {exc} (setup.sh installs nats-server and nats-py)",
                allow_module_level=True)

REPO = Path(__file__).resolve().parent.parent


def _free_base() -> int:
    """A base port whose 10 x nodes ports are all free on loopback."""
    for _ in range(100):
        base = random.randrange(20000, 30000, 10)
        try:
            for i in range(3):
                for port in node_ports(base, i).__dict__.values():
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports for a cluster")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    ca = CertificateAuthority.create(base / "ca")
    ca.issue(GW, role="gateway", region=REGION, branch=BRANCH, out_dir=base / GW)
    ca.issue("gw-a", role="gateway", region="east", branch="b012", out_dir=base / "gw-a")
    ca.issue("gw-b", role="gateway", region="east", branch="b013", out_dir=base / "gw-b")
    issue_without_uri(ca, "gw-old", base / "gw-old", region="east", branch="b014")
    rogue = CertificateAuthority.create(base / "rogue-ca")
    rogue.issue("gw-a", role="gateway", region="east", branch="b012", out_dir=base / "rogue")
    c = Cluster(base / "run", nodes=3, base_port=_free_base())
    c.up(ca_dir=base / "ca")
    c.pki = base
    yield c
    c.down()


def gateway_tls(cluster, cn: str, ca_dir: str = "ca"):
    return (str(cluster.pki / ca_dir / "ca.crt"), str(cluster.pki / cn / "gateway.crt"), str(cluster.pki / cn / "gateway.key"))


def sim_gateway(cluster, cn: str, branch: str, *, node: int, keepalive: int = 60) -> SimGateway:
    """A simulated gateway of region ``east`` on its own certificate, connecting to ``node``."""
    g = SimGateway(None, None, cn, region="east", branch=branch)
    ca, cert, key = gateway_tls(cluster, cn)
    g.client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
    g.client.connect("127.0.0.1", node_ports(cluster.base_port, node).mqtt, keepalive=keepalive)
    g.client.loop_start()
    return g


class Probe:
    """An MQTT client with a gateway's certificate, recording what it receives."""

    def __init__(self, cluster, cn, node=0, *, client_id=None, ca_dir="ca", cert_dir=None, tls=None):
        self.got, self.refused, self.lost = [], threading.Event(), threading.Event()
        self.ok = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or cn)
        ca, cert, key = tls or gateway_tls(cluster, cert_dir or cn, ca_dir)
        c.tls_set(ca_certs=str(cluster.pki / "ca" / "ca.crt"), certfile=cert, keyfile=key)
        c.on_connect = lambda cl, u, f, rc, p: (self.refused if rc.is_failure else self.ok).set()
        c.on_disconnect = lambda cl, u, f, rc, p: self.lost.set()
        c.on_message = lambda cl, u, m: self.got.append((m.topic, m.payload))
        self.client = c
        try:
            c.connect("127.0.0.1", node_ports(cluster.base_port, node).mqtt)
            c.loop_start()
        except (OSError, ssl.SSLError):
            self.refused.set()

    def accepted(self, timeout=10) -> bool:
        wait_until(lambda: self.ok.is_set() or self.refused.is_set() or self.lost.is_set(), timeout)
        return self.ok.is_set() and not self.lost.is_set()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def worker_store(tmp_path):
    return str(tmp_path / "centre.db")


@pytest.fixture
def workers(cluster):
    from counterguard.centre.jetstream import JetStreamWorker

    made = []

    def make(url, n=1):
        for i in range(n):
            made.append(JetStreamWorker(open_store(url), servers=cluster.servers(), tls=cluster.worker_tls(),
                                        client_id=f"test-worker-{len(made) + 1}").start())
        return made[-n:]

    yield make
    for w in made:
        w.stop()
        w.store.close()


def test_up_writes_a_centre_config_and_status_names_every_healthy_node(cluster):
    cfg = load_config(cluster.dir / "centre.toml")
    assert cfg.broker.engine == "jetstream" and cfg.broker.servers == cluster.servers()
    out = subprocess.run([sys.executable, "-m", "counterguard.cli", "centre", "cluster", "status", "--dir",
                          str(cluster.dir)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert [line.split()[:2] for line in out.stdout.splitlines()] == [["n1", "healthy"], ["n2", "healthy"],
                                                                       ["n3", "healthy"]]


def test_a_jetstream_centre_config_without_servers_is_refused(tmp_path):
    f = tmp_path / "centre.toml"
    f.write_text('[broker]\nengine = "jetstream"\n')
    with pytest.raises(CentreConfigError, match="broker.servers"):
        load_config(f)
    f.write_text('[broker]\nengine = "kafka"\n')
    with pytest.raises(CentreConfigError, match="broker.engine must be one of mqtt, jetstream"):
        load_config(f)


def test_a_gateway_certificate_reaches_exactly_its_own_topics(cluster):
    a = Probe(cluster, "gw-a", node=0)
    b = Probe(cluster, "gw-b", node=1)
    assert a.accepted() and b.accepted()
    a_root, b_root = "counterguard/v1/east/b012/gw-a", "counterguard/v1/east/b013/gw-b"
    a.client.subscribe([(f"{b_root}/receipt", 1), (f"{a_root}/receipt", 1)])
    b.client.subscribe([(f"{b_root}/receipt", 1), (f"{a_root}/alert", 1)])  # b may not read a's alerts
    time.sleep(0.5)
    # The centre's side: a plain NATS subscriber with the centre worker's certificate.
    import asyncio

    import nats

    async def centre_side():
        ctx = ssl.create_default_context(cafile=cluster.worker_tls()["ca_certs"])
        ctx.load_cert_chain(cluster.worker_tls()["certfile"], cluster.worker_tls()["keyfile"])
        nc = await nats.connect(servers=cluster.servers(), tls=ctx)
        seen = []

        async def heard(m):
            seen.append(m.subject)

        await nc.subscribe("counterguard.v1.>", cb=heard)
        await nc.flush()
        a.client.publish(f"{a_root}/alert", b"{}", qos=1)
        a.client.publish(f"{b_root}/alert", b"{}", qos=1)      # forged: as gw-b
        a.client.publish(f"{a_root}/receipt", b"{}", qos=1)    # receipts are the centre's to write
        await asyncio.sleep(1.0)
        await nc.publish(f"{b_root}/receipt".replace("/", "."), b'{"seqs":[1]}')
        await nc.flush()
        await asyncio.sleep(1.0)
        await nc.close()
        return seen

    seen = asyncio.run(centre_side())
    assert seen.count("counterguard.v1.east.b012.gw-a.alert") == 1
    assert "counterguard.v1.east.b013.gw-b.alert" not in seen
    assert "counterguard.v1.east.b012.gw-a.receipt" not in seen
    assert wait_until(lambda: (f"{b_root}/receipt", b'{"seqs":[1]}') in b.got, 5)
    assert not [t for t, _ in a.got if t.startswith(b_root)]  # a never sees b's receipts
    assert not [t for t, _ in b.got if t.startswith(a_root)]  # nor b a's alerts
    a.close(), b.close()
    # Another CA's certificate for the same name gets nothing.
    rogue = Probe(cluster, "gw-a", cert_dir="rogue", client_id="gw-a-rogue")
    assert not rogue.accepted(5)
    rogue.close()


def test_a_certificate_from_before_the_uri_still_sends_alerts_and_gets_receipts(cluster, workers, worker_store):
    """Gateways in the field whose certificates name them by subject only keep working until renewed."""
    (worker,) = workers(worker_store)
    g = sim_gateway(cluster, "gw-old", "b014", node=1)
    try:
        assert g._ready.wait(10)
        seq, _, payload = g.alert_payload()
        g.publish("alert", payload, wait=False)
        assert g.wait_for(lambda s: seq in s.receipted, 15)
        assert worker.store.count("alert") == 1
    finally:
        g.client.disconnect()
        g.client.loop_stop()


def test_retained_status_and_the_last_will_reach_the_fleet_view(cluster, workers, worker_store):
    (worker,) = workers(worker_store)
    g = sim_gateway(cluster, "gw-a", "b012", node=2, keepalive=5)
    assert g._ready.wait(10)
    assert worker.wait_for(lambda w: (w.store.gateway("gw-a") or {}).get("state") == "online", 15)
    # A late reader (the dashboard of a new centre) finds the retained status on any node.
    t = cluster.worker_tls()
    late = Probe(cluster, "centre", node=0, client_id="dashboard-reader", tls=(t["ca_certs"], t["certfile"], t["keyfile"]))
    assert late.accepted()
    late.client.subscribe("counterguard/v1/east/b012/gw-a/status", 1)
    assert wait_until(lambda: late.got, 5)
    assert b'"online"' in late.got[0][1]
    late.close()
    # The gateway vanishes without a goodbye: its will says offline.
    g.client._sock.close() if g.client._sock else None
    g.client.loop_stop()
    assert worker.wait_for(lambda w: (w.store.gateway("gw-a") or {}).get("state") == "offline", 30)


def score(assessor: Assessor, body: dict) -> str:
    """Score and keep one counter event at this module's gateway; its level."""
    return score_and_keep(assessor, body, gateway_id=GW)[1].verdict.level


def test_alerts_and_uploads_are_stored_once_and_receipted_while_the_gateways_node_is_killed(cluster, workers,
                                                                                             postgres, tmp_path):
    """Two workers on PostgreSQL; the gateway (the real uplink, its events for learning uploaded by the
    real EventUpload) on node 1, which is SIGKILLed mid-stream and restarted: every alert and every
    uploaded event is in the store exactly once, and the gateway's outbox empties."""
    url = postgres.create_database(f"cluster_{os.getpid()}_{random.randrange(10**6)}")
    w1, w2 = workers(url, 2)
    n1 = node_ports(cluster.base_port, 0).mqtt
    hosts = ", ".join(f"127.0.0.1:{node_ports(cluster.base_port, i).mqtt}" for i in range(3))
    assert hosts.startswith(f"127.0.0.1:{n1}")
    with Store(tmp_path / "gateway.db", synchronous="NORMAL") as store:
        watchlist = Watchlist(store)
        watchlist.apply({"version": 1, "full": True, "add": ["6217000099887766554"]})
        assessor = Assessor(store, watchlist, MODEL, MODEL.thresholds)
        scored = day_of_events(400, "up")
        uploaded = {f"ev-{n}" for n in range(200)} | {body["event_id"] for body in scored}  # every event kept
        upload = EventUpload(store, watchlist.hash, gateway_id=GW, batch_events=40, interval_s=0.5, check_every_s=0)
        up = Uplink(store, watchlist, host=hosts, port=1, gateway_id=GW, region=REGION, branch=BRANCH,
                    heartbeat_s=1.0, republish_after_s=3.0, backoff_min=0.2, backoff_max=1.0,
                    tls=gateway_tls(cluster, GW), clock=Clock(assume_synced=True), upload=upload).start()
        try:
            assert wait_until(lambda: up.connected, 15)
            assert up.port == n1
            for n in range(100):
                raise_alert(store, n)
            levels = [score(assessor, body) for body in scored[:200]]
            up.wake()
            cluster.kill_node(0)           # the gateway's own node, mid-stream
            for n in range(100, 200):
                raise_alert(store, n)
            levels += [score(assessor, body) for body in scored[200:]]
            up.wake()
            assert wait_until(lambda: up.connected and up.port != n1, 20), "the gateway did not move to another node"
            cluster.start_node(0)   # back, catching up in the background; nothing waits on it
            assert wait_until(lambda: store.outbox_depth() == 0 and store.open_event_batches() == 0
                              and upload.queued_events == len(uploaded), 60), (
                f"outbox still {store.outbox_depth()}, {upload.queued_events} of {len(uploaded)} events queued; "
                f"uplink {up.stats}, workers {w1.stats} {w2.stats}")
        finally:
            up.stop()
    alerts_raised = 200 + sum(level in ("amber", "red") for level in levels)
    assert alerts_raised > 200  # the scored events raised alerts of their own, sent beside their upload
    with open_store(url) as check:
        assert check.count("alert") == alerts_raised
        assert len({a["alert_id"] for a in check.alert_index()}) == alerts_raised
        kept = [e["event_id"] for e in check.events()]
        assert len(kept) == check.event_count() == len(uploaded)
        assert set(kept) == uploaded
    assert w1.stats.stored + w2.stats.stored >= alerts_raised


def test_a_killed_centre_worker_leaves_its_share_to_the_others(cluster, workers, tmp_path):
    """'centre serve --config' in its own process takes the stream; SIGKILLed, the alerts it held
    unacknowledged go to the remaining worker, and the store has each once."""
    url = str(tmp_path / "centre.db")
    conf = tmp_path / "centre.toml"
    conf.write_text((cluster.dir / "centre.toml").read_text().replace(str((cluster.dir / "centre.db").resolve()), url))
    proc = subprocess.Popen([sys.executable, "-m", "counterguard.cli", "centre", "serve", "--config", str(conf),
                             "--no-dashboard"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        said = []
        while len(said) < 30 and not (said and "worker(s) on the intake stream" in said[-1]):
            said.append(proc.stdout.readline())
            if not said[-1]:
                break
        assert "worker(s) on the intake stream" in said[-1], "".join(said)
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
        (survivor,) = workers(url)
        g = sim_gateway(cluster, "gw-b", "b013", node=1)
        assert g._ready.wait(10)
        sent = []
        for i in range(300):
            seq, alert_id, payload = g.alert_payload()
            g.publish("alert", payload, wait=False)
            sent.append(seq)
            if i == 100:
                proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert g.wait_for(lambda s: set(sent) <= s.receipted, 45), f"{len(set(sent) - g.receipted)} not receipted"
        g.client.disconnect()
        g.client.loop_stop()
        with open_store(url) as check:
            assert check.count("alert") == 300
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_worker_behind_the_stream_holds_back_instead_of_taking_every_message_twice(cluster, tmp_path):
    """1,800 alerts wait in the intake stream; the worker's store takes 0.4 s for each 50 (14 s in
    all, longer than the consumer's 10 s ack_wait). A worker that fetched them all would leave the
    later ones waiting past ack_wait and be handed them again; holding at most 100 unacknowledged,
    it stores every alert from its first delivery."""
    import asyncio

    import nats

    from counterguard.centre.jetstream import JetStreamWorker

    g = SimGateway(None, None, "gw-a", region="east", branch="b012")
    made = [g.alert_payload() for _ in range(1800)]
    payloads = [p for _, _, p in made]
    ours, ids = {p.encode() for p in payloads}, {a for _, a, _ in made}

    async def fill():
        ctx = ssl.create_default_context(cafile=cluster.worker_tls()["ca_certs"])
        ctx.load_cert_chain(cluster.worker_tls()["certfile"], cluster.worker_tls()["keyfile"])
        nc = await nats.connect(servers=cluster.servers(), tls=ctx)
        js = nc.jetstream(timeout=30)
        for i in range(0, len(payloads), 100):
            await asyncio.gather(*(js.publish("counterguard.v1.east.b012.gw-a.alert", p.encode())
                                   for p in payloads[i:i + 100]))
        await nc.close()

    deliveries = []

    class SlowStoreWorker(JetStreamWorker):
        def _write(self, batch):
            time.sleep(0.4)  # PostgreSQL under load
            # Only this test's alerts: an earlier test's leftovers may rightly come a second time.
            deliveries.extend(m.metadata.num_delivered for _, _, m in batch if m.data in ours)
            super()._write(batch)

    store = open_store(str(tmp_path / "centre.db"))
    worker = SlowStoreWorker(store, servers=cluster.servers(), tls=cluster.worker_tls(), client_id="slow-worker",
                             fetch_max=50, batch_max=50, max_held=100)
    try:
        # The stream and its consumer exist (a worker has run), and every alert waits in it before
        # the slow worker joins.
        JetStreamWorker(store, servers=cluster.servers(), tls=cluster.worker_tls(), client_id="first").start().stop()
        asyncio.run(fill())
        worker.start()
        stored = lambda: ids & {a["alert_id"] for a in store.alert_index()}  # noqa: E731
        assert wait_until(lambda: stored() == ids, 60), f"{len(stored())} of 1800 stored"
    finally:
        worker.stop()
        store.close()
    assert max(deliveries) == 1, f"{sum(d > 1 for d in deliveries)} messages were handed out again"
    assert len(deliveries) == 1800
