"""A minimal anti-fraud centre: receives alerts, acknowledgements, outcomes, escalations, status and
heartbeats from branch gateways, de-duplicates on (gateway_id, seq), and receipts what it has stored.

The receipt is the only thing that closes a gateway's outbox row, so it is sent only after the
alert is kept (in memory, and in SQLite when ``db_path`` is given). The receiver announces itself
with a retained ``counterguard/v1/centre/status`` (``online``; its last will says ``offline``), which
tells gateways to resend anything the centre has not receipted.

    receiver = Receiver("127.0.0.1", 1883, db_path="centre.db")
    receiver.start()
    receiver.wait_for(lambda r: len(r.alerts) >= 1, timeout=10)
    print(receiver.alerts[0]["level"], receiver.duplicates)
    receiver.stop()

From the command line: ``python -m counterguard.centre.receiver --host 127.0.0.1 --port 1883`` prints each
alert as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sqlite3
import sys
import threading
import time
from collections import defaultdict

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from counterguard.core import jsontext, messages
from counterguard.core.clock import wait_on

log = logging.getLogger(__name__)

# Uplink records by topic leaf; each is stored, de-duplicated on (gateway_id, seq) and receipted alike.
_PARSERS = {
    "alert": messages.parse_alert,
    "ack": messages.parse_ack,
    "outcome": messages.parse_outcome,
    "escalation": messages.parse_escalation,
    "events": messages.parse_events,
}


class Receiver:
    """Stand-in for the centre's MQTT intake. Thread-safe readers: ``alerts``, ``acks``, ``outcomes``,
    ``escalations``, ``statuses``."""

    def __init__(self, host: str, port: int, *, client_id: str = "centre-receiver", db_path=None,
                 on_alert=None, on_record=None, receipt_every_s: float = 0.02):
        self.host, self.port = host, int(port)
        self.client_id = client_id
        self.db_path = db_path
        self.on_alert = on_alert
        self.on_record = on_record  # on_record(kind, body) for every new alert, ack, outcome and escalation
        self.receipt_every_s = receipt_every_s
        self._lock = threading.Condition()
        # Records by type, in arrival order: "alert", "ack", "outcome", "escalation".
        self._records: dict[str, list[dict]] = {kind: [] for kind in _PARSERS}
        self._seen: set[tuple[str, int]] = set()
        self._statuses: dict[str, dict] = {}
        self._heartbeats: dict[str, dict] = {}
        self.duplicates = 0
        self.rejected = 0
        self._to_receipt: dict[str, set[int]] = defaultdict(set)  # gateway root -> seqs stored, not yet receipted
        self._db: sqlite3.Connection | None = None
        self._client: mqtt.Client | None = None
        self._flusher: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connected = threading.Event()

    # -- what was received ------------------------------------------------------------------------
    @property
    def alerts(self) -> list[dict]:
        with self._lock:
            return list(self._records["alert"])

    @property
    def acks(self) -> list[dict]:
        with self._lock:
            return list(self._records["ack"])

    @property
    def outcomes(self) -> list[dict]:
        """What supervisors recorded for alerts (confirmed fraud, customer dissuaded...)."""
        with self._lock:
            return list(self._records["outcome"])

    @property
    def events(self) -> list[dict]:
        """Every scored event uploaded for learning, batch after batch."""
        with self._lock:
            return [e for batch in self._records["events"] for e in batch["events"]]

    @property
    def escalations(self) -> list[dict]:
        """Red alerts nobody at the branch acknowledged in time: the centre chases these."""
        with self._lock:
            return list(self._records["escalation"])

    @property
    def statuses(self) -> dict[str, dict]:
        """The latest status per gateway id (a stale last will is not allowed to overwrite it)."""
        with self._lock:
            return dict(self._statuses)

    @property
    def heartbeats(self) -> dict[str, dict]:
        with self._lock:
            return dict(self._heartbeats)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_for(self, predicate, timeout: float) -> bool:
        """Wait until ``predicate(self)`` is true or ``timeout`` seconds pass; returns the last result."""
        return wait_on(self._lock, lambda: predicate(self), timeout)

    # -- life cycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "Receiver":
        if self.db_path:
            self._db = sqlite3.connect(str(self.db_path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS received (gateway_id TEXT NOT NULL, seq INTEGER NOT NULL, "
                             "type TEXT NOT NULL, payload TEXT NOT NULL, received_wall REAL NOT NULL, "
                             "PRIMARY KEY (gateway_id, seq))")
            for gw, seq, kind, payload in self._db.execute(
                    "SELECT gateway_id, seq, type, payload FROM received ORDER BY rowid"):
                self._seen.add((gw, seq))
                self._records.setdefault(kind, []).append(json.loads(payload))
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        client.will_set(messages.CENTRE_STATUS, messages.centre_status_payload("offline", time.time()), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=0.2, max_delay=2)  # a stand-in centre: come back quickly
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        self._subscribe_mid = None
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        self._stopping.clear()
        try:
            client.connect(self.host, self.port, keepalive=30)
        except (OSError, ValueError):
            self._client = None
            if self._db is not None:
                self._db.close()
                self._db = None
            raise
        client.loop_start()
        self._flusher = threading.Thread(target=self._flush_loop, name="centre-receipts", daemon=True)
        self._flusher.start()
        if not self._connected.wait(timeout):
            self.stop()
            raise ConnectionError(f"the centre receiver could not connect to {self.host}:{self.port} within {timeout} s")
        return self

    def stop(self) -> None:
        """Say offline (retained), disconnect, and stop. Safe to call twice."""
        client, self._client = self._client, None
        self._stopping.set()
        if self._flusher is not None:
            self._flusher.join(5)
            self._flusher = None
        if client is not None:
            if self._connected.is_set():
                self._flush(client)
                info = client.publish(messages.CENTRE_STATUS, messages.centre_status_payload("offline", time.time()),
                                      qos=1, retain=True)
                try:
                    info.wait_for_publish(2)
                except (RuntimeError, ValueError):
                    pass
            client.disconnect()
            client.loop_stop()
        self._connected.clear()
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- paho callbacks ---------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("centre receiver: broker refused the connection: %s", reason_code)
            return
        # Connected counts from the broker's SUBACK: a gateway's message sent before it would pass us by.
        self._subscribe_mid = client.subscribe([(t, 1) for t in messages.CENTRE_SUBSCRIPTIONS])[1]
        client.publish(messages.CENTRE_STATUS, messages.centre_status_payload("online", time.time()), qos=1, retain=True)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("centre receiver: the broker refused a subscription (%s); check its ACL", ", ".join(refused))
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()

    def _on_message(self, client, userdata, msg) -> None:
        leaf = msg.topic.rsplit("/", 1)[-1]
        gateway_id = msg.topic.split("/")[-2]
        try:
            if leaf in _PARSERS:
                self._keep(msg.topic, _PARSERS[leaf](msg.payload), leaf)
            elif leaf == "status":
                self._status(gateway_id, jsontext.loads(msg.payload))
            elif leaf == "heartbeat":
                with self._lock:
                    self._heartbeats[gateway_id] = jsontext.loads(msg.payload)
                    self._lock.notify_all()
        except (messages.DownlinkError, ValueError) as exc:
            with self._lock:
                self.rejected += 1
            log.warning("centre receiver: ignored a message on %s: %s", msg.topic, exc)
        except Exception:  # one bad message must not stop the intake
            log.exception("centre receiver: failed on a message on %s", msg.topic)

    def _keep(self, topic: str, body: dict, kind: str) -> None:
        key = (body["gateway_id"], body["seq"])
        root = messages.root_of(topic)
        new = False
        with self._lock:
            if key in self._seen:
                self.duplicates += 1
            else:
                if self._db is not None:
                    self._db.execute("INSERT OR IGNORE INTO received VALUES (?,?,?,?,?)",
                                     (key[0], key[1], kind, json.dumps(body), time.time()))
                self._seen.add(key)
                self._records[kind].append(body)
                new = True
            # Stored (or stored before): receipt it, so a duplicate whose receipt was lost is closed too.
            self._to_receipt[root].add(body["seq"])
            self._lock.notify_all()
        if new and kind == "alert" and self.on_alert is not None:
            try:
                self.on_alert(body)
            except Exception:
                log.exception("centre receiver: on_alert failed")
        if new and self.on_record is not None:
            try:
                self.on_record(kind, body)
            except Exception:
                log.exception("centre receiver: on_record failed")

    def _status(self, gateway_id: str, body: dict) -> None:
        if not isinstance(body, dict) or body.get("state") not in messages.STATES:
            raise ValueError("status needs a state of online, offline or stopped")
        with self._lock:
            current = self._statuses.get(gateway_id)
            # A will from an earlier session (older bdseq) arriving late must not mark a live gateway offline.
            if (current is not None and body.get("state") == "offline" and isinstance(body.get("bdseq"), int)
                    and isinstance(current.get("bdseq"), int) and body["bdseq"] < current["bdseq"]):
                return
            self._statuses[gateway_id] = body
            self._lock.notify_all()

    # -- receipts ---------------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        # Receipts are batched every few milliseconds: one message closes many outbox rows.
        while not self._stopping.wait(self.receipt_every_s):
            self._flush()

    def _flush(self, client=None) -> None:
        client = client or self._client
        if client is None or not self._connected.is_set():
            return
        with self._lock:
            pending, self._to_receipt = self._to_receipt, defaultdict(set)
        for root, seqs in pending.items():
            if seqs:
                client.publish(f"{root}/receipt", messages.receipt_payload(seqs), qos=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="counterguard receiver",
                                     description="A minimal centre: print alerts, acknowledgements, outcomes and "
                                                 "escalations from gateways (one JSON line each) and receipt them.")
    parser.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    parser.add_argument("--db", default=None, help="keep received alerts in this SQLite file")
    parser.add_argument("--client-id", default="centre-receiver", help="MQTT client id (default centre-receiver)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out_lock = threading.Lock()

    def show(kind: str, record: dict) -> None:
        with out_lock:
            print(json.dumps(record, ensure_ascii=False), flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    receiver = Receiver(args.host, args.port, client_id=args.client_id, db_path=args.db, on_record=show)
    try:
        receiver.start()
    except (OSError, ConnectionError) as exc:
        print(f"counterguard receiver: cannot connect to {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
