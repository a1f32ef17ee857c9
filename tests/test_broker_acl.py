"""The generated broker config, against a real mosquitto: only certificates from the centre CA get
in, a revoked one does not, and each gateway speaks and hears only for itself."""

from __future__ import annotations

import getpass
import json
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.broker import find_mosquitto, free_port
from gateway.messages import CENTRE_STATUS
from provisioning.broker_config import write_broker_config
from provisioning.ca import CertificateAuthority

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

    def __init__(self, port, ca, cert=None, key=None, name="probe"):
        self.messages = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.refused = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
        self.client.tls_set(ca_certs=str(ca), certfile=cert and str(cert), keyfile=key and str(key))
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.refused.set()
        try:
            self.client.connect("127.0.0.1", port)
        except (ssl.SSLError, OSError):
            self.refused.set()
            return
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        (self.refused if reason_code.is_failure else self.connected).set()

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
        self.client.publish(topic, json.dumps(body), qos=1, retain=retain).wait_for_publish(20)

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

    def _connect(who, *, ca_dir="ca", port=None):
        d = base / who
        c = Client(port or broker.port, base / ca_dir / "ca.crt", d / f"{'centre' if who == 'centre' else 'gateway'}.crt",
                   d / f"{'centre' if who == 'centre' else 'gateway'}.key", name=f"{who}-{len(opened)}")
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
    gw.subscribe(f"{A_ROOT}/manifest/#", f"{A_ROOT}/receipt", "counterguard/v1/east/manifest/#",
                 "counterguard/v1/all/manifest/#", CENTRE_STATUS)
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
