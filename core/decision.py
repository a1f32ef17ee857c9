"""The three-level verdict: green (proceed), amber (ask the caring questions), red (hold, call the
supervisor), with the reason codes that tell the teller and the centre why.

The centre's lists come first: the account or the payee's account on the stop-payment list, or
the customer on the restricted-persons list ("both cards restricted"), is red whatever the model
says; a customer on the warned-persons list (the police just told them they are targeted) is at
least amber, red when the amount is large or the model sees risk too. Otherwise the model's score
is compared with the thresholds from config. Reason codes come from the event itself, so a teller sees
plain signs ("customer on phone", "large share of balance") rather than a number.
"""

from __future__ import annotations

from dataclasses import dataclass

from counterguard.core.events import Event
from counterguard.core.features import NO_HITS, REPORTING_LINE, RISKY_PURPOSES, History, ListHits

GREEN, AMBER, RED = "green", "amber", "red"
LEVELS = (GREEN, AMBER, RED)

# Reason codes, in the order a teller should read them (docs/events.md lists their meaning).
REASON_TEXT = {
    "watchlist": "account on the stop-payment list",
    "payee_watchlist": "payee on the stop-payment list",
    "restricted_person": "customer's cards restricted",
    "warned_person": "customer on police warning list",
    "large_cash": "50,000 yuan or more",
    "just_under_line": "just under the 50,000-yuan line",
    "inbound_cash_out": "cashing out fresh inbound transfers",
    "new_account": "newly opened account",
    "new_payee_account": "payee account opened recently",
    "new_payee": "first transfer to this payee",
    "elderly_customer": "customer aged 60 or over",
    "large_share_of_balance": "large share of the balance",
    "customer_on_phone": "customer on the phone",
    "anxious": "customer anxious",
    "urgent": "customer in a hurry",
    "declared_purpose_mismatch": "purpose does not match",
    "risky_purpose": "investment or loan purpose",
    "repeat_today": "repeated today at this branch",
    "several_counters": "also at other counters today",
    "model_score": "risk model score",
    # What the customer answered to the caring questions (core/dialogue.py), after the first verdict.
    "caller_instructed": "a caller told them to do this",
    "told_account_in_crime": "told account is in a crime",
    "told_to_keep_secret": "told to keep it secret",
    "promised_returns": "promised returns",
    "buying_for_someone": "doing it for someone else",
    "payee_not_known_in_person": "never met the payee",
    "declined_to_answer": "would not answer",
    # SIM cards and accounts (core/cards.py)
    "over_card_limit": "more cards than allowed",
    "not_for_self": "cards for someone else",
    "accompanied_by_helper": "accompanied by a 'helper'",
    "young_or_elderly": "student or elderly customer",
    "many_at_once": "several cards at once",
    "opened_recently": "other accounts opened recently",
    "cards_today": "already asked for cards today",
    "shared_phone": "phone number shared with others",
    "cards_elsewhere": "new cards from other outlets",
    "back_for_more": "back for more cards",
    # Not a sign the gateway finds: branch staff raised the alert themselves (a teller's report).
    "teller_report": "raised by branch staff",
}
REASONS = tuple(REASON_TEXT)
# A warned customer moving this much is red without the model: the line the other "large" signs use.
WARNED_RED_AMOUNT = 10_000.0


def _hits(lists) -> ListHits:
    # A bare bool is the stop-payment hit on the account, as callers before the other lists pass it.
    return lists if isinstance(lists, ListHits) else (ListHits(watchlist=True) if lists else NO_HITS)


@dataclass(frozen=True)
class Thresholds:
    amber: float = 0.5
    red: float = 0.85

    def __post_init__(self):
        if not 0.0 < self.amber < self.red <= 1.0:
            raise ValueError(f"thresholds need 0 < amber < red <= 1, got amber={self.amber} red={self.red}")


@dataclass(frozen=True)
class Verdict:
    event_id: str
    level: str
    score: float
    reasons: tuple
    text: str
    counter: int = 0

    def ack_body(self) -> dict:
        """The ACK payload a terminal shows (docs/protocol.md)."""
        return {
            "event_id": self.event_id,
            "level": self.level,
            "score": round(self.score, 4),
            "reasons": list(self.reasons),
            "text": self.text,
        }


