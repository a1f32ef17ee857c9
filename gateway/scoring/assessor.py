"""The scoring stage: one event against its account's local history, the centre's lists and the model.

Pure but for reading the store's account history, and shared by the serial path (counter/pipeline.py)
and ``counterguard replay``, so a replayed event gets exactly the verdict the counter got.

A challenger model (the centre's ``push-model --shadow``) may score beside the model in force: its
score is kept with the verdict and uploaded for comparison, and never changes what the teller sees.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from counterguard.core import messages
from counterguard.core.cards import decide_card
from counterguard.core.decision import ListHits, Thresholds, Verdict, after_answers, decide
from counterguard.core.events import CARD_KINDS, Event
from counterguard.core.features import (N_FEATURES, History, Visits, card_counts, event_features, summarise_visits,
                                         with_answers)
from counterguard.core.identity import is_identity_hash
from counterguard.core.lists import RESTRICTED, WARNED

log = logging.getLogger(__name__)


def upload_key(account: str, account_hash) -> str | None:
    """An event's account as the event upload sends it: a SIM card or account opening is keyed by the
    person, already a keyed hash; an account number is hashed with ``account_hash`` (the watchlist's
    key); None for what is neither (a replay of old test data)."""
    if is_identity_hash(account):
        return account
    try:
        return account_hash(account)
    except ValueError:
        return None


@dataclass(frozen=True)
class Assessment:
    """A verdict with the model inputs it came from and, when a challenger runs, its score."""

    verdict: Verdict
    features: list
    shadow_score: float | None = None
    shadow_version: str | None = None

    def features_text(self) -> str | None:
        # The upload's own text, written once here (4 µs on the counter's path) so that the upload
        # builds its batches in SQLite without a Python loop over the events. None for SIM cards
        # and account openings: the withdrawal model's inputs do not apply to them.
        return messages.features_text(self.features) if self.features else None

    @property
    def shadow(self) -> tuple | None:
        return None if self.shadow_score is None else (self.shadow_score, self.shadow_version)


class Assessor:
    """Scores one event against its account's local history, the watchlist and the model."""

    def __init__(self, store, watchlist, model, thresholds: Thresholds, shadow=None, persons=None):
        self.store = store
        self.watchlist = watchlist
        self.persons = persons  # PersonLists (warned and restricted persons), or None: no such lists here
        self.model = model
        self.thresholds = thresholds
        self.shadow = shadow  # a challenger FraudModel, or None

    def history(self, event: Event) -> History:
        return self.store.account_summary(event.account, event.epoch, event.counter)

    def visits(self, event: Event) -> Visits:
        """A card event's person: their earlier visits here and who else gave their phone."""
        held, _ = card_counts(event)
        prior, persons = self.store.card_visits(event.account, event.kind, event.customer_phone_hash, event.epoch)
        return summarise_visits(prior, persons, event.epoch, held, event.account)

    def list_hits(self, event: Event) -> ListHits:
        """The centre's lists against the event's account, payee and customer (keyed hashes)."""
        watchlist, persons = self.watchlist, self.persons
        hits = ListHits(watchlist=watchlist.contains(event.account),
                        payee_watchlist=watchlist.contains_hash(event.payee_account_hash))
        who = (event.customer_id_hash, event.customer_phone_hash)
        if persons is None or who == (None, None):
            return hits
        day = event.ts.date().toordinal()  # the event's own calendar day, so a replay matches as the counter did
        restricted = any(persons.match(RESTRICTED, h, day) for h in who)
        warned = any(persons.match(WARNED, h, day) for h in who)
        return replace(hits, restricted_person=restricted, warned_person=warned, persons_checked=True)

    def assessment(self, event: Event) -> Assessment:
        history = self.history(event)
        if event.kind in CARD_KINDS:
            # SIM cards and accounts: the rule book of core/cards.py; the model knows money, not cards.
            return Assessment(decide_card(event, history, self.list_hits(event), self.visits(event)), [])
        hits = self.list_hits(event)
        row = event_features(event, history, hits)
        verdict = decide(event, self.model.score(row), history, hits, self.thresholds)
        challenger = self.shadow
        if challenger is None:
            return Assessment(verdict, row)
        try:
            shadow_score = challenger.score(row)
        except Exception:  # a broken challenger must never cost the teller a verdict
            log.exception("shadow model %s failed on event %s; its score is left out", challenger.version,
                          event.event_id)
            return Assessment(verdict, row)
        return Assessment(verdict, row, float(shadow_score), challenger.version)

    def after_answers(self, event: Event, first: Verdict, answers: dict, row=None) -> Verdict:
        """The final verdict once the customer has answered: the event re-scored with the answers
        (``row``: its first feature row, as stored; recomputed when missing). SIM cards and accounts
        have no model: their answers only raise (core/decision.py ``after_answers``)."""
        if event.kind in CARD_KINDS:
            return after_answers(first, answers)
        history = self.history(event)
        hits = self.list_hits(event)
        if row is None or len(row) != N_FEATURES:
            row = event_features(event, history, hits)
        score = self.model.score(with_answers(row, answers))
        return after_answers(first, answers, event=event, score=score, history=history, lists=hits,
                             thresholds=self.thresholds)

    def assess(self, event: Event) -> Verdict:
        return self.assessment(event).verdict

    def record(self, event: Event, payload: bytes, sha: str, verdict: Verdict, stamp, gateway_id: str,
               ack_body: str | None = None, assessment: Assessment | None = None):
        return self.store.record_verdict(
            event, payload, sha, verdict, stamp,
            model_version=self.model.version,
            watchlist_version=self.watchlist.version,
            gateway_id=gateway_id,
            ack_body=ack_body,
            features=None if assessment is None else assessment.features_text(),
            shadow=None if assessment is None else assessment.shadow,
            account_hash=self.account_hash(event.account),
        )

    def account_hash(self, account: str) -> str | None:
        # remembered by the watchlist: its lookup hashed the account just now
        return upload_key(account, self.watchlist.hash)
