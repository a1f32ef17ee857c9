"""The generated broker config, against a real mosquitto: only certificates from the centre CA get
in, a revoked one does not, and each gateway speaks and hears only for itself."""

from __future__ import annotations

import getpass
import grp
import json
import os
import pwd
import shutil
import socket
import stat
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from counterguard.gateway.link.broker import find_mosquitto, free_port
from counterguard.core import manifest as signed
from counterguard.core.manifest import gateway_manifest_topics
from counterguard.core.messages import CENTRE_STATUS, Topics
from counterguard.provisioning.broker_config import (
    MESSAGE_SIZE_LIMIT,
    gateway_reads,
    gateway_writes,
    write_broker_config,
)
from counterguard.provisioning.ca import CertificateAuthority

A_ROOT = "counterguard/v1/east/b012/gw-a"
B_ROOT = "counterguard/v1/east/b013/gw-b"


class TlsBroker:
    """mosquitto run on the generated config (its listener moved to a free loopback port)."""

    def __init__(self, conf: Path):
        self.conf = conf
        self.port = int(next(l.split()[1] for l in conf.read_text().splitlines() if l.startswith("listener ")))
        self.proc = None

    def start(self):
        log = open(self.conf.parent / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([find_mosquitto(), "-c", str(self.conf)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.conf.parent / "mosquitto.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Client:
    """A TLS MQTT client with a certificate; records what it receives."""

    def __init__(self, port, ca, cert=None, key=None, name="probe", will=None):
        self.messages = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.refused = threading.Event()
        self.dropped = threading.Event()  # the broker closed a connection it had accepted
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
        self.client.tls_set(ca_certs=str(ca), certfile=cert and str(cert), keyfile=key and str(key))
        if will:
            self.client.will_set(*will, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        try:
            self.client.connect("127.0.0.1", port)
        except (ssl.SSLError, OSError):
            self.refused.set()
            return
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        (self.refused if reason_code.is_failure else self.connected).set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        (self.dropped if self.connected.is_set() else self.refused).set()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload))
            self.cond.notify_all()

    def is_refused(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected.is_set():
                return False
            if self.refused.is_set():
                return True
            time.sleep(0.02)
        return not self.connected.is_set()

    def subscribe(self, *topics):
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe([(t, 1) for t in topics])
        assert done.wait(20), "no SUBACK"

    def publish(self, topic, body, retain=False):
        payload = body if isinstance(body, bytes) else json.dumps(body)
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(20)

    def wait_for(self, topic, timeout=20):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(t == topic for t, _ in self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.1))
        return True

    def topics(self):
        with self.cond:
            return [t for t, _ in self.messages]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    base = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.create(base / "ca")
    ca.issue("gw-a", role="gateway", region="east", branch="b012", out_dir=base / "gw-a")
    ca.issue("gw-b", role="gateway", region="east", branch="b013", out_dir=base / "gw-b")
    ca.issue("gw-c", role="gateway", region="west", branch="b100", out_dir=base / "gw-c")
    ca.issue("centre-1", role="centre", out_dir=base / "centre")
    rogue = CertificateAuthority.create(base / "rogue-ca")
    rogue.issue("gw-a", role="gateway", region="east", branch="b012", out_dir=base / "rogue")
    return base, ca


def _broker(base, ca, name):
    # run_as: the test's own user can read the pytest temp dir; the default (mosquitto) cannot
    conf = write_broker_config(ca, base / name, host="127.0.0.1", port=free_port(), run_as=getpass.getuser())
    return TlsBroker(conf).start()


@pytest.fixture(scope="module")
def broker(pki):
    base, ca = pki
    b = _broker(base, ca, "broker")
    yield b
    b.stop()


@pytest.fixture
def connect(pki, broker):
    base, _ = pki
    opened = []

    def _connect(who, *, ca_dir="ca", port=None, client_id=None, will=None):
        d = base / who
        c = Client(port or broker.port, base / ca_dir / "ca.crt", d / f"{'centre' if who == 'centre' else 'gateway'}.crt",
                   d / f"{'centre' if who == 'centre' else 'gateway'}.key", name=client_id or f"{who}-{len(opened)}",
                   will=will)
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        c.close()


def test_a_gateway_publishes_under_its_root_and_the_centre_reads_it(connect):
    centre = connect("centre")
    assert not centre.is_refused()
    centre.subscribe("counterguard/v1/#")
    gw = connect("gw-a")
    assert not gw.is_refused()
    gw.publish(f"{A_ROOT}/alert", {"seq": 1})
    assert centre.wait_for(f"{A_ROOT}/alert")


def test_a_gateway_cannot_publish_as_another(connect):
    centre = connect("centre")
    centre.subscribe("counterguard/v1/#")
    gw = connect("gw-a")
    assert not gw.is_refused()
    gw.publish(f"{B_ROOT}/alert", {"seq": 99, "forged": True})
    gw.publish(f"{B_ROOT}/status", {"state": "offline"})
    gw.publish("counterguard/v1/all/manifest/thresholds", {"forged": True})
    gw.publish(f"{A_ROOT}/manifest/model", {"forged": True})
    gw.publish(f"{A_ROOT}/heartbeat", {"seq": 2})  # the same connection, sent last: once it is in, the rest were refused
    assert centre.wait_for(f"{A_ROOT}/heartbeat")
    assert centre.topics() == [f"{A_ROOT}/heartbeat"]


def test_a_gateway_reads_its_own_region_and_all_downlink_but_not_anothers(connect):
    centre = connect("centre")
    assert not centre.is_refused()
    centre.publish(f"{B_ROOT}/manifest/watchlist", {"for": "gw-b"}, retain=True)
    centre.publish(f"{B_ROOT}/receipt", {"seqs": [1]}, retain=True)
    centre.publish("counterguard/v1/west/manifest/thresholds", {"for": "west"}, retain=True)
    gw = connect("gw-a")
    assert not gw.is_refused()
    gw.subscribe(*gateway_manifest_topics(A_ROOT, "east"), f"{A_ROOT}/receipt", CENTRE_STATUS)
    gw.subscribe(f"{B_ROOT}/#", "counterguard/v1/west/manifest/#", "counterguard/v1/#")
    for topic in (f"{A_ROOT}/manifest/watchlist", "counterguard/v1/east/manifest/model",
                  "counterguard/v1/all/manifest/thresholds", f"{A_ROOT}/receipt", CENTRE_STATUS):
        centre.publish(topic, {"to": "gw-a"})
        assert gw.wait_for(topic), topic
    assert not [t for t in gw.topics() if "gw-b" in t or "/west/" in t]


def test_a_certificate_from_another_ca_is_refused(connect, pki, broker):
    base, _ = pki
    c = Client(broker.port, base / "ca" / "ca.crt", base / "rogue" / "gateway.crt", base / "rogue" / "gateway.key")
    try:
        assert c.is_refused()
    finally:
        c.close()


def test_a_client_without_a_certificate_is_refused(pki, broker):
    base, _ = pki
    c = Client(broker.port, base / "ca" / "ca.crt")
    try:
        assert c.is_refused()
    finally:
        c.close()


def test_a_revoked_gateway_is_refused_once_the_broker_config_is_regenerated(pki, connect):
    base, ca = pki
    assert not connect("gw-c").is_refused()
    ca.revoke("gw-c")
    b = _broker(base, ca, "broker-after-revoke")
    try:
        assert "user gw-c" not in (base / "broker-after-revoke" / "acl").read_text()
        assert connect("gw-c", port=b.port).is_refused()
        assert not connect("gw-a", port=b.port).is_refused()
    finally:
        b.stop()


def test_a_certificate_cannot_take_another_gateways_client_id(connect):
    centre = connect("centre")
    centre.subscribe(f"{B_ROOT}/status", f"{B_ROOT}/heartbeat")
    real = connect("gw-b", client_id="gw-b", will=(f"{B_ROOT}/status", json.dumps({"state": "offline"})))
    assert not real.is_refused()
    impostor = connect("gw-a", client_id="gw-b")  # gw-a's certificate, gw-b's client id
    assert not impostor.is_refused()
    real.publish(f"{B_ROOT}/heartbeat", {"bdseq": 1})  # after the impostor is in: the real gw-b still speaks
    assert centre.wait_for(f"{B_ROOT}/heartbeat")
    assert not real.dropped.is_set()
    assert f"{B_ROOT}/status" not in centre.topics()  # no "offline" will on gw-b's behalf


def test_a_gateway_cannot_write_its_own_receipts_or_downlink(connect):
    centre = connect("centre")
    centre.subscribe("counterguard/v1/#")
    gw = connect("gw-a")
    assert not gw.is_refused()
    gw.subscribe(f"{A_ROOT}/receipt")
    gw.publish(f"{A_ROOT}/receipt", {"seqs": [1, 2, 3]})  # would close outbox rows the centre never stored
    gw.publish(f"{A_ROOT}/watchlist", {"version": 99, "full": True, "add": []}, retain=True)
    gw.publish(f"{A_ROOT}/manifest/watchlist", {"forged": True}, retain=True)
    gw.publish(f"{A_ROOT}/anything", {"forged": True}, retain=True)
    gw.publish(f"{A_ROOT}/heartbeat", {"seq": 2})  # sent last: once it is in, the rest were refused
    assert centre.wait_for(f"{A_ROOT}/heartbeat")
    assert [t for t in centre.topics() if t.startswith(A_ROOT)] == [f"{A_ROOT}/heartbeat"]
    assert gw.topics() == []
    later = connect("centre")  # nothing forged was kept as a retained message either
    later.subscribe(f"{A_ROOT}/watchlist", f"{A_ROOT}/manifest/watchlist", f"{A_ROOT}/anything", f"{A_ROOT}/heartbeat")
    gw.publish(f"{A_ROOT}/heartbeat", {"seq": 3})
    assert later.wait_for(f"{A_ROOT}/heartbeat")
    assert later.topics() == [f"{A_ROOT}/heartbeat"]


def test_the_acl_grants_a_gateway_exactly_the_topics_it_uses(pki):
    base, _ = pki
    topics = Topics("east", "b012", "gw-a")
    gw = {"cn": "gw-a", "region": "east", "branch": "b012"}
    uplink = {topics.status, topics.heartbeat, *(topics.for_kind(k) for k in ("alert", "ack", "outcome", "escalation", "events"))}
    assert set(gateway_writes(gw)) == uplink
    assert set(gateway_reads(gw)) == {topics.receipt, CENTRE_STATUS, *topics.watchlists,
                                      *gateway_manifest_topics(topics.root, "east")}
    acl = (base / "broker" / "acl").read_text().split("user gw-a\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert sorted(l.split()[2] for l in acl if l.startswith("topic write")) == sorted(uplink)
    assert not [l for l in acl if "+" in l or "#" in l]


def test_a_message_over_the_size_limit_is_refused_and_a_model_manifest_fits(connect):
    centre = connect("centre")
    centre.subscribe(f"{A_ROOT}/#")
    gw = connect("gw-a")
    assert not gw.is_refused()
    gw.client.publish(f"{A_ROOT}/alert", b"x" * (5 * 1024 * 1024), qos=1)
    assert gw.dropped.wait(60)  # the broker hung up on it
    again = connect("gw-a")
    assert not again.is_refused()
    again.subscribe(*gateway_manifest_topics(A_ROOT, "east"))
    again.publish(f"{A_ROOT}/heartbeat", {"seq": 4})
    assert centre.wait_for(f"{A_ROOT}/heartbeat")
    assert f"{A_ROOT}/alert" not in centre.topics()
    # The largest legitimate message, the bundled model's signed manifest, passes with room to spare.
    root = Path(__file__).resolve().parent.parent / "models"
    card = json.loads((root / "counterguard-v1.json").read_text())
    body = signed.model_manifest((root / "counterguard-v1.tflite").read_bytes(), card, version=1,
                                 model_version=card["version"], target="gateway/gw-a",
                                 issued_at="2026-01-01T00:00:00.000Z")
    envelope = signed.sign_envelope(body, signed.generate_signing_key())
    assert len(envelope) * 10 < MESSAGE_SIZE_LIMIT
    centre.publish(f"{A_ROOT}/manifest/model", envelope)
    assert again.wait_for(f"{A_ROOT}/manifest/model")
    assert [p for t, p in again.messages if t == f"{A_ROOT}/manifest/model"] == [envelope]


@pytest.mark.skipif(os.geteuid() != 0, reason="the documented start is as root")
def test_the_documented_command_starts_the_broker_as_mosquitto_with_a_key_only_it_may_read(pki, connect):
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user on this machine")
    base, ca = pki
    # Somewhere the mosquitto user can reach (pytest's own directories are root-only).
    where = Path(tempfile.mkdtemp(prefix="counterguard-broker-"))
    try:
        os.chmod(where, 0o755)
        conf = write_broker_config(ca, where / "broker", host="127.0.0.1", port=free_port())
        assert "user mosquitto" in conf.read_text()
        key = (where / "broker" / "broker.key").stat()
        assert stat.S_IMODE(key.st_mode) == 0o640 and key.st_gid == grp.getgrnam("mosquitto").gr_gid
        assert key.st_mode & 0o007 == 0
        b = TlsBroker(conf).start()  # mosquitto -c <conf>, exactly as documented
        try:
            status = Path(f"/proc/{b.proc.pid}/status").read_text()
            uid = next(l.split()[1] for l in status.splitlines() if l.startswith("Uid:"))
            assert int(uid) == user.pw_uid
            gw = connect("gw-a", port=b.port)
            assert not gw.is_refused()
        finally:
            b.stop()
    finally:
        shutil.rmtree(where)


def test_a_provisioned_gateway_and_centre_work_through_the_locked_down_broker(pki, broker, tmp_path):
    """The real uplink (client id = its certificate's CN) and the real centre worker, over TLS."""
    from counterguard.centre.ingest import IngestWorker
    from counterguard.centre.store import open_store
    from conftest import wait_until
    from counterguard.core.clock import Clock, Stamp
    from counterguard.core.decision import Verdict
    from counterguard.core.events import parse_event
    from counterguard.gateway.store.db import Store
    from counterguard.gateway.link.uplink import Uplink
    from counterguard.gateway.scoring.watchlist import Watchlist

    base, _ = pki
    ca = str(base / "ca" / "ca.crt")
    centre = open_store(tmp_path / "centre.db")
    tls = {"ca_certs": ca, "certfile": str(base / "centre" / "centre.crt"), "keyfile": str(base / "centre" / "centre.key")}
    with IngestWorker(open_store(tmp_path / "centre.db"), host="127.0.0.1", port=broker.port, tls=tls), \
            Store(tmp_path / "gateway.db") as store:
        uplink = Uplink(store, Watchlist(store), host="127.0.0.1", port=broker.port, gateway_id="gw-a", region="east",
                        branch="b012", heartbeat_s=1.0, backoff_min=0.1, backoff_max=0.5,
                        tls=(ca, str(base / "gw-a" / "gateway.crt"), str(base / "gw-a" / "gateway.key")),
                        clock=Clock(assume_synced=True)).start()
        try:
            event = parse_event({"event_id": "ev-1", "ts": "2024-05-06T09:30:00+08:00", "counter": 1,
                                 "kind": "cash_withdrawal", "account": "6222020200000000101", "amount": 50000})
            verdict = Verdict(event.event_id, "red", 0.93, ("large_cash",), "Hold - call supervisor", 1)
            store.record_verdict(event, b"{}", "sha-1", verdict, Stamp(time.time(), time.monotonic(), True),
                                 model_version="m-1", watchlist_version=0, gateway_id="gw-a")
            uplink.wake()
            assert wait_until(lambda: store.outbox_depth() == 0 and centre.count("alert") == 1, 30), \
                "the centre's receipt should close the gateway's outbox"
            assert wait_until(lambda: (centre.gateway("gw-a") or {}).get("state") == "online", 20)
            assert uplink.connected
        finally:
            uplink.stop()
    centre.close()
