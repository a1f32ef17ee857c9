"""Events for learning: every scored event, green included, batched for the centre (docs/mqtt.md).

The centre can only learn from outcomes if it sees the events that had none, so the gateway sends
it each event it scored with the model's inputs, the verdict, the model version and, while a
challenger runs in shadow, the challenger's score. Account numbers never leave in clear: each is
replaced by its keyed hash under the watchlist key (the centre hashes its case files with the same
key to join labels).

A batch is an ordinary outbox row of kind ``events``, naming a range of the gateway's event log:
on disk before it is sent (the events themselves are the batch; they are not written twice), sent
again until the centre's receipt names its seq, stored once at the centre however often it
arrives, and never purged from the event log while unreceipted. Batches are made only when nothing
else is due to be sent, at most ``open_batches`` at a time, and the uplink sends alerts,
acknowledgements and outcomes ahead of them, so an upload never holds up an alert. While the
counters are taking events (a burst), a due batch waits for a quiet moment, at most
``wait_for_quiet_s`` after its oldest event: the counters' verdicts get the CPU first.

    upload = EventUpload(store, watchlist.hash, gateway_id="gw-0001")
    upload.queue_due()            # the uplink, when idle: queues the next range, returns its seq or None
    upload.wire(row)              # the uplink, sending an events row: its compressed message
"""

from __future__ import annotations

import json
import logging
import time

from counterguard.core import messages
from counterguard.core.features import FEATURES_VERSION
from counterguard.gateway.scoring.assessor import upload_key

log = logging.getLogger(__name__)

# Far below the broker's 1 MiB message limit once compressed (under 100 bytes an event).
MAX_BATCH = 5000
CHECK_EVERY_S = 0.25  # how often an idle uplink asks whether a batch is due (each asking reads the store)
WAIT_FOR_QUIET_S = 300.0  # longest a batch waits for busy counters to go quiet


class EventUpload:
    """Turns the store's not-yet-uploaded events into outbox batches, and batches into messages."""

    def __init__(self, store, account_hash, *, gateway_id: str, batch_events: int = 500, interval_s: float = 60.0,
                 open_batches: int = 2, clock=time.time, check_every_s: float = CHECK_EVERY_S,
                 counters_busy=None, wait_for_quiet_s: float = WAIT_FOR_QUIET_S):
        if not 1 <= batch_events <= MAX_BATCH:
            raise ValueError(f"batch_events must be 1 to {MAX_BATCH}, got {batch_events}")
        self.store = store
        self.account_hash = account_hash
        self.gateway_id = gateway_id
        self.batch_events = batch_events
        self.interval_s = interval_s
        self.open_batches = open_batches
        self.clock = clock
        self.check_every_s = check_every_s
        # True while the counters are taking events: batches then wait for a quiet moment, at most
        # ``wait_for_quiet_s`` after their oldest event was decided (0: never wait).
        self.counters_busy = counters_busy or (lambda: False)
        self.wait_for_quiet_s = wait_for_quiet_s
        self.queued_events = 0  # events put in batches since start, for the heartbeat
        self.queued_batches = 0
        self.waited_for_quiet = 0  # times a due batch waited because the counters were busy
        self._next_check = 0.0
        self._waiting_since = None  # when the oldest event found waiting for quiet counters was decided

    def due(self, found) -> bool:
        """``found`` (the waiting range, ``Store.next_upload_range``, None if nothing waits) is a full
        batch, or its oldest event has waited ``interval_s``."""
        if found is None:
            return False
        count, oldest = found[2], found[3]
        return count >= self.batch_events or self.clock() - oldest >= self.interval_s

    def queue_due(self) -> int | None:
        """Queue the next batch if one is due, fewer than ``open_batches`` are unreceipted, and the
        counters are quiet (or its oldest event has waited ``wait_for_quiet_s`` for them to be)."""
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + self.check_every_s
        if self.store.open_event_batches() >= self.open_batches:
            self._next_check = 0.0  # the receipt that frees a place wakes the uplink: look again then
            return None
        # Building a batch takes CPU the counters' verdicts need in a burst (a mule ring at several
        # counters, a backlog replayed after a cut): the events are on disk and can wait.
        if self._waiting_since is not None and self._may_wait(self._waiting_since):
            return None  # still busy, and the oldest event seen waiting may wait on: no need to read
        found = self.store.next_upload_range(self.batch_events)
        if not self.due(found):
            return None
        if self._may_wait(found[3]):
            self._waiting_since = found[3]
            return None
        self._next_check = 0.0  # a batch went: the next may be due at once
        return self._queue(found)

    def _may_wait(self, oldest_wall: float) -> bool:
        if self.clock() - oldest_wall < self.wait_for_quiet_s and self.counters_busy():
            self.waited_for_quiet += 1
            return True
        return False

    def queue_next(self) -> int | None:
        """Queue up to ``batch_events`` waiting events as one outbox row; its seq, or None if none wait."""
        found = self.store.next_upload_range(self.batch_events)
        return None if found is None else self._queue(found)

    def _queue(self, found) -> int:
        first, last, count, _ = found
        self._waiting_since = None  # the oldest waiting event is in this batch now
        seq = self.store.queue_events(first, last, count, self.clock())
        self.queued_events += count
        self.queued_batches += 1
        log.debug("upload: %d event(s) queued as outbox seq %d", count, seq)
        return seq

    def body(self, payload: str) -> str:
        """The batch body for an events outbox row's payload (its range), built from the event log."""
        span = json.loads(payload)
        items = self.store.events_json(span["first"], span["last"], self._hash_or_none)
        return messages.events_body(items, gateway_id=self.gateway_id, features_version=FEATURES_VERSION,
                                    first=span["first"], last=span["last"])

    def wire(self, payload: str, *, seq: int, region: str, branch: str, historical: bool) -> bytes:
        text = messages.finalise(self.body(payload), seq=seq, region=region, branch=branch, historical=historical)
        return messages.pack_events(text)

    def _hash_or_none(self, account: str) -> str | None:
        """For verdicts stored before their account's hash was kept with them (SQLite calls it)."""
        return upload_key(account, self.account_hash)
