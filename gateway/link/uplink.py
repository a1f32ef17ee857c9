"""The MQTT uplink to the anti-fraud centre (docs/mqtt.md).

The SQLite outbox is the source of truth, not the MQTT client's queue: one worker thread reads the
outbox in seq order and publishes with QoS 1 inside a bounded in-flight window (alerts,
acknowledgements, outcomes and escalations ahead of event batches); only the centre's application
receipt (``{root}/receipt``) closes a row. The window is refilled in chunks, and what was sent and
what the centre receipted are noted in one store transaction per chunk, so a burst of thousands of
alerts costs tens of store writes a second, not one per alert. Each connection attempt uses a fresh
client with a fresh last will carrying a new birth/death sequence number (bdseq), so nothing is replayed
from a stale client queue and a stale will is recognisable. When the connection drops the worker
waits a jittered exponential back-off and connects again; when it is back (or the centre announces
itself online) every unreceipted row goes out again, in order. The serial hot path never waits on
any of this: it commits to SQLite and calls ``wake()``; and the uplink waits for it, a little: a
chunk goes out once the counter lines have been quiet for a moment (at most 50 ms later), so a
drain of thousands of alerts does not take turns for the cores with a teller's verdict.

    uplink = Uplink(store, watchlist, host="mqtt.centre.example", port=8883, gateway_id="gw-0001",
                    region="610100", branch="b0231", tls=("ca.pem", "gw-0001.pem", "gw-0001.key"))
    uplink.start()
    ...
    uplink.wake()        # after committing a new alert: publish now
    uplink.stop()        # says "stopped" (retained) and disconnects cleanly
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from counterguard.core import messages
from counterguard.core.clock import Clock
from counterguard.gateway.scoring.watchlist import WatchlistRejected

log = logging.getLogger(__name__)

# Counters first: the uplink sends its next chunk once no counter line has answered a frame for
# COUNTER_QUIET_S, waiting at most COUNTER_WAIT_MAX_S, so a drain after an outage gives the cores
# back to a teller's verdict instead of taking turns with it, and is never held up for long.
COUNTER_QUIET_S = 0.01
COUNTER_WAIT_MAX_S = 0.05


def broker_list(host: str, port: int) -> list[tuple[str, int]]:
    """``"n1, n2:8884"`` -> ``[("n1", port), ("n2", 8884)]``: the broker nodes to try in turn."""
    brokers = []
    for item in str(host).split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, num = item.rpartition(":")
        if sep and num.isdigit() and name and not name.endswith(":"):
            brokers.append((name.strip("[]"), int(num)))
        else:
            brokers.append((item, int(port)))
    if not brokers:
        raise ValueError("no broker host given: set mqtt.host to a host or a comma-separated list of host[:port]")
    return brokers


class Backoff:
    """Jittered exponential back-off ("full jitter" above a floor).

    Attempt n waits a uniformly random time in ``[low, min(high, low * 2**(n+1))]``. The randomness
    spreads thousands of gateways reconnecting after a broker restart over the whole window instead
    of letting them arrive in synchronised waves; the first retry is spread too, since after a short
    outage it is the one the whole fleet makes at once.
    """

    def __init__(self, low: float, high: float, rng=random.random):
        if not 0 < low <= high:
            raise ValueError(f"back-off needs 0 < backoff_min <= backoff_max, got {low} and {high}")
        self.low, self.high, self._rng = low, high, rng
        self.attempt = 0

    def next(self) -> float:
        cap = min(self.high, self.low * (2 ** min(self.attempt + 1, 32)))
        self.attempt += 1
        return self.low + self._rng() * (cap - self.low)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class UplinkStats:
    published: int = 0  # outbox publishes (alerts, acks, outcomes, escalations), replays included
    receipted: int = 0  # outbox rows closed by the centre's receipts
    sessions: int = 0  # successful connections
    downlink_rejected: int = 0  # malformed or refused messages from the centre
    yielded: int = 0  # chunks held back a moment because a counter line had just answered a frame


class _Session:
    """State of one MQTT connection; callbacks of an old client cannot touch a new session."""

    def __init__(self, bdseq: int):
        self.bdseq = bdseq
        self.connack = threading.Event()
        self.ok = False
        self.alive = True
        self.inflight = 0
        self.cond = threading.Condition()
        self.centre = None
        self.republish_all = False
        self.reannounce = False
        self.subscribe_mid = None
        self.subscriptions: list[str] = []


class Uplink:
    """Publishes alerts, acknowledgements, outcomes, escalations, status and heartbeats; applies
    receipts and watchlists."""

    def __init__(self, store, watchlist, *, host: str, port: int, gateway_id: str, region: str, branch: str,
                 keepalive: int = 30, heartbeat_s: float = 30, republish_after_s: float = 30,
                 historical_after_s: float = 10, status_fields=None, heartbeat_fields=None,
                 backoff_min: float = 1.0, backoff_max: float = 120.0, tls=None, window: int = 200,
                 connect_timeout: float = 5.0, clock: Clock | None = None, downlink=None, upload=None,
                 refill: int | None = None, last_answer=None, counter_quiet_s: float = COUNTER_QUIET_S,
                 counter_wait_max_s: float = COUNTER_WAIT_MAX_S):
        self.store = store
        self.upload = upload  # counterguard.gateway.link.upload.EventUpload: events for learning, when idle
        self._upload_failed_at = float("-inf")
        self.downlink = downlink  # counterguard.gateway.link.downlink.Downlink: signed manifests from the centre
        self.watchlist = watchlist
        # A clustered centre: ``host`` may name several broker nodes ("n1, n2:8884"); a node whose
        # connection fails or drops is left for the next one in the list.
        self.brokers = broker_list(host, int(port))
        self.host, self.port = self.brokers[0]
        self._broker_index = 0
        self.gateway_id, self.region, self.branch = gateway_id, region, branch
        self.topics = messages.Topics(region, branch, gateway_id)  # checks the names now, not at connect
        # Built once: checking the names again for every message of a burst costs a tenth of its time.
        self._topic_of = {kind: self.topics.for_kind(kind)
                          for kind in ("alert", "ack", "outcome", "escalation", "events")}
        self.keepalive = keepalive
        self.heartbeat_s = heartbeat_s
        self.republish_after_s = republish_after_s
        self.historical_after_s = historical_after_s
        self._status_fields = status_fields or (lambda: {"watchlist_version": watchlist.version})
        self._heartbeat_fields = heartbeat_fields or self._status_fields
        self.backoff = Backoff(backoff_min, backoff_max)
        self.tls = tls
        self.window = max(1, int(window))
        # A full window is topped up once this many are acknowledged by the broker, not one by one:
        # each top-up costs a store read and a write.
        self.refill = max(1, min(self.window, int(refill) if refill else self.window // 4))
        self.connect_timeout = connect_timeout
        # ``last_answer()``: monotonic time the counter lines last answered a frame (None: no counters).
        self.last_answer = last_answer
        self.counter_quiet_s, self.counter_wait_max_s = counter_quiet_s, counter_wait_max_s
        self.clock = clock or Clock()
        self.stats = UplinkStats()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._session: _Session | None = None
        # Receipts from the centre, applied by the worker with its next store write (not on paho's
        # network thread, which would stop reading broker acknowledgements while the store writes).
        self._receipts: list[int] = []
        self._receipts_lock = threading.Lock()
        # With the signed downlink on, an unsigned watchlist update is not listened to at all.
        self._watchlist_topics = set() if downlink is not None else set(self.topics.watchlists)

    # -- public -----------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        s = self._session
        return bool(s and s.ok and s.alive)

    @property
    def bdseq(self) -> int | None:
        s = self._session
        return s.bdseq if s else None

    def start(self) -> "Uplink":
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name=f"uplink-{self.gateway_id}", daemon=True)
            self._thread.start()
        return self

    def reannounce(self) -> None:
        """Versions in force changed (a manifest was applied), or a counter line was restarted or
        given up on: publish the status again."""
        s = self._session
        if s is not None:
            s.reannounce = True
        self._wake.set()

    def wake(self) -> None:
        """Something new is in the outbox: publish it now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``stopped`` (retained), disconnect cleanly (no last will) and end the worker."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            log.warning("uplink worker did not stop within %.1f s", timeout)

    def __enter__(self) -> "Uplink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- worker -----------------------------------------------------------------------------------
    def _run(self) -> None:
        first = True
        while not self._stopping.is_set():
            if not first:
                self._next_broker()
                delay = self.backoff.next()
                log.info("uplink: reconnecting to %s:%d in %.1f s", self.host, self.port, delay)
                if self._stopping.wait(delay):
                    break
            first = False
            try:
                opened = self._open()
            except Exception:  # a bug or an unexpected client error must not end the uplink for good
                log.exception("uplink: connecting failed unexpectedly")
                opened = None
            if opened is None:
                continue
            client, session = opened
            self.backoff.reset()
            try:
                self._serve(client, session)
            except Exception:
                log.exception("uplink: session failed; reconnecting")
            finally:
                self._close(client, session)
                self._settle_quietly()
        self._settle_quietly()

    def _next_broker(self) -> None:
        self._broker_index = (self._broker_index + 1) % len(self.brokers)
        self.host, self.port = self.brokers[self._broker_index]

    def _open(self):
        session = _Session(self.store.next_bdseq())
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.gateway_id, clean_session=True,
                             userdata=session, reconnect_on_failure=False)
        client.connect_timeout = self.connect_timeout
        client.max_inflight_messages_set(self.window)
        client.max_queued_messages_set(0)
        if self.tls:
            ca, cert, key = self.tls
            client.tls_set(ca_certs=ca, certfile=cert or None, keyfile=key or None)
        # The will is set before every connect, with this session's bdseq.
        client.will_set(self.topics.status, self._status("offline", session.bdseq), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        try:
            client.connect(self.host, self.port, keepalive=self.keepalive)
        except (OSError, ValueError) as exc:
            log.warning("uplink: cannot reach the broker at %s:%d: %s", self.host, self.port, exc)
            return None
        client.loop_start()
        if not session.connack.wait(self.connect_timeout) or not session.ok:
            log.warning("uplink: broker at %s:%d did not accept the connection", self.host, self.port)
            client.disconnect()
            client.loop_stop()
            return None
        self._session = session
        self.stats.sessions += 1
        log.info("uplink: connected to %s:%d as %s (bdseq %d)", self.host, self.port, self.gateway_id, session.bdseq)
        return client, session

    def _close(self, client, session) -> None:
        if session.alive and self._stopping.is_set():
            try:
                info = client.publish(self.topics.status, self._status("stopped", session.bdseq), qos=1, retain=True)
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError) as exc:
                log.warning("uplink: could not say stopped: %s", exc)
        session.alive = False
        client.disconnect()
        client.loop_stop()
        if self._session is session:
            self._session = None

    def _serve(self, client, session) -> None:
        self._publish_status(client, session)
        # Whatever was sent before this connection may be lost with the old one: send it again, in order.
        with self.store.bookkeeping():
            self.store.outbox_unpublish()
        next_heartbeat = time.monotonic()
        while session.alive and not self._stopping.is_set():
            self._wake.clear()
            if session.republish_all:
                session.republish_all = False
                with self.store.bookkeeping():
                    waiting = self.store.outbox_unpublish()
                log.info("uplink: centre is online; re-announcing and resending %d unreceipted message(s)", waiting)
                session.reannounce = True
            if session.reannounce:
                session.reannounce = False
                self._publish_status(client, session)
            now = time.monotonic()
            if now >= next_heartbeat:
                self._publish_heartbeat(client, session)
                next_heartbeat = now + self.heartbeat_s
            if self._drain(client, session):
                continue
            # Idle: wake for new alerts, the next heartbeat, or rows due for republishing.
            self._wake.wait(max(0.0, min(next_heartbeat - time.monotonic(), 0.5)))

    def _drain(self, client, session) -> bool:
        """Publish the next rows the window has room for, then note them and the receipts that came in
        meanwhile in one store transaction; True if there may be more to do."""
        with session.cond:
            session.cond.wait_for(lambda: self.window - session.inflight >= self.refill or not session.alive
                                  or self._receipts or self._stopping.is_set(), 0.1)
            room = self.window - session.inflight
        if room < self.refill or not session.alive:
            self._settle()  # receipts only: the window is still busy
            return session.alive
        rows = self.store.outbox_pending(room, republish_after_s=self.republish_after_s,
                                         alerts_first=self.upload is not None)
        if not rows:
            self._settle()
            # Nothing of the branch's waiting: time for the next batch of events for learning.
            return self.upload is not None and self._queue_upload()
        self._yield_to_counters()  # only with something to send: an idle turn has nothing to yield
        now = time.time()
        sent = []
        for row in rows:
            historical = now - row.created_wall > self.historical_after_s
            if row.kind == "events":  # a range of the event log, built into its message now
                if self.upload is None:
                    continue  # upload switched off since it was queued: it waits until it is on again
                payload = self.upload.wire(row.payload, seq=row.seq, region=self.region, branch=self.branch,
                                           historical=historical)
            else:
                payload = messages.finalise(row.payload, seq=row.seq, region=self.region, branch=self.branch,
                                            historical=historical)
            topic = self._topic_of.get(row.kind) or self.topics.for_kind(row.kind)
            with session.cond:
                session.inflight += 1
            info = client.publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                with session.cond:
                    session.inflight -= 1
                session.alive = False  # the connection is gone; the row stays pending
                break
            sent.append(row.seq)
        self._settle(sent, now)
        self.stats.published += len(sent)
        return bool(sent) and session.alive

    def _yield_to_counters(self) -> None:
        """Wait (bounded) until the counter lines have been quiet for ``counter_quiet_s``."""
        if self.last_answer is None:
            return
        start = time.monotonic()
        waited = False
        while not self._stopping.is_set():
            now = time.monotonic()
            quiet_for = now - (self.last_answer() or 0.0)
            if quiet_for >= self.counter_quiet_s or now - start >= self.counter_wait_max_s:
                break
            waited = True
            self._stopping.wait(min(self.counter_quiet_s - quiet_for, start + self.counter_wait_max_s - now))
        self.stats.yielded += waited

    def _settle(self, sent=(), wall: float = 0.0) -> None:
        """One store transaction for the rows just sent and the receipts waiting."""
        with self._receipts_lock:
            receipts, self._receipts = self._receipts, []
        if not sent and not receipts:
            return
        closed = 0
        try:
            with self.store.bookkeeping():
                if sent:
                    self.store.mark_published(sent, wall)
                if receipts:
                    closed = self.store.receipt(receipts)
                    self.stats.receipted += closed  # counted as the rows close, for whoever watches both
        except BaseException:
            self.stats.receipted -= closed
            with self._receipts_lock:  # kept for the next try; the sent rows simply go out again
                self._receipts[:0] = receipts
            raise

    def _settle_quietly(self) -> None:
        try:
            self._settle()
        except Exception:  # the receipts stay queued; the rows they name are sent again at worst
            log.exception("uplink: could not apply the centre's receipts")

    def _queue_upload(self) -> bool:
        """Queue the next events batch if one is due. A failure (the disk, a bug) costs the upload, never
        the alerts' session: logged at most once a minute, tried again on the next idle turn."""
        try:
            return self.upload.queue_due() is not None
        except Exception:
            now = time.monotonic()
            if now - self._upload_failed_at > 60:
                self._upload_failed_at = now
                log.exception("uplink: could not queue events for learning; alerts go on, the upload tries again")
            return False

    def _status(self, state: str, bdseq: int) -> str:
        return messages.status_payload(state, bdseq=bdseq, stamp=self.clock.now(), gateway_id=self.gateway_id,
                                       fields=self._fields(self._status_fields))

    @staticmethod
    def _fields(source) -> dict:
        try:
            return dict(source())
        except Exception:  # a status detail must never stop the uplink
            log.exception("uplink: status fields failed")
            return {}

    def _publish_status(self, client, session) -> None:
        client.publish(self.topics.status, self._status("online", session.bdseq), qos=1, retain=True)

    def _publish_heartbeat(self, client, session) -> None:
        stamp = self.clock.now()
        oldest = self.store.oldest_unreceipted_wall()
        payload = messages.heartbeat_payload(
            stamp=stamp, bdseq=session.bdseq, outbox_depth=self.store.outbox_depth(),
            oldest_unreceipted_age_s=None if oldest is None else max(0.0, stamp.wall - oldest),
            fields=self._fields(self._heartbeat_fields))
        client.publish(self.topics.heartbeat, payload, qos=0, retain=False)

    # -- paho callbacks (paho's network thread) ---------------------------------------------------
    def _on_connect(self, client, session, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("uplink: broker refused the connection: %s", reason_code)
        else:
            session.ok = True
            session.subscriptions = ([self.topics.receipt, messages.CENTRE_STATUS] + sorted(self._watchlist_topics)
                                     + list(self.downlink.topics() if self.downlink else ()))
            # QoS 0: the session is clean, so the broker keeps nothing for us between connections
            # whatever the QoS, and TCP delivers within one. Receipts are asked again by resending,
            # manifests are retained and come again on every connection. A clustered broker makes a
            # replicated consumer per QoS 1 subscription, which is what limits its reconnect storm.
            _, session.subscribe_mid = client.subscribe([(t, 0) for t in session.subscriptions])
        session.connack.set()

    def _on_subscribe(self, client, session, mid, reason_codes, properties) -> None:
        if mid != session.subscribe_mid:
            return
        refused = [t for t, rc in zip(session.subscriptions, reason_codes) if rc.is_failure]
        for topic in refused:
            log.warning("uplink: broker at %s:%d refused the subscription to %s", self.host, self.port, topic)
        if self.topics.receipt in refused:
            # Without receipts the outbox never empties, and only a new connection asks again (a
            # clustered broker refuses while it elects a leader): leave this one.
            session.alive = False
            self._wake.set()

    def _on_disconnect(self, client, session, flags, reason_code, properties) -> None:
        if session.alive and not self._stopping.is_set():
            log.warning("uplink: connection to the broker lost (%s)", reason_code)
        session.alive = False
        with session.cond:
            session.cond.notify_all()
        self._wake.set()

    def _on_publish(self, client, session, mid, reason_code, properties) -> None:
        with session.cond:
            session.inflight = max(0, session.inflight - 1)
            if self.window - session.inflight >= self.refill:
                session.cond.notify_all()

    def _on_message(self, client, session, msg) -> None:
        try:
            if msg.topic == self.topics.receipt:
                seqs = messages.parse_receipt(msg.payload)
                with self._receipts_lock:
                    self._receipts.extend(seqs)
                with session.cond:
                    session.cond.notify_all()
                self._wake.set()
            elif msg.topic == messages.CENTRE_STATUS:
                state = messages.parse_centre_status(msg.payload)
                # Each session already starts by resending everything; a retained "online" seen on
                # subscribing is old news, a live one (or one after "offline") means the centre is back.
                if state == "online" and (not msg.retain or session.centre == "offline"):
                    session.republish_all = True
                    self._wake.set()
                session.centre = state
            elif self.downlink is not None and self.downlink.wants(msg.topic):
                self.downlink.handle(msg.topic, msg.payload)  # logs and counts a rejection itself
            elif msg.topic in self._watchlist_topics:
                result = self.watchlist.apply(messages.parse_watchlist_update(msg.payload))
                log.info("uplink: watchlist version %d applied from %s (%d accounts)", result.version, msg.topic,
                         result.size)
                session.reannounce = True
                self._wake.set()
        # Logged before counted: whoever watches the count finds the reason already in the log.
        except (messages.DownlinkError, WatchlistRejected) as exc:
            log.warning("uplink: ignored a message on %s: %s", msg.topic, exc)
            self.stats.downlink_rejected += 1
        except Exception:  # never let a bad downlink end paho's network thread
            log.exception("uplink: failed to handle a message on %s", msg.topic)
            self.stats.downlink_rejected += 1
