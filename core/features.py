"""Features: the one place an event and its account's local history become model inputs.

Training (models/) and the gateway both call ``event_features`` and ``summarise_history`` so the
numbers a model was trained on are the numbers it is given at the counter. Changing a feature
means retraining: ``FEATURES_VERSION`` is written into every model manifest and checked at load.

Version 3 adds what the counter knows beyond the transaction: whether the customer was checked
against the police's warned-persons list and was on it, and the customer's answers to the caring
questions (core/dialogue.py). Something unknown is its own value, never a "no": a customer whose
identity the terminal did not send has ``persons_checked`` 0, and a signal not asked has all three
of its answer columns at 0, unlike a "no". So every column added in version 3 is 0 when the signal
is absent, and a version-2 row padded with zeros reads as "nothing known" (``pad_row``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from counterguard.core.dialogue import ANSWERS, SIGNALS
from counterguard.core.events import Event

FEATURES_VERSION = 3
REPORTING_LINE = 50_000.0  # large-cash line (yuan) at which identity and purpose checks apply
HOUR = 3600.0
DAY = 24 * HOUR

FEATURE_NAMES = (
    "log_amount",
    "large_cash",
    "just_under_line",
    "is_transfer",
    "customer_age",
    "age_known",
    "elderly",
    "log_account_age_days",
    "account_age_known",
    "share_of_balance",
    "balance_known",
    "log_inbound_24h",
    "cash_out_of_inbound",
    "log_inbound_count_24h",
    "customer_on_phone",
    "accompanied",
    "anxious",
    "urgent",
    "declared_purpose_mismatch",
    "risky_purpose",
    "purpose_missing",
    "log_history_count_24h",
    "log_history_amount_24h",
    "history_other_counters_24h",
    "history_count_1h",
    "payee_new",
    "payee_known",
    "log_payee_account_age_days",
    "payee_account_age_known",
    # version 3: the lists of persons and the caring dialogue
    "persons_checked",
    "warned_person",
    "answered",
) + tuple(f"{signal}_{answer}" for signal in SIGNALS for answer in ANSWERS)
V2_FEATURES = 29  # the columns of version 2, a prefix of version 3
N_FEATURES = len(FEATURE_NAMES)
RISKY_PURPOSES = frozenset({"investment", "loan_repayment"})


@dataclass(frozen=True)
class History:
    """The same account's earlier events at this gateway."""

    count_1h: int = 0
    count_24h: int = 0
    amount_24h: float = 0.0
    other_counters_24h: int = 0


NO_HISTORY = History()


@dataclass(frozen=True)
class ListHits:
    """What the centre's lists say about one event; every match is of keyed hashes."""

    watchlist: bool = False  # the account is on the stop-payment list
    payee_watchlist: bool = False  # the transfer's payee account is on it
    restricted_person: bool = False  # the customer is under "both cards restricted"
    warned_person: bool = False  # the customer is on the police's early-warning list
    # The customer's identity (id or phone hash) was looked up in the lists of persons: without it a
    # warned_person False means "not known", not "not warned".
    persons_checked: bool = False

    @property
    def hold(self) -> bool:
        """Red whatever the model or the customer's answers say."""
        return self.watchlist or self.payee_watchlist or self.restricted_person


NO_HITS = ListHits()


def summarise_history(prior: Iterable[tuple[float, float, int]], now: float, counter: int) -> History:
    """Summarise earlier ``(epoch, amount, counter)`` records of one account as seen at ``now``.

    Records at or after ``now``, or older than 24 h, are ignored, so callers may pass a loose window.
    """
    count_1h = count_24h = 0
    amount_24h = 0.0
    counters = set()
    for when, amount, other in prior:
        age = now - when
        if age <= 0 or age > DAY:
            continue
        count_24h += 1
        amount_24h += amount
        if age <= HOUR:
            count_1h += 1
        if other != counter:
            counters.add(other)
    return History(count_1h, count_24h, amount_24h, len(counters))


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def pad_row(row) -> list[float]:
    """A version-2 row (29 values) as version 3: the lists and answers not known."""
    row = list(row)
    return row + [0.0] * (N_FEATURES - len(row)) if len(row) == V2_FEATURES else row


