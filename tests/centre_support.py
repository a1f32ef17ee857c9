"""Helpers for the centre's tests: a simulated branch gateway speaking MQTT exactly as docs/mqtt.md
says (payloads built by counterguard.core.messages, the gateway's own builders), a real PostgreSQL server
started in a temporary directory, and a TCP relay that can go silent to rehearse a dead link."""

from __future__ import annotations

import glob
import json
import os
import pwd
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from counterguard.core import messages
from counterguard.core.clock import wait_on
from counterguard.gateway.link.broker import free_port
from counterguard.core.decision import Verdict
from counterguard.core.events import Event
from counterguard.core.ulid import new_ulid

CST = timezone(timedelta(hours=8))


class SimGateway:
    """A branch gateway on MQTT: retained status with a last will, alerts with seq, receipts recorded.
    With ``host=None`` it only builds payloads."""

    def __init__(self, host: str | None, port: int | None, gateway_id: str, *, region: str = "610100", branch: str = "b0231",
                 bdseq: int = 1, keepalive: int = 30, subscribe_manifests: bool = False):
        self.topics = messages.Topics(region, branch, gateway_id)
        self.gateway_id, self.region, self.branch = gateway_id, region, branch
        self.bdseq = bdseq
        self.seq = 0
        self.receipted: set[int] = set()
        self.receipts: list[list[int]] = []
        self.downlink: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._subscribe_manifests = subscribe_manifests
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gateway_id, clean_session=True)
        self.client.will_set(self.topics.status, self.status("offline"), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.max_inflight_messages_set(500)
        if host is None:  # payloads only, no connection
            return
        self.client.connect(host, port, keepalive=keepalive)
        self.client.loop_start()
        assert self._ready.wait(10), f"simulated gateway {gateway_id} could not connect to {host}:{port}"

    def _on_connect(self, client, userdata, flags, rc, props):
        subs = [(self.topics.receipt, 0)]  # QoS 0, as the uplink subscribes
        if self._subscribe_manifests:
            subs += [(f"{messages.PREFIX}/all/manifest/+", 0), (f"{messages.PREFIX}/{self.region}/manifest/+", 0),
                     (f"{self.topics.root}/manifest/+", 0)]
        client.subscribe(subs)
        client.publish(self.topics.status, self.status("online"), qos=1, retain=True)
        self._ready.set()

    def _on_message(self, client, userdata, msg):
        with self._cond:
            if msg.topic == self.topics.receipt:
                seqs = messages.parse_receipt(msg.payload)
                self.receipts.append(seqs)
                self.receipted.update(seqs)
            else:
                self.downlink.append((msg.topic, msg.payload, bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        return wait_on(self._cond, lambda: predicate(self), timeout)

    def status(self, state: str, **versions) -> str:
        return messages.status_payload(state, bdseq=self.bdseq, stamp=SimpleNamespace(wall=time.time(), synced=True),
                                       gateway_id=self.gateway_id, fields=versions or None)

    def alert_payload(self, *, level: str = "red", seq: int | None = None, amount: float = 50000.0,
                      alert_id: str | None = None, counter: int = 3) -> tuple[int, str, str]:
        """(seq, alert_id, payload) of a new alert, built with the gateway's own message builders."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        alert_id = alert_id or new_ulid()
        event = Event(event_id=f"t{counter}-{seq:05d}", ts=datetime.now(CST), counter=counter, kind="cash_withdrawal",
                      account="6222020200000000101", amount=amount)
        reasons = ("large_cash", "elderly_customer") if level == "red" else ("large_cash",)
        verdict = Verdict(event.event_id, level, 0.93 if level == "red" else 0.61, reasons, f"{level} warning", counter)
        stamp = SimpleNamespace(wall=time.time(), mono=time.monotonic(), synced=True)
        body = messages.alert_body(alert_id, event, verdict, stamp, gateway_id=self.gateway_id,
                                   model_version="fraud-mlp-1", watchlist_version=1)
        return seq, alert_id, messages.finalise(body, seq=seq, region=self.region, branch=self.branch, historical=False)

    def follow_up(self, kind: str, alert_id: str, **fields) -> tuple[int, str]:
        """An acknowledgement, outcome or escalation of ``alert_id`` as (seq, payload)."""
        self.seq += 1
        stamp = SimpleNamespace(wall=time.time(), mono=time.monotonic(), synced=True)
        if kind == "ack":
            body = messages.ack_body(alert_id, by="supervisor", via="button", stamp=stamp, gateway_id=self.gateway_id,
                                     counter=3)
        elif kind == "outcome":
            body = messages.dumps({"type": "outcome", "gateway_id": self.gateway_id, "alert_id": alert_id,
                                   "counter": 3, "outcome": fields.get("outcome", "confirmed_fraud"),
                                   "note": fields.get("note", ""), "by": "s-0042", "via": "console",
                                   "at": messages.iso(stamp.wall), "mono": round(stamp.mono, 3), "time_synced": True,
                                   **({"handled_at": fields["handled_at"]} if "handled_at" in fields else {})})
        else:
            body = messages.dumps({"type": "escalation", "gateway_id": self.gateway_id, "alert_id": alert_id,
                                   "counter": 3, "level": "red", "reason": "unacknowledged", "waited_s": 120.0,
                                   "at": messages.iso(stamp.wall), "mono": round(stamp.mono, 3), "time_synced": True})
        return self.seq, messages.finalise(body, seq=self.seq, region=self.region, branch=self.branch, historical=False)

    def publish(self, leaf: str, payload: str | bytes, *, qos: int = 1, retain: bool = False, wait: bool = True):
        info = self.client.publish(f"{self.topics.root}/{leaf}", payload, qos=qos, retain=retain)
        if wait:
            info.wait_for_publish(10)
        return info

    def heartbeat(self, outbox_depth: int = 0, **versions) -> None:
        stamp = SimpleNamespace(wall=time.time(), mono=time.monotonic(), synced=True)
        self.publish("heartbeat", messages.heartbeat_payload(stamp=stamp, bdseq=self.bdseq, outbox_depth=outbox_depth,
                                                             oldest_unreceipted_age_s=None, fields=versions or None))

    def goodbye(self) -> None:
        """A clean shutdown: "stopped", retained, then disconnect (the will is not sent)."""
        self.publish("status", self.status("stopped"), retain=True)
        self.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- PostgreSQL -----------------------------------------------------------------------------------
def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


class PostgresServer:
    """initdb + pg_ctl in a temporary directory, run as the 'postgres' user (the tests run as root)."""

    def __init__(self):
        self.bin = _pg_bin()
        # Not under pytest's tmp dir: that one is private to root, and the server runs as postgres.
        self._base = tempfile.mkdtemp(prefix="counterguard-pg-")
        os.chmod(self._base, 0o755)
        self.dir = os.path.join(self._base, "pgdata")
        self.port = free_port()
        self._as = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]

    def start(self) -> "PostgresServer":
        os.makedirs(self.dir, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        done = subprocess.run(self._as + [f"{self.bin}/initdb", "-D", self.dir, "-A", "trust", "-U", "postgres",
                                          "--no-sync"], capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()[-800:]}")
        self._pg_ctl("start")
        return self

    def restart(self) -> None:
        """A fast restart (fault tests): connections are cut, the data stays."""
        self._pg_ctl("-m", "fast", "restart")

    def _pg_ctl(self, *action: str) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        subprocess.run(self._as + [f"{self.bin}/pg_ctl", "-D", self.dir, "-o", opts, "-l",
                                   os.path.join(self.dir, "server.log"), "-w", "-t", "60", *action],
                       check=True, capture_output=True, timeout=120)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(self._as + [f"{self.bin}/pg_ctl", "-D", self.dir, "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self._base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL server for the session (skipped only where PostgreSQL is not installed)."""
    if _pg_bin() is None:
        pytest.skip("PostgreSQL server binaries are not installed (/usr/lib/postgresql/*/bin/initdb); "
                    "setup.sh installs them")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as the postgres user")
    server = PostgresServer().start()
    yield server
    server.stop()


_db_counter = iter(range(1, 10_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh centre store: a SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "centre.db")
    server = request.getfixturevalue("postgres")
    return server.create_database(f"centre_{os.getpid()}_{next(_db_counter)}")


# -- a relay that can go silent -------------------------------------------------------------------
class SilentableRelay:
    """TCP relay 127.0.0.1:port -> target. ``go_silent()`` stops forwarding but keeps the sockets open,
    as a cut cable or a dead router does: neither end sees the connection close."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.silent = threading.Event()
        self.closing = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.listener.settimeout(0.2)
        while not self.closing.is_set():
            try:
                a, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            b = socket.create_connection(self.target, timeout=5)
            self._socks += [a, b]
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        pair = {a: b, b: a}
        while not self.closing.is_set():
            if self.silent.is_set():
                time.sleep(0.05)
                continue
            ready, _, _ = select.select([a, b], [], [], 0.1)
            for s in ready:
                try:
                    data = s.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if not self.silent.is_set():
                    pair[s].sendall(data)

    def go_silent(self):
        self.silent.set()

    def close(self):
        self.closing.set()
        for s in self._socks + [self.listener]:
            try:
                s.close()
            except OSError:
                pass


def records_of(store, kind: str) -> list[dict]:
    return store.records(kind=kind, limit=100_000)


def decoded(payload: str) -> dict:
    return json.loads(payload)
