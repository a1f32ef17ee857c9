"""The "two cards" at the counter: a SIM card at a carrier's outlet, a bank account at a bank's desk.

Fraud runs on cards bought, rented or opened for someone else. The signs a counter sees are who
asks (a student, an elderly person), for whom (not for themselves), with whom (a "helper" who
does the talking), and how many (more cards than a person is allowed, several in a day). This is
the rule book for those two event kinds (docs/events.md "Two cards"): the verdict a card event gets
at the gateway, and the baseline a card model is judged against.

    verdict = decide_card(event, history, lists)
"""

from __future__ import annotations

from counterguard.core.decision import AMBER, GREEN, RED, ListHits, Verdict, _hits, verdict_text
from counterguard.core.events import Event
from counterguard.core.features import History

# A person may hold at most five SIM cards with one carrier; a bank opens Class I accounts sparingly.
SIM_LIMIT = 5
ACCOUNTS_OPENED_90D_LIMIT = 2
YOUNG, ELDERLY = 22, 65  # students and pensioners are the card dealers' recruits

# The rule book's own signs (their words are core/decision.py's REASON_TEXT).
CARD_SIGNS = ("over_card_limit", "not_for_self", "accompanied_by_helper", "young_or_elderly", "many_at_once",
              "opened_recently", "cards_today")
# Family, a business or devices explain cards for others; a person's own purpose does not.
_EXPLAINED = ("family", "business", "iot")


def card_signs(event: Event, history: History, lists) -> list[str]:
    """The rule book's signs in one card event, in reading order (list hits first)."""
    hits = _hits(lists)
    found = [name for name in ("restricted_person", "warned_person") if getattr(hits, name)]
    held = (event.sims_held or 0) + (event.sims_requested or 0)
    # The per-person limit is for phone numbers: a firm's IoT cards for its devices are not a person's.
    if event.kind == "sim_activation" and held > SIM_LIMIT and "iot" not in (event.purpose, event.number_type):
        found.append("over_card_limit")
    if event.for_self is False and event.purpose not in _EXPLAINED:
        found.append("not_for_self")
    if event.accompanied or "accompanied" in event.teller_flags:
        found.append("accompanied_by_helper")
    if event.customer_age is not None and (event.customer_age < YOUNG or event.customer_age >= ELDERLY):
        found.append("young_or_elderly")
    if (event.sims_requested or 0) >= 3 and event.purpose not in ("business", "iot"):
        found.append("many_at_once")
    if (event.accounts_opened_90d or 0) >= ACCOUNTS_OPENED_90D_LIMIT:
        found.append("opened_recently")
    if history.count_24h >= 1:
        found.append("cards_today")
    for flag in ("customer_on_phone", "anxious", "urgent", "declared_purpose_mismatch"):
        if flag in event.teller_flags:
            found.append(flag)
    return found


def decide_card(event: Event, history: History, lists) -> Verdict:
    """Red for a restricted person, or cards for someone else with a helper at their side, or over
    the limit and not for themselves; amber for a warned person or any two signs; else green.
    The score is the share of the rule book's signs present (there is no model for cards yet)."""
    hits: ListHits = _hits(lists)
    signs = card_signs(event, history, hits)
    core = set(signs)
    if hits.restricted_person or {"not_for_self", "accompanied_by_helper"} <= core or (
            "over_card_limit" in core and core & {"not_for_self", "accompanied_by_helper", "cards_today"}):
        level = RED
    elif hits.warned_person or "over_card_limit" in core or len(signs) >= 2:
        level = AMBER
    else:
        level = GREEN
    score = min(0.99, len(signs) / 5)
    reasons = signs if level != GREEN else []
    return Verdict(event.event_id, level, score, tuple(reasons), verdict_text(level, reasons), event.counter)