def signs(event: Event, history: History, lists) -> list[str]:
    """Risk signs present in the event, in reading order. ``lists``: ListHits (or True for a
    stop-payment hit on the account)."""
    hits = _hits(lists)
    found = {name for name in ("watchlist", "payee_watchlist", "restricted_person", "warned_person")
             if getattr(hits, name)}
    amount = event.amount
    flags = event.teller_flags
    if amount >= REPORTING_LINE:
        found.add("large_cash")
    elif event.kind == "cash_withdrawal" and amount >= 0.8 * REPORTING_LINE:
        found.add("just_under_line")
    if (event.inbound_count_24h or 0) >= 3 and event.inbound_24h and amount >= 0.7 * event.inbound_24h:
        found.add("inbound_cash_out")
    if event.account_age_days is not None and event.account_age_days < 90 and amount >= 5_000:
        found.add("new_account")
    if event.payee_account_age_days is not None and event.payee_account_age_days < 90 and amount >= 5_000:
        found.add("new_payee_account")
    if event.payee_new and amount >= 10_000:
        found.add("new_payee")
    if event.customer_age is not None and event.customer_age >= 60 and amount >= 10_000:
        found.add("elderly_customer")
    if event.balance_before and amount >= 10_000 and amount >= 0.8 * event.balance_before:
        found.add("large_share_of_balance")
    for flag in ("customer_on_phone", "anxious", "urgent", "declared_purpose_mismatch"):
        if flag in flags:
            found.add(flag)
    if event.purpose in RISKY_PURPOSES:
        found.add("risky_purpose")
    if history.count_24h >= 2:
        found.add("repeat_today")
    if history.other_counters_24h >= 1:
        found.add("several_counters")
    return [r for r in REASONS if r in found]


def verdict_text(level: str, reasons: list[str]) -> str:
    """A short line a teller terminal can show (at most about 120 characters)."""
    shown = ", ".join(REASON_TEXT[r] for r in reasons[:3] if r != "model_score")
    if level == GREEN:
        return "Proceed"
    if level == AMBER:
        return f"Ask the caring questions: {shown}" if shown else "Ask the caring questions"
    return f"Hold: {shown} - call supervisor" if shown else "Hold - call supervisor"


def decide(event: Event, score: float, history: History, lists, thresholds: Thresholds) -> Verdict:
    """``lists``: ListHits, or a bool for the stop-payment list alone."""
    hits = _hits(lists)
    if hits.hold or score >= thresholds.red:
        level = RED
    elif hits.warned_person:
        level = RED if event.amount >= WARNED_RED_AMOUNT or score >= thresholds.amber else AMBER
    elif score >= thresholds.amber:
        level = AMBER
    else:
        level = GREEN
    reasons = signs(event, history, hits) if level != GREEN else []
    if level != GREEN and not reasons:
        reasons = ["model_score"]
    return Verdict(event.event_id, level, float(score), tuple(reasons), verdict_text(level, reasons), event.counter)


LEVEL_RANK = {level: n for n, level in enumerate(LEVELS)}  # green < amber < red


def after_answers(first: Verdict, answers: dict, *, event: Event | None = None, score: float | None = None,
                  history: History | None = None, lists=None, thresholds: Thresholds | None = None) -> Verdict:
    """The final verdict once the customer has answered the caring questions (core/dialogue.py).

    With the model's re-score (``score``: the event's features with the answers filled in, and the
    ``event``, ``history``, ``lists`` and ``thresholds`` of the first verdict) the re-score decides as
    the first score did: reassuring answers can turn a model's amber green and worrying ones raise
    it. A red stands whatever the customer says (the customer is held and the supervisor is on the
    way; the red lamp stays lit until they acknowledge it), a warned customer stays at least amber
    (``decide``), and so does a customer who said "yes" to any part of a scam's script, however
    small the amount: the supervisor hears it.

    Without a re-score (SIM cards and accounts, which the rule book decides) the answers only raise:
    a scam's own script ("a caller told me to", "my account is in a crime case", "keep it secret",
    "promised returns") is red; doing it for someone else, never having met the payee or declining
    two questions is at least amber."""
    from counterguard.core.dialogue import said_scam_script, warning_signs

    signs = warning_signs(answers)
    if score is not None:
        if event is None or history is None or thresholds is None:
            raise ValueError("a re-score needs the event, its history and the thresholds of the first verdict")
        level = decide(event, score, history, lists, thresholds).level
        if first.level == RED:  # the customer is held and the supervisor on the way: theirs to resolve
            level = RED
        elif level == GREEN and said_scam_script(answers):
            level = AMBER  # a scam's own script, said at the counter, is never waved through
    else:
        level = first.level
        if said_scam_script(answers):
            level = RED
        elif signs and LEVEL_RANK[level] < LEVEL_RANK[AMBER]:
            level = AMBER
    kept = [r for r in first.reasons if r not in signs and not (signs and r == "model_score")]
    reasons = signs + kept if level != GREEN else []
    if level != GREEN and not reasons:
        reasons = ["model_score"]
    final_score = first.score if score is None else float(score)
    return Verdict(first.event_id, level, final_score, tuple(reasons), verdict_text(level, reasons), first.counter)
