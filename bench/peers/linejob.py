"""The serial-lines-to-MQTT job shared by every system in ``bench/peers.py``: a broker that can be
killed and brought back on the same port, a teller line that writes event lines at a set pace, and
a ledger on the broker side that counts which lines arrived, how often, and when.

Each line is one schema-v1 counter event as JSON with a unique ``event_id``; the ledger reads the
``event_id`` back out of whatever each system publishes, so loss and duplication are counted per
line, not per MQTT message.
"""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from counterguard.gateway.link.broker import PrivateBroker

# Answer to the ThingsBoard gateway's "getSessionLimits" RPC: no rate limits, as a ThingsBoard
# server with the limits switched off would answer. The gateway sends nothing until it has one.
TB_SESSION_LIMITS = {"rateLimits": {"messages": "0:0,", "telemetryMessages": "0:0,", "telemetryDataPoints": "0:0,"},
                     "maxInflightMessages": 1000, "maxPayloadSize": 65536}


class OutageBroker(PrivateBroker):
    """The project's private mosquitto, persisting its sessions every second so that the ledger's
    subscription survives a SIGKILL: what is lost in an outage is then the publisher's doing."""

    def _config(self):
        path = super()._config()
        with open(path, "a") as f:
            f.write("autosave_interval 1\n")
        return path

    def kill(self) -> None:
        """SIGKILL, as a power cut or an OOM kill would: no goodbye to anyone."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


class Ledger:
    """Broker-side subscriber (persistent session, QoS 1) that counts each line's arrivals.

    It also plays the part of a ThingsBoard server on the gateway API topics, answering the one RPC
    the ThingsBoard gateway waits for; nothing else of ThingsBoard is emulated.
    """

    def __init__(self, port: int, topics: list[str], *, client_id: str):
        self.port = port
        self.topics = topics
        self.counts: dict[str, int] = {}
        self.last_arrival = 0.0
        self.messages = 0
        self.unreadable = 0
        self._stream = b""  # mqtt-io publishes raw chunks; a line may span two messages
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)

    def start(self) -> "Ledger":
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.messages = self.unreadable = 0
            self._stream = b""

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        for topic in self.topics:
            client.subscribe(topic, qos=1)

    def _count(self, line: bytes | str) -> None:
        try:
            event_id = json.loads(line)["event_id"]
        except (ValueError, KeyError, TypeError):
            self.unreadable += 1
            return
        self.counts[event_id] = self.counts.get(event_id, 0) + 1
        self.last_arrival = time.monotonic()

    def _on_message(self, client, userdata, msg) -> None:
        topic = msg.topic
        if topic.startswith("v1/devices/me/rpc/request/"):
            client.publish(topic.replace("/request/", "/response/"), json.dumps(TB_SESSION_LIMITS), qos=1)
            return
        with self._lock:
            self.messages += 1
            if "/stream/" in topic:
                self._stream += msg.payload
                *lines, self._stream = self._stream.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._count(line)
            elif topic == "v1/gateway/telemetry":
                for records in json.loads(msg.payload).values():
                    for record in records:
                        line = record.get("values", {}).get("line")
                        if line is not None:
                            self._count(line)


class LineWriter:
    """The teller terminal's side of a pty: writes event lines, never blocking for ever."""

    def __init__(self, master_fd: int):
        self.fd = master_fd
        os.set_blocking(master_fd, False)
        self.refused = 0  # lines the reading program never made room for

    def write_line(self, data: bytes, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.refused += 1
                return False
            _, writable, _ = select.select([], [self.fd], [], remaining)
            if not writable:
                continue
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                continue
            view = view[n:]
        return True

    def drain_input(self) -> None:
        """Throw away what the reading side wrote back (peers may echo nothing; the tty may)."""
        try:
            while os.read(self.fd, 65536):
                pass
        except (BlockingIOError, OSError):
            pass


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MB, read before it is stopped."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def wait_until(predicate, timeout: float, tick: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(tick)
    return predicate()
