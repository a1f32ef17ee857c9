"""Shared fixtures: a private mosquitto on a free loopback port, the stand-in centre on it, a counter
line (a pty pair), gpiozero's mock pins, and plain MQTT clients for playing the centre's side."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from counterguard.centre.receiver import Receiver
from counterguard.gateway.link.broker import PrivateBroker
from counterguard.core.clock import wait_on
from harness import pty_pair


@pytest.fixture
def broker():
    """A mosquitto of this test's own; ``broker.stop()`` / ``broker.start()`` rehearse an outage."""
    with PrivateBroker() as b:
        yield b


class MqttProbe:
    """A plain MQTT client that records what it receives on the topics it subscribes to."""

    def __init__(self, broker, client_id: str):
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = lambda c, u, f, rc, p: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._ready.wait(5), "test client could not connect to the private broker"

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self._cond.notify_all()

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(5), f"subscribing to {topic} timed out"

    def publish(self, topic: str, payload, *, retain: bool = False) -> None:
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload)
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def received(self, topic: str) -> list:
        with self._cond:
            return [json.loads(p) for t, p, _ in self.messages if t == topic]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        return wait_on(self._cond, lambda: predicate(self), timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def centre(broker):
    """The stand-in centre: stores and receipts what gateways send (modules may bring the real one)."""
    r = Receiver("127.0.0.1", broker.port)
    r.start()
    yield r
    r.stop()


@pytest.fixture
def counter_line():
    """(master fd, slave path) of a pty: the terminal's end and the gateway's serial port."""
    with pty_pair() as pair:
        yield pair


@pytest.fixture
def factory():
    """gpiozero's own mock pins, reset after the test."""
    from gpiozero.pins.mock import MockFactory

    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture
def probe(broker):
    """An MQTT client for publishing or listening as the test's stand-in for the other side."""
    p = MqttProbe(broker, "test-probe")
    yield p
    p.close()


def wait_until(predicate, timeout: float = 10.0, tick: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass (a bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(tick)
    return bool(predicate())
