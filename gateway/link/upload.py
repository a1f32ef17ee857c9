"""Events for learning: every scored event, green included, batched for the centre (docs/mqtt.md).

The centre can only learn from outcomes if it sees the events that had none, so the gateway sends
it each event it scored with the model's inputs, the verdict, the model version and, while a
challenger runs in shadow, the challenger's score. Account numbers never leave in clear: each is
replaced by its keyed hash under the watchlist key (the centre hashes its case files with the same
key to join labels).

A batch is an ordinary outbox row of kind ``events``: on disk before it is sent, sent again until
the centre's receipt names its seq, stored once at the centre however often it arrives. Batches are
made only when the outbox has no alert waiting, at most ``open_batches`` at a time, and the uplink
sends alerts, acknowledgements and outcomes ahead of them, so an upload never holds up an alert.

    upload = EventUpload(store, watchlist.hash, gateway_id="gw-0001")
    upload.queue_due()      # called by the uplink when it is idle: returns the seq queued, or None
"""

from __future__ import annotations

import json
import logging
import time

from counterguard.core import messages
from counterguard.core.features import FEATURES_VERSION

log = logging.getLogger(__name__)

# Far below the broker's 1 MiB message limit once compressed (about 90 bytes an event).
MAX_BATCH = 5000


class EventUpload:
    """Turns the store's not-yet-uploaded events into outbox batches."""

    def __init__(self, store, account_hash, *, gateway_id: str, batch_events: int = 500, interval_s: float = 60.0,
                 open_batches: int = 2, clock=time.time):
        if not 1 <= batch_events <= MAX_BATCH:
            raise ValueError(f"batch_events must be 1 to {MAX_BATCH}, got {batch_events}")
        self.store = store
        self.account_hash = account_hash
        self.gateway_id = gateway_id
        self.batch_events = batch_events
        self.interval_s = interval_s
        self.open_batches = open_batches
        self.clock = clock
        self.queued_events = 0  # events put in batches since start, for the heartbeat
        self.queued_batches = 0

    def due(self) -> bool:
        """A full batch is waiting, or the oldest waiting event has waited ``interval_s``."""
        count, oldest = self.store.events_waiting()
        if count == 0:
            return False
        return count >= self.batch_events or self.clock() - (oldest or 0.0) >= self.interval_s

    def queue_due(self) -> int | None:
        """Queue the next batch if one is due and fewer than ``open_batches`` are unreceipted."""
        if self.store.open_event_batches() >= self.open_batches or not self.due():
            return None
        return self.queue_next()

    def queue_next(self) -> int | None:
        """Queue up to ``batch_events`` waiting events as one outbox row; its seq, or None if none wait."""
        rows = self.store.events_to_upload(self.batch_events)
        if not rows:
            return None
        events = [self._event(r) for r in rows]
        first, last = rows[0]["position"], rows[-1]["position"]
        body = messages.events_body(events, gateway_id=self.gateway_id, features_version=FEATURES_VERSION,
                                    first=first, last=last)
        seq = self.store.queue_events(body, first, last, self.clock())
        self.queued_events += len(events)
        self.queued_batches += 1
        log.debug("upload: %d event(s) queued as outbox seq %d", len(events), seq)
        return seq

    def _event(self, r: dict) -> dict:
        try:
            account_hash = self.account_hash(r["account"])
        except ValueError:  # not an account number (a replay of old test data): sent without one
            account_hash = None
        return {
            "event_id": r["event_id"],
            "counter": r["counter"],
            "kind": r["kind"],
            "amount": r["amount"],
            "ts": r["ts"],
            "account_hash": account_hash,
            "level": r["level"],
            "score": round(r["score"], 4),
            "reasons": json.loads(r["reasons"]) if r["reasons"] else [],
            "model_version": r["model_version"],
            "watchlist_version": r["watchlist_version"],
            "features": json.loads(r["features"]) if r["features"] else None,
            "shadow_score": None if r["shadow_score"] is None else round(r["shadow_score"], 4),
            "shadow_version": r["shadow_version"],
            "decided_at": messages.iso(r["decided_wall"]),
        }
