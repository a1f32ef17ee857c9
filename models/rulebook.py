"""The counter rule book: the paper rules branches used before the model, kept as the baseline to beat.

- red if the account is on the stop-payment watchlist;
- amber if the amount is 50,000 yuan or more, or the customer is 60 or over and the amount is
  20,000 or more, or the account is younger than 90 days and the amount is 10,000 or more;
- an amber becomes red if the customer is on the phone or anxious.

With the signals a counter now has (``rulebook_first_level``, ``rulebook_after_answers``): a restricted customer or a payee on
the stop-payment list is red, a customer on the police's warned list at least amber, and once an
alerted customer has answered the caring questions, the answers' rules of core/decision.py
``after_answers`` without a model (a scam's script red; for someone else, a payee never met or two
refusals at least amber). Paper rules only ever raise.

A field the terminal did not report (age, account age) cannot trigger its rule, as on paper: the
teller had nothing to compare. Levels are the gateway's own (``counterguard.core.decision``).
"""

from __future__ import annotations

from counterguard.core.decision import AMBER, GREEN, RED
from counterguard.core.events import Event
from counterguard.core.features import REPORTING_LINE

ELDERLY_AGE = 60
ELDERLY_AMOUNT = 20_000.0
NEW_ACCOUNT_DAYS = 90
NEW_ACCOUNT_AMOUNT = 10_000.0
ESCALATING_FLAGS = frozenset({"customer_on_phone", "anxious"})


def rulebook_level(event: Event, watchlisted: bool) -> str:
    """green, amber or red for one event by the rule book."""
    if watchlisted:
        return RED
    amount = event.amount
    age = event.customer_age
    account_age = event.account_age_days
    amber = (amount >= REPORTING_LINE
             or (age is not None and age >= ELDERLY_AGE and amount >= ELDERLY_AMOUNT)
             or (account_age is not None and account_age < NEW_ACCOUNT_DAYS and amount >= NEW_ACCOUNT_AMOUNT))
    if not amber:
        return GREEN
    return RED if ESCALATING_FLAGS & set(event.teller_flags) else AMBER


def rulebook_first_level(event: Event, hold: bool, warned: bool) -> str:
    """The rule book's level with the lists (``hold``: account, payee or customer on a list that holds;
    ``warned``: on the warned-persons list)."""
    level = rulebook_level(event, hold)
    return AMBER if warned and level == GREEN else level


def rulebook_after_answers(level: str, answers: dict | None) -> str:
    """The rule book's final level once a customer alerted at ``level`` has answered (``answers``)."""
    from counterguard.core.dialogue import said_scam_script

    if level == GREEN or not answers:
        return level
    # An alerted customer is at least amber already, so the other answers' rules change nothing here.
    return RED if said_scam_script(answers) else level
