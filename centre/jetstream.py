"""A centre worker on a clustered NATS centre: the gateways' messages from a replicated JetStream
stream, shared by every worker through one durable consumer, stored and receipted as the MQTT
worker does (centre/ingest.py).

nats-server 2.9 takes the gateways' MQTT but has no MQTT shared subscriptions, so the workers do
not speak MQTT: the stream ``CENTRE_INTAKE`` captures every uplink subject (alert, ack, outcome,
escalation, heartbeat, status) on three nodes, and the workers pull from one durable consumer
(``centre``): the engine hands each message to one worker and takes it back from a worker that
dies before acknowledging it (after ``ack_wait_s``). A message is acknowledged only after the
store has committed it, so a message the store refused comes again; two deliveries of one alert
are one row because the store's keys are (gateway_id, seq) and (gateway_id, alert_id).

A worker holds at most ``max_held`` messages it has not acknowledged yet. The engine hands a
message out again once it has waited ``ack_wait_s`` unacknowledged, so a worker that took more than
it can store in that time stores every message several times over and falls further behind: with
19,000 gateways on one 2-core machine the consumer delivered 1.43 million times for 138,000
messages before workers held back.

Receipts go back as plain NATS messages on ``.../receipt``; nats-server delivers them to the
gateway's MQTT session. A lost receipt costs a resend, which the store takes as a duplicate and
receipts again.

    worker = JetStreamWorker(open_store(url), servers=["tls://127.0.0.1:14200"], tls=tls).start()
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time

from counterguard.centre.ingest import IngestWorker, default_client_id
from counterguard.core import messages

log = logging.getLogger(__name__)

STREAM = "CENTRE_INTAKE"
CONSUMER = "centre"
INTAKE_LEAVES = ("alert", "ack", "outcome", "escalation", "heartbeat", "status", "events")


def intake_subjects() -> list[str]:
    root = messages.PREFIX.replace("/", ".")
    return [f"{root}.*.*.*.{leaf}" for leaf in INTAKE_LEAVES]


def topic_of(subject: str) -> str:
    return subject.replace(".", "/")


class _Receipts:
    """What IngestWorker calls ``self._client``: publish() from the writer thread onto NATS."""

    def __init__(self, worker: "JetStreamWorker"):
        self.worker = worker

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False):
        w = self.worker
        data = payload if isinstance(payload, bytes) else str(payload).encode()
        if w._nc is not None and w._loop is not None:
            asyncio.run_coroutine_threadsafe(w._nc.publish(topic.replace("/", "."), data), w._loop)


class JetStreamWorker(IngestWorker):
    """One centre worker: a share of the intake stream, one store connection."""

    def __init__(self, store, *, servers: list[str], tls: dict | None = None, client_id: str | None = None,
                 replicas: int = 3, ack_wait_s: float = 10.0, fetch_max: int = 500, batch_max: int = 5000,
                 linger_s: float = 0.01, max_held: int = 2000):
        super().__init__(store, client_id=client_id or default_client_id(), share=None, batch_max=batch_max,
                         linger_s=linger_s)
        if not servers:
            raise ValueError("no NATS server given: list the cluster's client URLs in broker.servers")
        self.servers = list(servers)
        self.host, self.port = self.servers[0], 0
        self.replicas = replicas
        self.ack_wait_s = ack_wait_s
        self.fetch_max = fetch_max
        self.max_held = max(1, max_held)
        self._held = 0  # fetched, not yet acknowledged or handed back
        self._held_lock = threading.Lock()
        self._tls = tls
        self._nc = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    # -- life cycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> "JetStreamWorker":
        self._stopping.clear()
        self._client = _Receipts(self)
        self._writer = threading.Thread(target=self._write_loop, name=f"{self.client_id}-writer", daemon=True)
        self._writer.start()
        self._thread = threading.Thread(target=self._run, name=f"{self.client_id}-nats", daemon=True)
        self._thread.start()
        if not self._connected.wait(timeout):
            why = f": {self._failure}" if self._failure else ""
            self.stop()
            raise ConnectionError(f"centre worker could not join the intake stream at {', '.join(self.servers)} "
                                  f"within {timeout} s{why}; is the cluster up ('counterguard centre cluster status')?")
        return self

    def stop(self, *, say_offline: bool = True) -> None:
        self._stopping.set()
        if self._writer is not None:
            self._writer.join(30)
            self._writer = None
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None
        self._client = None
        self._connected.clear()

    @property
    def connected(self) -> bool:
        """Joined the intake stream and holding a NATS link now (the dashboard's live indicator)."""
        nc = getattr(self, "_nc", None)
        return self._connected.is_set() and nc is not None and nc.is_connected

    # -- the stream -----------------------------------------------------------------------------
    def _ssl(self):
        if not self._tls:
            return None
        ctx = ssl.create_default_context(cafile=self._tls["ca_certs"])
        if self._tls.get("certfile"):
            ctx.load_cert_chain(self._tls["certfile"], self._tls.get("keyfile"))
        return ctx

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except Exception as exc:  # reported by start() or in the log; the stream stays for the others
            self._failure = exc
            log.error("centre worker %s: left the intake stream: %s", self.client_id, exc)
        finally:
            loop.close()
            self._loop = None

    async def _main(self) -> None:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
        from nats.js.errors import BadRequestError

        async def disconnected():
            if not self._stopping.is_set():
                log.warning("centre worker %s: lost its NATS node; reconnecting to another", self.client_id)

        nc = await nats.connect(servers=self.servers, tls=self._ssl(), name=self.client_id,
                                max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                disconnected_cb=disconnected, connect_timeout=5)
        self._nc = nc
        js = nc.jetstream(timeout=5)
        config = StreamConfig(name=STREAM, subjects=intake_subjects(), retention=RetentionPolicy.WORK_QUEUE,
                              storage=StorageType.FILE, num_replicas=self.replicas, max_msg_size=1024 * 1024)
        await self._retry(lambda: self._ensure_stream(js, config, BadRequestError))
        consumer = ConsumerConfig(durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait_s,
                                  max_ack_pending=20000, num_replicas=self.replicas)
        sub = await self._retry(lambda: js.pull_subscribe("", durable=CONSUMER, stream=STREAM, config=consumer))
        self._connected.set()
        log.info("centre worker %s: sharing the intake stream on %s", self.client_id, ", ".join(self.servers))
        while not self._stopping.is_set():
            room = self.max_held - self._held
            if room <= 0:  # the writer is behind: what waits here past ack_wait would come again
                await asyncio.sleep(0.01)
                continue
            try:
                msgs = await sub.fetch(min(self.fetch_max, room), timeout=0.5)
            except asyncio.TimeoutError:
                continue
            except Exception as exc:  # a node lost mid-fetch: the client reconnects, the consumer stays
                if not self._stopping.is_set():
                    log.warning("centre worker %s: fetch failed (%s); trying again", self.client_id, exc)
                    await asyncio.sleep(0.5)
                continue
            with self._held_lock:
                self._held += len(msgs)
            for m in msgs:
                self._inbox.put((topic_of(m.subject), m.data, m))
        # Let the writer finish what it took (its acks and receipts need the connection).
        deadline = time.monotonic() + 30
        while self._writer is not None and self._writer.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if nc.is_connected:
            await nc.flush(timeout=2)
        await nc.close()
        self._nc = None

    async def _ensure_stream(self, js, config, bad_request):
        try:
            await js.add_stream(config)
        except bad_request as exc:  # already made by another worker, or by an older release
            if "already in use" not in str(exc):
                raise
            # An older release's stream lacks the subjects added since (events for learning): add them.
            info = await js.stream_info(config.name)
            missing = set(config.subjects) - set(info.config.subjects or ())
            if missing:
                info.config.subjects = sorted(set(info.config.subjects or ()) | missing)
                await js.update_stream(info.config)
                log.info("centre worker %s: intake stream now also takes %s", self.client_id, ", ".join(sorted(missing)))

    async def _retry(self, make, attempts: int = 40):
        """JetStream calls right after a node change may find no leader yet: try again for ~20 s."""
        for i in range(attempts):
            try:
                return await make()
            except Exception as exc:
                if i == attempts - 1 or self._stopping.is_set():
                    raise
                log.info("centre worker %s: JetStream not ready (%s); trying again", self.client_id, exc)
                await asyncio.sleep(0.5)

    # -- writer ---------------------------------------------------------------------------------
    def _write(self, batch: list) -> None:
        try:
            errors = self.stats.store_errors
            super()._write([(topic, payload) for topic, payload, _ in batch])
            stored = self.stats.store_errors == errors
            loop = self._loop
            if loop is None:
                return  # the connection is gone: the engine hands these to a worker again
            for _, _, m in batch:
                # Acknowledged once stored; refused by the store (PostgreSQL restarting): handed out
                # again a second later, to this worker or another.
                asyncio.run_coroutine_threadsafe(m.ack() if stored else m.nak(delay=1.0), loop)
        finally:
            with self._held_lock:
                self._held -= len(batch)

