"""The centre's intake worker: every gateway's alerts, acknowledgements, outcomes, escalations,
status and heartbeats, checked, stored once, and receipted.

Several workers can run side by side (on one machine or many): they subscribe with a shared
subscription (``$share/centre/counterguard/v1/+/+/+/alert`` ...), so the broker hands each message
to one of them, and the store's keys keep a message that reaches two workers (a gateway's resend)
stored once: (gateway_id, seq) for every record, and (gateway_id, alert_id) for an alert, so an
alert resent under a new seq is counted once too (both seqs are receipted). Status is subscribed to by every worker without sharing,
because brokers give retained messages only to plain subscriptions; status writes are ordered by
the gateway's birth/death sequence (centre/fleet.py), so writing one twice is harmless.

The broker's network thread only queues what arrives; one writer thread takes it in batches:
check each message (centre/schema.py), store the batch in one transaction, and only then send
each gateway one receipt naming the seqs stored (duplicates too: the first receipt may have been
lost). A malformed message goes to the quarantine table with its reason and is counted (its first
4 KiB, full size and sha256: junk cannot fill the store); it never stops the batch it came in. If the store fails, nothing of that batch is receipted, so the
gateways send it again.

    with IngestWorker(open_store("centre.db"), host="127.0.0.1", port=1883) as worker:
        worker.wait_for(lambda w: w.stats.stored >= 10, timeout=30)
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from counterguard.centre import fleet, schema
from counterguard.core import messages
from counterguard.core.clock import wait_on

log = logging.getLogger(__name__)

SHARED_LEAVES = ("alert", "ack", "outcome", "escalation", "heartbeat", "events")


def subscriptions(share: str | None) -> list[str]:
    """The topics one worker subscribes to; ``share`` names the shared-subscription group (None: no sharing)."""
    topics = [f"{messages.PREFIX}/+/+/+/{leaf}" for leaf in SHARED_LEAVES]
    if share:
        topics = [f"$share/{share}/{t}" for t in topics]
    return topics + [f"{messages.PREFIX}/+/+/+/status", messages.CENTRE_STATUS]


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0          # new records kept
    duplicates: int = 0      # records already kept (a gateway's resend), receipted again
    quarantined: int = 0
    events: int = 0          # uploaded events kept (a batch holds many)
    events_duplicate: int = 0  # uploaded events already kept (a batch sent again)
    statuses: int = 0
    heartbeats: int = 0
    receipts: int = 0        # receipt messages sent
    store_errors: int = 0    # batches the store refused (not receipted, so gateways resend)


def default_client_id() -> str:
    return f"centre-{socket.gethostname()}-{os.getpid()}"


class IngestWorker:
    """One centre worker on one broker connection, writing to one store connection."""

    def __init__(self, store, *, host: str = "127.0.0.1", port: int = 1883, client_id: str | None = None,
                 share: str | None = "centre", keepalive: int = 30, batch_max: int = 5000, linger_s: float = 0.01,
                 username: str | None = None, password: str | None = None, tls: dict | None = None,
                 will_settle_s: float = 1.0):
        self.store = store
        self.will_settle_s = will_settle_s
        self.host, self.port = host, int(port)
        self.client_id = client_id or default_client_id()
        self.share = share
        self.keepalive = keepalive
        self.batch_max = batch_max
        self.linger_s = linger_s
        self.stats = IngestStats()
        self._auth = (username, password)
        self._tls = tls
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._announced_mono = 0.0  # when this worker last said "online"
        self._client: mqtt.Client | None = None
        self._writer: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "IngestWorker":
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        client.will_set(messages.CENTRE_STATUS, fleet.will(), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=0.5, max_delay=10)
        # Receipts are small and few; no in-flight cap (paho rescans its whole queue on each PUBACK when capped).
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        if self._auth[0]:
            client.username_pw_set(*self._auth)
        if self._tls:
            client.tls_set(**self._tls)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._subscribe_mid = None
        self._client = client
        self._stopping.clear()
        self._writer = threading.Thread(target=self._write_loop, name=f"{self.client_id}-writer", daemon=True)
        self._writer.start()
        try:
            client.connect(self.host, self.port, keepalive=self.keepalive)
        except (OSError, ValueError) as exc:
            self.stop()
            raise ConnectionError(f"centre worker cannot reach the broker at {self.host}:{self.port}: {exc}") from None
        client.loop_start()
        if not self._connected.wait(timeout):
            self.stop()
            raise ConnectionError(f"centre worker could not connect to {self.host}:{self.port} within {timeout} s")
        return self

    def stop(self, *, say_offline: bool = True) -> None:
        """Store and receipt what has arrived, then disconnect. Safe to call twice.

        ``say_offline=False`` leaves the centre's retained status alone (other workers still run)."""
        self._stopping.set()
        if self._writer is not None:
            self._writer.join(30)
            self._writer = None
        client, self._client = self._client, None
        if client is not None:
            if self._connected.is_set() and say_offline:
                info = client.publish(messages.CENTRE_STATUS, fleet.will(), qos=1, retain=True)
                try:
                    info.wait_for_publish(2)
                except (RuntimeError, ValueError):
                    pass
            client.disconnect()
            client.loop_stop()
        self._connected.clear()

    def __enter__(self) -> "IngestWorker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_for(self, predicate, timeout: float) -> bool:
        """Wait (bounded) until ``predicate(self)`` holds; returns whether it does."""
        return wait_on(self._cond, lambda: predicate(self), timeout)

    # -- broker side ----------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("centre worker %s: the broker refused the connection: %s", self.client_id, reason_code)
            return
        # Announcing "online" makes every gateway re-announce and resend what is not yet receipted.
        # It goes before the subscriptions, so the retained centre status this worker then receives
        # is its own "online", not a stale "offline" it would answer with a second announcement.
        self._announced_mono = time.monotonic()
        client.publish(messages.CENTRE_STATUS, fleet.announce(), qos=1, retain=True)
        # Connected counts from the broker's SUBACK: a gateway's message sent before it would pass us by.
        self._subscribe_mid = client.subscribe([(t, 1) for t in subscriptions(self.share)])[1]

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("centre worker %s: the broker refused a subscription (%s); check its ACL",
                      self.client_id, ", ".join(refused))
        self._connected.set()
        log.info("centre worker %s: connected to %s:%s", self.client_id, self.host, self.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("centre worker %s: lost the broker (%s); reconnecting", self.client_id, reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == messages.CENTRE_STATUS:
            # Another worker's last will said the centre is offline while this one still runs: say
            # online again, and the gateways resend whatever that worker had not receipted.
            if not self._stopping.is_set() and b'"offline"' in msg.payload:
                self._answer_will(client, time.monotonic())
            return
        self._inbox.put((msg.topic, msg.payload))

    def _answer_will(self, client, heard_mono: float) -> None:
        """Say "online" after another worker's will, unless this worker's own link is going too.

        When the broker itself shuts down it delivers every worker's will to the others just before
        dropping them; answering at once would queue an announcement that paho sends after the
        reconnect, on top of the one every reconnect makes, and each makes every gateway resend its
        whole outbox. So wait a moment and answer only if still connected and not re-announced since.
        """
        def answer():
            if (self._connected.is_set() and not self._stopping.is_set()
                    and self._announced_mono < heard_mono):
                self._announced_mono = time.monotonic()
                client.publish(messages.CENTRE_STATUS, fleet.announce(), qos=1, retain=True)

        timer = threading.Timer(self.will_settle_s, answer)
        timer.daemon = True
        timer.start()

    # -- writer ---------------------------------------------------------------------------------
    def _take(self) -> list:
        """The next batch: what is queued, plus what arrives within a few milliseconds (bounded), so
        a busy stream is stored in big transactions with one receipt per gateway per batch."""
        try:
            batch = [self._inbox.get(timeout=0.05)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.linger_s
        while len(batch) < self.batch_max:
            try:
                batch.append(self._inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._inbox.get(timeout=min(left, 0.002)))
            except queue.Empty:
                break  # the stream paused: store what there is now
        return batch

    def _write_loop(self) -> None:
        while True:
            batch = self._take()
            if batch:
                try:
                    self._write(batch)
                except Exception:  # one bad batch must never stop the intake
                    log.exception("centre worker %s: failed on a batch of %d messages", self.client_id, len(batch))
            elif self._stopping.is_set():
                return

    def _write(self, batch: list) -> None:
        records, bad = [], []
        for topic, payload in batch:
            try:
                records.append(schema.check(topic, payload))
            except schema.SchemaError as exc:
                bad.append((topic, payload, str(exc)))
                log.warning("centre worker %s: quarantined a message on %s: %s", self.client_id, topic, exc)
        try:
            results = [self.store.ingest(records, quarantine=bad)]
        except Exception as exc:
            log.warning("centre worker %s: the store refused a batch of %d (%s); storing it one by one",
                        self.client_id, len(batch), exc)
            results, records = self._one_by_one(records, bad)
            if results is None:
                with self._cond:
                    self.stats.received += len(batch)
                    self.stats.store_errors += 1
                    self._cond.notify_all()
                return
        to_receipt: dict[str, list[int]] = defaultdict(list)
        for r in records:
            if r.kind in schema.RECEIPTED:
                to_receipt[r.root].append(r.body["seq"])
        client = self._client
        if client is not None:
            for root, seqs in to_receipt.items():
                client.publish(f"{root}/receipt", messages.receipt_payload(seqs), qos=1)
        with self._cond:
            s = self.stats
            s.received += len(batch)
            for result in results:
                s.stored += result.new
                s.duplicates += result.duplicates
                s.quarantined += result.quarantined
                s.statuses += result.statuses
                s.heartbeats += result.heartbeats
                s.events += result.events
                s.events_duplicate += result.events_duplicate
            s.receipts += len(to_receipt)
            self._cond.notify_all()

    def _one_by_one(self, records: list, bad: list):
        """After a refused batch: store each message alone, so one the database cannot take (say, a
        character PostgreSQL refuses) is quarantined instead of sinking its neighbours on every
        resend. Returns (results, records stored), or (None, []) if the store is down altogether
        (then nothing is receipted and the gateways resend)."""
        results, stored = [], []
        try:
            for r in records:
                try:
                    results.append(self.store.ingest([r]))
                    stored.append(r)
                except Exception as exc:
                    reason = f"the store refused this {r.kind}: {exc}"
                    results.append(self.store.ingest([], quarantine=[(f"{r.root}/{_leaf(r.kind)}", r.raw, reason)]))
                    log.warning("centre worker %s: quarantined a %s from %s: %s", self.client_id, r.kind,
                                r.gateway_id, reason)
            if bad:
                results.append(self.store.ingest([], quarantine=bad))
        except Exception as exc:
            log.error("centre worker %s: the store is refusing everything (not receipted; gateways will "
                      "resend): %s", self.client_id, exc)
            return None, []
        return results, stored


def _leaf(kind: str) -> str:
    return next(leaf for leaf, k in schema.LEAF_KIND.items() if k == kind)
