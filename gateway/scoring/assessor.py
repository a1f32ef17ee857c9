"""The scoring stage: one event against its account's local history, the centre's lists and the model.

Pure but for reading the store's account history, and shared by the serial path (counter/pipeline.py)
and ``counterguard replay``, so a replayed event gets exactly the verdict the counter got.
"""

from __future__ import annotations

from counterguard.core.decision import Thresholds, Verdict, decide
from counterguard.core.events import Event
from counterguard.core.features import DAY, History, event_features, summarise_history


class Assessor:
    """Scores one event against its account's local history, the watchlist and the model."""

    def __init__(self, store, watchlist, model, thresholds: Thresholds):
        self.store = store
        self.watchlist = watchlist
        self.model = model
        self.thresholds = thresholds

    def history(self, event: Event) -> History:
        now = event.epoch
        prior = self.store.account_history(event.account, now - DAY, now)
        return summarise_history(prior, now, event.counter)

    def assess(self, event: Event) -> Verdict:
        history = self.history(event)
        score = self.model.score(event_features(event, history))
        return decide(event, score, history, self.watchlist.contains(event.account), self.thresholds)

    def record(self, event: Event, payload: bytes, sha: str, verdict: Verdict, stamp, gateway_id: str,
               ack_body: str | None = None):
        return self.store.record_verdict(
            event, payload, sha, verdict, stamp,
            model_version=self.model.version,
            watchlist_version=self.watchlist.version,
            gateway_id=gateway_id,
            ack_body=ack_body,
        )