def answer_columns(answers: dict | None) -> list[float]:
    """The ``answered`` column and the three columns of each signal, for answers {signal: answer}."""
    if not answers:
        return [0.0] * (1 + len(SIGNALS) * len(ANSWERS))
    out = [1.0]
    for signal in SIGNALS:
        given = answers.get(signal)
        out += [1.0 if given == answer else 0.0 for answer in ANSWERS]
    return out


_FIRST_ANSWER = FEATURE_NAMES.index("answered")


def with_answers(row, answers: dict | None) -> list[float]:
    """``row`` (an ``event_features`` row) with the customer's answers filled in."""
    return list(row[:_FIRST_ANSWER]) + answer_columns(answers)


def event_features(event: Event, history: History = NO_HISTORY, hits: ListHits | None = None,
                   answers: dict | None = None) -> list[float]:
    """The model's input row for one event, in ``FEATURE_NAMES`` order. ``hits``: the lists' matches
    (None: no lists looked at); ``answers``: the caring dialogue's {signal: answer} (None: not asked)."""
    amount = event.amount
    flags = event.teller_flags
    age = event.customer_age
    acct_age = event.account_age_days
    balance = event.balance_before
    inbound = event.inbound_24h
    inbound_count = event.inbound_count_24h
    payee_age = event.payee_account_age_days
    share = _clip(amount / balance, 0.0, 2.0) if balance else (2.0 if balance == 0 else 0.0)
    cash_out = _clip(amount / inbound, 0.0, 2.0) if inbound else 0.0
    return [
        math.log1p(amount),
        1.0 if amount >= REPORTING_LINE else 0.0,
        1.0 if 0.8 * REPORTING_LINE <= amount < REPORTING_LINE else 0.0,
        1.0 if event.kind == "transfer_out" else 0.0,
        float(age) if age is not None else 0.0,
        1.0 if age is not None else 0.0,
        1.0 if age is not None and age >= 60 else 0.0,
        math.log1p(acct_age) if acct_age is not None else 0.0,
        1.0 if acct_age is not None else 0.0,
        share,
        1.0 if balance is not None else 0.0,
        math.log1p(inbound) if inbound is not None else 0.0,
        cash_out,
        math.log1p(inbound_count) if inbound_count is not None else 0.0,
        1.0 if "customer_on_phone" in flags else 0.0,
        1.0 if "accompanied" in flags else 0.0,
        1.0 if "anxious" in flags else 0.0,
        1.0 if "urgent" in flags else 0.0,
        1.0 if "declared_purpose_mismatch" in flags else 0.0,
        1.0 if event.purpose in RISKY_PURPOSES else 0.0,
        1.0 if event.purpose is None else 0.0,
        math.log1p(history.count_24h),
        math.log1p(history.amount_24h),
        float(min(history.other_counters_24h, 8)),
        float(min(history.count_1h, 20)),
        # The receiving side: a coached victim can give any purpose and keep calm, but cannot make a
        # fraudster's account an old, known payee.
        1.0 if event.payee_new else 0.0,
        1.0 if event.payee_new is not None else 0.0,
        math.log1p(payee_age) if payee_age is not None else 0.0,
        1.0 if payee_age is not None else 0.0,
        1.0 if hits is not None and hits.persons_checked else 0.0,
        1.0 if hits is not None and hits.persons_checked and hits.warned_person else 0.0,
    ] + answer_columns(answers)


# --- SIM cards and accounts (the "two cards" counters) ------------------------------------------------
# A card event has no money: its inputs are who asks, for whom, with whom, how many, and the same
# person's card events earlier today (``History`` keyed by the person's hash). Kept apart from the
# money model's row, with its own version, so either can change without retraining the other.
CARD_FEATURES_VERSION = 1
_CARD_PURPOSES = ("personal", "family", "business", "iot", "salary", "savings", "pension", "student",
                  "investment", "other")
_NUMBER_TYPES = ("prepaid", "postpaid", "data_only", "iot")
_CARD_TYPES = ("type_i", "type_ii", "type_iii", "credit")
CARD_FEATURE_NAMES = (
    "is_sim",
    "customer_age",
    "age_known",
    "young",
    "elderly",
    "log_cards_held",
    "cards_held_known",
    "log_cards_requested",
    "log_opened_90d",
    "opened_90d_known",
    "not_for_self",
    "for_self_known",
    "accompanied",
    "customer_on_phone",
    "anxious",
    "urgent",
    "log_cards_today",
    "other_counters_today",
    "persons_checked",
    "warned_person",
    "purpose_missing",
) + tuple(f"purpose_{p}" for p in _CARD_PURPOSES) + tuple(f"number_{t}" for t in _NUMBER_TYPES) \
  + tuple(f"card_{t}" for t in _CARD_TYPES)
