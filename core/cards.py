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
from counterguard.core.features import NO_VISITS, History, Visits

# A person may hold at most five SIM cards with one carrier; a bank opens Class I accounts sparingly.
SIM_LIMIT = 5
ACCOUNTS_OPENED_90D_LIMIT = 2
YOUNG, ELDERLY = 22, 65  # students and pensioners are the card dealers' recruits
# Two other persons behind one phone number: a dealer's number (a family or an employer's HR rarely
# brings more than one other).
SHARED_PHONE_PERSONS = 2
CARDS_ELSEWHERE = 2  # cards opened at other outlets since the last visit here: a dealer's round

# The rule book's own signs (their words are core/decision.py's REASON_TEXT).
CARD_SIGNS = ("over_card_limit", "not_for_self", "accompanied_by_helper", "young_or_elderly", "many_at_once",
              "opened_recently", "cards_today", "shared_phone", "cards_elsewhere", "back_for_more")
# Family, a business or devices explain cards for others; a person's own purpose does not.
_EXPLAINED = ("family", "business", "iot")


def card_signs(event: Event, history: History, lists, visits: Visits = NO_VISITS) -> list[str]:
    """The rule book's signs in one card event, in reading order (list hits first). ``visits``: the
    person's earlier visits here and who else gave their phone (``summarise_visits``)."""
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
    if visits.others_on_phone_30d >= SHARED_PHONE_PERSONS:
        found.append("shared_phone")
    if visits.cards_gained_elsewhere >= CARDS_ELSEWHERE:
        found.append("cards_elsewhere")
    # Back on another day for more, with nothing to explain it: a dealer's next round. A family, a
    # shop or a fleet coming back for its next cards is not a sign; today's visits are cards_today.
    if visits.days_since_last is not None and visits.days_since_last >= 1 and event.purpose not in _EXPLAINED:
        found.append("back_for_more")
    for flag in ("customer_on_phone", "anxious", "urgent", "declared_purpose_mismatch"):
        if flag in event.teller_flags:
            found.append(flag)
    return found


def decide_card(event: Event, history: History, lists, visits: Visits = NO_VISITS) -> Verdict:
    """Red for a restricted person, or cards for someone else with a helper at their side, or over
    the limit and not for themselves, or a phone shared with other persons and any other sign; amber
    for a warned person, a shared phone or any two signs; else green. The score is the share of the
    rule book's signs present (there is no model for cards yet)."""
    hits: ListHits = _hits(lists)
    signs = card_signs(event, history, hits, visits)
    core = set(signs)
    if hits.restricted_person or {"not_for_self", "accompanied_by_helper"} <= core or (
            "over_card_limit" in core and core & {"not_for_self", "accompanied_by_helper", "cards_today"}) or (
            "shared_phone" in core and len(signs) >= 2):
        level = RED
    elif hits.warned_person or core & {"over_card_limit", "shared_phone"} or len(signs) >= 2:
        level = AMBER
    else:
        level = GREEN
    score = min(0.99, len(signs) / 5)
    reasons = signs if level != GREEN else []
    return Verdict(event.event_id, level, score, tuple(reasons), verdict_text(level, reasons), event.counter)