N_CARD_FEATURES = len(CARD_FEATURE_NAMES)


VISIT_DAYS = 90  # a person's earlier card visits looked at: a dealer's rounds come back within weeks
PHONE_DAYS = 30  # other persons who gave the same phone number
VISITS_LIMIT = 200  # the newest records read back of each: a person's visits, the persons behind a phone


@dataclass(frozen=True)
class Visits:
    """The same person's earlier card visits at this gateway, and who else gave their phone number.

    Card dealers take a recruit round several outlets, and come back with them: their holdings rise
    between visits by more than was opened here; and recruits often give the dealer's phone, so one
    number stands behind several persons ("several accounts bound to one number")."""

    visits_90d: int = 0
    days_since_last: float | None = None  # None: not seen here in VISIT_DAYS
    cards_gained_elsewhere: int = 0  # held now, over held at the last visit here plus asked for then
    others_on_phone_30d: int = 0  # other persons (identity hashes) who gave the same phone


NO_VISITS = Visits()


def card_counts(event: Event) -> tuple[int | None, int]:
    """(cards held, cards asked for) of a card event: SIM cards, or accounts (one a visit)."""
    if event.kind == "sim_activation":
        return event.sims_held, event.sims_requested or 1
    return event.accounts_held, 1


def summarise_visits(prior: Iterable[tuple[float, int | None, int]], phone_persons: Iterable[tuple[float, str]],
                     now: float, held: int | None, person: str) -> Visits:
    """Summarise a person's earlier ``(epoch, held, asked)`` card events of the same kind and the
    ``(epoch, person)`` card events that gave the same phone, as seen at ``now`` by a card event of
    ``person`` holding ``held`` cards. Records at or after ``now``, or older than the window
    (VISIT_DAYS, PHONE_DAYS), are ignored, so callers may pass a loose window."""
    last = None
    count = 0
    for when, was_held, asked in prior:
        age = now - when
        if age <= 0 or age > VISIT_DAYS * DAY:
            continue
        count += 1
        if last is None or when > last[0]:
            last = (when, was_held, asked)
    gained = 0
    if last is not None and held is not None and last[1] is not None:
        gained = max(0, held - (last[1] + last[2]))
    others = {who for when, who in phone_persons if 0 < now - when <= PHONE_DAYS * DAY and who != person}
    return Visits(count, None if last is None else (now - last[0]) / DAY, gained, len(others))


def card_features(event: Event, history: History = NO_HISTORY, hits: ListHits | None = None) -> list[float]:
    """The card model's input row for a ``sim_activation`` or ``account_opening`` event."""
    sims = event.kind == "sim_activation"
    age = event.customer_age
    held, requested = card_counts(event)
    opened = event.accounts_opened_90d
    flags = event.teller_flags
    checked = hits is not None and hits.persons_checked
    return [
        1.0 if sims else 0.0,
        float(age) if age is not None else 0.0,
        1.0 if age is not None else 0.0,
        1.0 if age is not None and age < 23 else 0.0,
        1.0 if age is not None and age >= 65 else 0.0,
        math.log1p(held) if held is not None else 0.0,
        1.0 if held is not None else 0.0,
        math.log1p(requested),
        math.log1p(opened) if opened is not None else 0.0,
        1.0 if opened is not None else 0.0,
        1.0 if event.for_self is False else 0.0,
        1.0 if event.for_self is not None else 0.0,
        1.0 if event.accompanied or "accompanied" in flags else 0.0,
        1.0 if "customer_on_phone" in flags else 0.0,
        1.0 if "anxious" in flags else 0.0,
        1.0 if "urgent" in flags else 0.0,
        math.log1p(history.count_24h),
        float(min(history.other_counters_24h, 8)),
        1.0 if checked else 0.0,
        1.0 if checked and hits.warned_person else 0.0,
        1.0 if event.purpose is None else 0.0,
    ] + [1.0 if event.purpose == p else 0.0 for p in _CARD_PURPOSES] \
      + [1.0 if event.number_type == t else 0.0 for t in _NUMBER_TYPES] \
      + [1.0 if event.card_type == t else 0.0 for t in _CARD_TYPES]
