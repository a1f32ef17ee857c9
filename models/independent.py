"""An independent evaluation branch: labelled teller events drawn by a second, separate generator.

The fraud model is trained on the project's scenario simulator. Judging it only on more output of
that simulator would reward it for learning the simulator's quirks. This module is written
separately, from the fraud typologies as banks and police describe them in public and from how a
branch's customers live, without reference to the training simulator's code or to the features
the model reads, so that the two share only the event schema (docs/events.md) and the typology
names. ``independent_branch(seed, n_events)`` returns a time-ordered list of items::

    {"event": <event schema v1>, "label": 0 | 1, "typology": "<name>", "watchlisted": bool,
     "signals": {"identity": bool, "warned": bool, "restricted": bool, "payee_listed": bool,
                 "answers": {<signal>: "yes" | "no" | "declined", ...}},
     "coached": bool}

``watchlisted`` says the account is on the anti-fraud centre's stop-payment list; it is a property
of the account for the whole set (the centre listed it after reports elsewhere), so a watchlist
file built from these items is the list the branch would have held. ``signals`` is what the
counter learns beyond the event (the lists of persons and payees, the caring answers; see "Signals
beyond the event" below) and ``coached`` is True only for a fraud event whose victim was coached.

Every number below is an ASSUMPTION chosen from the domain before any model was run against this
set; none was adjusted afterwards to move a metric. Where a public pattern stands behind a choice
it is named.

The branch
    A residential-district branch with an older clientele than a city-centre one: younger customers
    bank on their phones, pensioners come to the counter. Five counters; counter 5 is an older
    terminal whose firmware sends only the required fields plus ``customer_age``,
    ``account_age_days`` and ``balance_before`` (no teller flags, purpose, inbound or payee
    fields). On the other counters an optional field is left out now and then (2-5 % each: the
    teller skipped it, the core system did not answer in time). Open 09:00-17:00 on weekdays and
    09:00-16:00 at weekends, busiest mid-morning and mid-afternoon. Times carry +08:00. The set
    starts on Monday 3 March 2025 and runs day by day until it holds ``n_events``.
    About 305 events on a weekday and 250 on a weekend day (assumption, within the 250-350 a
    branch of this kind handles); more on pension and salary days.

Customers with persistent life histories (honest)
    5,000 account holders at the start, about 1.5 new accounts a day (young people, newcomers,
    pensioners moving their pension account). Account holders' ages: 18-29 16 %, 30-44 24 %,
    45-59 26 %, 60-74 24 %, 75-92 10 %; older customers come to the counter more often (weight
    1.8 for 60+, 1.2 for 45-59, 0.8 below), so about half of the counter events are customers
    aged 60 or over. Savings are log-normal by age (medians 8,000 / 40,000 / 80,000 / 120,000 /
    100,000 yuan, sigma 1.1). Working-age customers are paid on the 5th, 10th, 15th, 20th or
    25th (salary median 6,000, sigma 0.5); pensioners on the 8th (80 %) or the 18th (pension
    median 3,500, sigma 0.4). Income lands as one inbound transfer and the balance then drains
    through spending elsewhere (70 % of a salary, 40 % of a pension, spread over the month).
    Children send parents small sums now and then. A customer's balance carries over from one
    visit to the next, including what a fraud took.

    ordinary          cash (70 %; 80 % for 60+) or transfers to relatives, bills, loans. Cash is
                      log-normal (median 2,000 for pensioners, 3,000 otherwise, sigma 0.9), 5 %
                      of visits a bigger purchase (median 15,000, sigma 0.7); never more than
                      the balance. On a pension or salary day a fifth of the ordinary visits
                      are customers who have just been paid.
    business_cash     about 80 small businesses (restaurants, shops, subcontractors), accounts
                      1-15 years old (10 % newly opened), owners 30-62: cash median 25,000
                      (sigma 0.75), payroll days at month end x1.8; some receipts inbound.
    trader_cash       market traders whose customers pay by QR code: many small inbound
                      payments (median 25 a day, median 250 yuan each times a per-stall size
                      factor, log-normal sigma 0.9) cashed out (55-100 %) at the counter.
                      Stalls come and go (median life about 8 months) and a stall's collection
                      card is often opened for it, so many accounts are weeks old. Half of the
                      traders who would cross 50,000 stay just under it to avoid the large-cash
                      paperwork, as mules do.
    house_purchase    down payment or price by transfer (median 300,000, sigma 0.6) or a cash
                      deposit (15 %), 60-100 % of the balance, usually a new payee; the payee's
                      account age is known for half, and a developer's project account can be
                      months old. Often accompanied; sometimes on the phone with the agent.
    medical_bill      hospital deposit in cash or by transfer (median 20,000, sigma 0.8),
                      20-100 % of the balance; anxious, urgent, accompanied, on the phone with
                      family at real rates.
    elderly_family    a customer of 60+ with an adult child (accompanied 85 %) taking out
                      median 40,000 for a gift, a home, a grandchild, 30-100 % of the balance.
    family_emergency  an older customer on the phone with family about a real emergency
                      (on the phone 75 %, anxious 55 %, urgent 60 %): median 30,000, often to a
                      relative's account the bank has not seen before.
    own_investment    savings into a fund, wealth product or securities account (median
                      50,000, sigma 0.9), purpose investment; first purchase is a new payee;
                      8 % buy gold with cash.
    savings_move      after the 2023-2024 deposit-rate cuts, savers chase a better rate at
                      another bank: 60-100 % of a large balance to their own account there, often
                      a new payee and, when the bank knows it, sometimes a new account.

Fraud (about 1.5 % of events, from the rates below)
    About half of the victims are coached by the fraudster to give an ordinary purpose and hide
    the signs; a coached victim shows only the teller-flag noise of an honest customer plus a
    little leakage (on the phone 10 %, urgent 10 %, anxious 8 %). Tellers also miss signs in
    uncoached victims, so no flag is certain. The payee fields follow the bank's real knowledge:
    ``payee_new`` comes from payee history and is always sent on a transfer (a repeat payment to
    the same fraud account is not new), ``payee_account_age_days`` only for about 40 % of payees.

    safe_account      police / regulator impersonation ("your account is involved in money
                      laundering, move it to a safe account"; recent reports also describe cash
                      and gold handed to couriers). 0.9 victims a day, about 70 % aged 60+,
                      but all ages are targeted. 55 % transfer, 45 % cash; 35-100 % of the
                      balance (Beta(5, 1.3)); 30 % first consolidate other accounts into this
                      one (inbound transfers). A quarter come back the same or next days for
                      the rest, half of them to the same payee. Uncoached: on the phone 60 %,
                      anxious 50 %, urgent 45 %, purpose mismatch 35 %.
    mule_cash_out     "two cards" accounts bought or rented by laundering rings (the public
                      security "card-breaking" campaign since 2020 describes students and young
                      people selling cards). 0.55 episodes a day. 70 % newly opened (2-75 days,
                      holders mostly 18-26), 30 % rented accounts 1-12 years old. Each active
                      day: 3 + log-normal(median 8) inbound transfers totalling median 80,000
                      (sigma 0.7), 90-100 % taken out in chunks; 60 % of rings keep every chunk
                      under the 50,000-yuan large-cash reporting line (45,000-49,900), with up
                      to four visits a day spread over counters; 35 % of accounts are used on a
                      second or third day; 15 % of chunks go on by transfer to the next layer.
                      The holder is sometimes "accompanied" by a minder. 20 % of mule accounts
                      are already on the centre's stop-payment list.
    investment_scam   "pig-butchering" platforms: a victim mostly aged 30-74 pays the same
                      platform account 2-8 times over weeks, growing from median 10,000 by 1.2-2.5x a
                      time (the last payments are "taxes" to withdraw); 30 % of platforms switch
                      collection account mid-way. Uncoached purpose investment; flags rare
                      (victims believe they invest).
    loan_fee_scam     a fake lender asks a victim aged 18-59 (mostly under 45) for a
                      "deposit", then an "unfreezing fee": 1-4 payments within days, median 3,000 growing 1.5-3x,
                      a new account half the time; uncoached purpose loan_repayment or other.

Honest teller-flag noise (every honest event): on the phone 2.5 %, accompanied 4 % (10 % for
60-69, 22 % for 70+), anxious 1 % (1.5 % for 60+), urgent 3.5 % (2 % for 60+), purpose
mismatch 0.6 %.

Signals beyond the event
    Drawn after the events, from three generators of their own seeded from the world seed (fraud
    episodes in the order they first appear, persons in the order they first appear, one for each
    event's draws), never from the branch's: the events, labels, typologies and watchlisting are
    byte for byte those of the branch without signals, and the same seed gives the same signals.

    identity      the terminal sent the customer's identity number or phone, so the lists of persons
                  could be checked: never from counter 5 (older firmware); on the other counters the
                  teller skips it 7 % of the time. Without it ``warned`` and ``restricted`` are False.
    warned        on the police's warned-persons list at the time of the visit. A list entry has a
                  start and an expiry. Victims: the police learn of the contact for 50 % of
                  safe-account victims (call monitoring of impersonation numbers), 40 % of
                  investment-scam and 30 % of loan-fee victims. The warning comes before the first
                  visit for 55 % / 45 % / 45 % of those (0.5-72 hours before; up to 30 days before for
                  an investment scam running for weeks, 48 hours for a loan fee), otherwise after it
                  (0.5-96 hours; up to 40 days; up to 120 hours), so it covers only the later visits;
                  the victim stays listed 30-90 days, honest visits of theirs in that time included
                  (a warned pensioner still draws the pension). Honest people warned after a scam call
                  they hung up on: 2 % a year under 60, 3.5 % for 60+ (the early-warning system reaches
                  a few per cent of the population a year), listed 15-45 days from a day anywhere in
                  the set (or up to 45 days before it). Mule account holders are not on it.
    restricted    "both cards restricted": 10 % of the holders of newly opened mule accounts (caught
                  selling another card since) and 25 % of those renting out an old account (card
                  sellers before); 0.1 % of all other persons are stale entries (a card lent years
                  ago, the five years not yet over) who now bank honestly. Per person.
    payee_listed  transfers only, never from counter 5 (no payee fields there). A fraud collection
                  account goes on the stop-payment list when earlier victims report it: before its
                  first payment here for 20 % of safe-account, 10 % investment, 15 % loan-fee and 10 %
                  of a mule's next-layer accounts; 1-10 / 3-30 / 2-15 days after its first payment
                  for another 40 % / 50 % / 35 % (none for the short-lived mule layers), so repeat
                  payments to one account are listed more often. An honest payee: 0.05 % of transfers
                  (an account frozen after it unknowingly took dirty money).
    answers       what the customer would answer if the teller asked, for every event (the
                  evaluation decides who is asked): told_to_by_caller, knows_payee_in_person (only for
                  a transfer), promised_returns, told_account_in_crime, told_to_keep_secret,
                  buying_for_someone; the sign of a scam is "yes", for knows_payee_in_person "no".

    Honest answers give a sign for honest reasons, by typology (caller / never met the payee /
    returns / crime case / secret / for someone, in %):
        ordinary 1 / 15 / 0.5 / 0.1 / 0.2 / 3 (bills, a landlord, an online shop; paying for a
        neighbour); business_cash 2 / 35 / 0.3 / 0.1 / 0.2 / 12 (a bookkeeper withdrawing for the
        owner, suppliers never met); trader_cash 2 / 25 / 0.3 / 0.2 / 0.2 / 6; house_purchase
        6 / 65 / 4 / 0.2 / 1 / 22 (the developer's or escrow account, a flat for a child);
        medical_bill 10 / 55 / 0.3 / 0.1 / 0.5 / 45 (the hospital, for a sick relative);
        elderly_family 8 / 5 / 1 / 0.1 / 2 / 60 (a gift, a surprise); family_emergency
        30 / 30 / 0.5 / 0.3 / 4 / 55 (a relative asked for it, and not to tell the other parent);
        own_investment 6 / 50 / 30 / 0.1 / 0.5 / 5 (the product's expected yield, a fund company
        never met); savings_move 8 / 4 / 20 / 0.1 / 0.5 / 3 (the other bank's rate and its account
        manager's call). On the phone, "told by a caller" rises to 25 % (ordinary), 40 % (house),
        35 % (medical), 30 % (elderly family), 70 % (family emergency), 20 % otherwise; with a
        companion, "for someone" +10 points; at 75+ every sign +1 point (a question misheard).
        4 % of honest customers (8 % of business owners and traders, busy) are annoyed and decline
        each question with probability one half; otherwise a question is declined 0.4 % of the time.
    A victim's scam script holds each sign with a chance drawn once per victim (caller / never met
    / returns / crime case / secret / for someone, in %): safe_account 97 / 100 / 20 / 95 / 92 /
    15 (a "refund after the investigation", the "safe account" being the case's); investment_scam
    80 / 97 / 95 / 12 / 40 / 5 (the "withdrawal frozen, pay the tax" at the end); loan_fee_scam
    88 / 100 / 50 / 20 / 30 / 3. An uncoached victim admits each sign of the script with a
    per-victim openness around 85 % (safe account), 70 % (investment: believes they invest) and
    80 % (loan fee), drawn from -15 to +10 points around it; what is not admitted is declined
    (35 %) or denied. A coached victim holds back each sign with a per-victim resolve drawn from
    60-100 % (15 points more, up to 97 %, for "someone told you to": no one called) and claims to
    know the payee ("my nephew's account") as often, declining 15 % of what is held back and
    denying the rest.
    Signs not in the script: 2 % slips to a sign, 3 % declined. Mule account holders are
    complicit: the job's script (caller / never met / returns / crime / secret / for someone:
    85 / 100 / 70 / 2 / 80 / 100 %) is hidden with a per-holder resolve of 70-98 % (+5 points with
    a minder at their side), only 80 % of that for "for someone else" (some say a friend asked
    them to withdraw it); a quarter of what is hidden is declined. No signal separates: honest
    customers give every sign for their own reasons, coached victims mostly do not.

Run ``python -m counterguard.models.independent [SEED] [N]`` to print the counts by typology, the fraud share and
the signals (lists of persons and payees, caring answers by group).
"""

from __future__ import annotations

import bisect
import math
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from counterguard.core.events import TELLER_FLAGS

FRAUD = frozenset({"safe_account", "mule_cash_out", "investment_scam", "loan_fee_scam"})
HONEST = (
    "ordinary", "business_cash", "trader_cash", "house_purchase", "medical_bill", "elderly_family",
    "family_emergency", "own_investment", "savings_move",
)
TYPOLOGIES = HONEST + ("safe_account", "mule_cash_out", "investment_scam", "loan_fee_scam")

BRANCH_TZ = timezone(timedelta(hours=8))
START = date(2025, 3, 3)  # a Monday
COUNTERS = (1, 2, 3, 4, 5)
COUNTER_WEIGHTS = (0.25, 0.25, 0.22, 0.18, 0.10)
OLD_TERMINAL = 5  # firmware older than the teller-flag, purpose, inbound and payee fields

# Mean events (honest) or episodes (fraud) on a weekday, and the weekend factor.
DAILY = {
    "ordinary": (262.0, 0.85), "business_cash": (14.0, 0.4), "trader_cash": (8.0, 1.0),
    "house_purchase": (1.2, 0.8), "medical_bill": (2.5, 1.0), "elderly_family": (3.5, 0.8),
    "family_emergency": (1.0, 1.0), "own_investment": (5.0, 0.6), "savings_move": (3.5, 0.6),
    "safe_account": (0.9, 1.0), "mule_cash_out": (0.55, 1.0), "investment_scam": (0.3, 1.0),
    "loan_fee_scam": (0.35, 1.0),
}
AGE_BANDS = ((18, 29), (30, 44), (45, 59), (60, 74), (75, 92))
AGE_MIX = (0.16, 0.24, 0.26, 0.24, 0.10)
VISIT_WEIGHT = (0.8, 0.8, 1.2, 1.8, 1.8)
SAVINGS_MEDIAN = (8_000, 40_000, 80_000, 120_000, 100_000)
SALARY_DAYS = (5, 10, 15, 20, 25)
PENSION_DAYS = (8, 18)
LARGE_CASH_LINE = 50_000  # cash at or above this is reportable; rings and some traders stay under
ORDINARY_PURPOSES = ("daily", "shopping", "business", "medical", "education", "home", "travel", "gift",
                     "transfer_to_relative")
# Weekday and weekend arrival weights for each half hour from 09:00.
WEEKDAY_SLOTS = (6, 9, 10, 10, 9, 8, 6, 5, 5, 6, 8, 9, 9, 8, 6, 4)
WEEKEND_SLOTS = (5, 8, 9, 9, 8, 6, 5, 5, 6, 7, 7, 6, 5, 3)


@dataclass
class Customer:
    """An account holder whose balance and income carry over from one visit to the next."""

    account: str
    age: float  # on START
    opened: date
    balance: float
    income: float
    income_day: int
    pensioner: bool
    band: int
    settled: date = START

    def age_on(self, day: date) -> int:
        return int(self.age + (day - START).days / 365.25)

    def account_age(self, day: date) -> int:
        return max(0, (day - self.opened).days)


@dataclass(slots=True)
class Visit:
    when: datetime
    seq: int
    event: dict
    typology: str
    watchlisted: bool = False
    # What the signals pass reads (never the event stream's generator): who came, the situation the
    # teller saw (all flags, also on the old terminal that sends none), the fraud episode, the payee.
    customer: Customer | None = None
    on_phone: bool = False
    accompanied: bool = False
    episode: Episode | None = None
    payee: tuple[int, int] | None = None


@dataclass
class Trader:
    customer: Customer
    until: date  # stall given up
    scale: float  # a wholesale stall takes in many times what a vegetable stall does


@dataclass
class Episode:
    """State a fraud carries across visits: the payee, the coaching, what is left to take."""

    customer: Customer
    coached: bool
    payee: int = 0
    paid: list = field(default_factory=list)
    amount: float = 0.0
    watchlisted: bool = False


class Branch:
    """One branch's counter traffic, day by day, from one random generator."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.accounts: set[str] = set()
        self.seq = 0
        self.pending: dict[date, list] = {}
        self.bands: list[list[Customer]] = [[] for _ in AGE_BANDS]
        self.by_income_day: dict[int, list[Customer]] = {}
        for _ in range(5000):
            self._new_customer(START, opened_recently=rng.random() < 0.04)
        self.businesses = [self._business(START) for _ in range(80)]
        self.traders = [self._trader(START, established=True) for _ in range(45)]

    # -- people -------------------------------------------------------------------------------

    def _account(self, digits: int = 19, prefix: str = "6217") -> str:
        while True:
            account = prefix + "".join(str(self.rng.randrange(10)) for _ in range(digits - len(prefix)))
            if account not in self.accounts:
                self.accounts.add(account)
                return account

    def _new_customer(self, day: date, *, opened_recently: bool = False, band: int | None = None) -> Customer:
        rng = self.rng
        if band is None:
            band = rng.choices(range(len(AGE_BANDS)), AGE_MIX)[0]
        lo, hi = AGE_BANDS[band]
        age = rng.uniform(lo, hi + 1)
        if opened_recently:
            opened = day - timedelta(days=rng.randrange(0, 90))
        else:
            years = rng.uniform(0.3, max(0.5, min(age - 16, 30)))
            opened = day - timedelta(days=int(years * 365))
        pensioner = age >= 60 or (age >= 55 and rng.random() < 0.5)
        if pensioner:
            income = rng.lognormvariate(math.log(3_500), 0.4)
            income_day = PENSION_DAYS[0] if rng.random() < 0.8 else PENSION_DAYS[1]
        else:
            income = rng.lognormvariate(math.log(6_000), 0.5)
            income_day = rng.choice(SALARY_DAYS)
        savings_scale = 0.2 if opened_recently else 1.0
        balance = rng.lognormvariate(math.log(SAVINGS_MEDIAN[band] * savings_scale), 1.1)
        customer = Customer(self._account(), age, opened, balance, income, income_day, pensioner, band, day)
        self.bands[band].append(customer)
        self.by_income_day.setdefault(income_day, []).append(customer)
        return customer

    def _business(self, day: date) -> Customer:
        rng = self.rng
        new = rng.random() < 0.10
        opened = day - timedelta(days=rng.randrange(0, 90) if new else rng.randrange(365, 15 * 365))
        return Customer(self._account(), rng.uniform(30, 62), opened, 0.0, 0.0, 1, False, 2, day)

    def _trader(self, day: date, established: bool = False) -> Trader:
        rng = self.rng
        # A stall's collection card is often opened for the stall; many do not last the year.
        if established and rng.random() < 0.6:
            opened = day - timedelta(days=rng.randrange(90, 6 * 365))
        else:
            opened = day - timedelta(days=rng.randrange(0, 60))
        customer = Customer(self._account(), rng.uniform(24, 58), opened, 0.0, 0.0, 1, False, 1, day)
        until = day + timedelta(days=int(rng.expovariate(1 / 240)) + 20)
        return Trader(customer, until, rng.lognormvariate(0.0, 0.9))

    def _pick(self, weights) -> Customer:
        """A customer from the age bands, weighted per band by ``weights`` times the band's size."""
        sizes = [w * len(b) for w, b in zip(weights, self.bands)]
        band = self.rng.choices(range(len(self.bands)), sizes)[0]
        return self.rng.choice(self.bands[band])

    def _settle(self, c: Customer, day: date) -> tuple[int, float]:
        """Bring the balance up to ``day``; returns today's inbound transfers (count, yuan)."""
        rng = self.rng
        month = date(c.settled.year, c.settled.month, 1)
        while month <= day:
            payday = month.replace(day=min(c.income_day, 28))
            if c.settled < payday <= day:
                c.balance += c.income
            month = (month + timedelta(days=32)).replace(day=1)
        spend = 0.4 if c.pensioner else 0.7
        c.balance = max(c.balance - spend * c.income * (day - c.settled).days / 30.0, rng.uniform(50, 800))
        c.settled = day
        count, total = 0, 0.0
        if day.day == min(c.income_day, 28):
            count, total = 1, c.income
        if c.pensioner and rng.random() < 0.04:
            gift = rng.lognormvariate(math.log(1_500), 0.6)
            c.balance += gift
            count, total = count + 1, total + gift
        return count, total

    # -- the counter --------------------------------------------------------------------------

    def _clock(self, day: date) -> datetime:
        slots = WEEKDAY_SLOTS if day.weekday() < 5 else WEEKEND_SLOTS
        slot = self.rng.choices(range(len(slots)), slots)[0]
        second = slot * 1800 + self.rng.randrange(1800)
        return datetime(day.year, day.month, day.day, 9, tzinfo=BRANCH_TZ) + timedelta(seconds=second)

    def _after(self, when: datetime, lo_min: float, hi_min: float) -> datetime:
        """A later time the same day, before closing."""
        close = when.replace(hour=17 if when.weekday() < 5 else 16, minute=0, second=0)
        later = when + timedelta(seconds=int(self.rng.uniform(lo_min, hi_min) * 60))
        if later >= close:
            later = when + timedelta(seconds=int(max(30, (close - when).total_seconds() * self.rng.random())))
        return later

    def _counter(self, avoid: int | None = None) -> int:
        while True:
            counter = self.rng.choices(COUNTERS, COUNTER_WEIGHTS)[0]
            if counter != avoid:
                return counter

    def _noise(self, age: int) -> set[str]:
        """Teller flags an honest customer gets for ordinary reasons."""
        r = self.rng.random
        flags = set()
        if r() < 0.025:
            flags.add("customer_on_phone")
        if r() < (0.22 if age >= 70 else 0.10 if age >= 60 else 0.04):
            flags.add("accompanied")
        if r() < (0.015 if age >= 60 else 0.01):
            flags.add("anxious")
        if r() < (0.02 if age >= 60 else 0.035):
            flags.add("urgent")
        if r() < 0.006:
            flags.add("declared_purpose_mismatch")
        return flags

    def _flags(self, age: int, **rates: float) -> set[str]:
        flags = self._noise(age)
        for flag, rate in rates.items():
            if self.rng.random() < rate:
                flags.add(flag)
        return flags

    def _coached_flags(self, age: int) -> set[str]:
        return self._flags(age, customer_on_phone=0.10, urgent=0.10, anxious=0.08)

    def _choose(self, table: dict):
        """A value from {value: weight}; None stands for 'not given'."""
        return self.rng.choices(list(table), list(table.values()))[0]

    def _visit(self, when: datetime, counter: int, kind: str, c: Customer, amount: float, typology: str, *,
               balance: float, inbound: tuple[int, float] = (0, 0.0), flags: set[str] = frozenset(),
               purpose: str | None = None, payee_new: bool | None = None, payee_age: int | None = None,
               watchlisted: bool = False, episode: Episode | None = None) -> Visit:
        rng = self.rng
        day = when.date()
        amount = round(amount, 2) if kind == "transfer_out" else amount
        event = {"ts": when.isoformat(timespec="seconds"), "counter": counter, "kind": kind,
                 "account": c.account, "amount": _yuan(amount)}
        if rng.random() > 0.02:
            event["customer_age"] = c.age_on(day)
        if rng.random() > 0.01:
            event["account_age_days"] = c.account_age(day)
        if rng.random() > 0.02:
            event["balance_before"] = _yuan(round(max(balance, amount), 2))
        if counter != OLD_TERMINAL:
            if rng.random() > 0.04:
                event["inbound_24h"] = _yuan(round(inbound[1], 2))
                event["inbound_count_24h"] = inbound[0]
            event["teller_flags"] = [f for f in TELLER_FLAGS if f in flags]
            if purpose is not None and rng.random() > 0.04:
                event["purpose"] = purpose
            if kind == "transfer_out":
                event["payee_new"] = bool(payee_new)
                if payee_age is not None:
                    event["payee_account_age_days"] = payee_age
        self.seq += 1
        payee = (id(episode), episode.payee) if episode is not None and kind == "transfer_out" else None
        return Visit(when, self.seq, event, typology, watchlisted, c, "customer_on_phone" in flags,
                     "accompanied" in flags, episode, payee)

    def _payee_age(self, known: float, young: float, young_days=(3, 150), old_days=(400, 12 * 365)) -> int | None:
        """The receiving account's age where the bank knows it (same bank, banks sharing data)."""
        if self.rng.random() >= known:
            return None
        lo, hi = young_days if self.rng.random() < young else old_days
        return self.rng.randint(lo, hi)

    # -- one day ------------------------------------------------------------------------------

    def day(self, day: date) -> list[Visit]:
        rng = self.rng
        weekend = day.weekday() >= 5
        for _ in range(poisson(rng, 1.5)):
            self._new_customer(day, opened_recently=True, band=rng.choices(range(5), (0.45, 0.3, 0.1, 0.1, 0.05))[0])
        if rng.random() < 0.05:
            self.businesses.append(self._business(day))
        self.traders = [t for t in self.traders if t.until > day]
        for _ in range(poisson(rng, 0.12)):
            self.traders.append(self._trader(day))
        visits: list[Visit] = []
        for job in self.pending.pop(day, []):
            visits.extend(job(day))
        for typology, (mean, weekend_factor) in DAILY.items():
            lam = mean * (weekend_factor if weekend else 1.0)
            if typology == "ordinary" and day.day in PENSION_DAYS + (10, 15):
                lam *= 1.15
            make = getattr(self, "_" + typology)
            for _ in range(poisson(rng, lam)):
                visits.extend(make(day))
        return visits

    def _later(self, day: date, job) -> None:
        self.pending.setdefault(day, []).append(job)

    # -- honest customers ---------------------------------------------------------------------

    def _ordinary(self, day: date) -> list[Visit]:
        rng = self.rng
        payday = self.by_income_day.get(day.day, [])
        if payday and rng.random() < 0.2:
            c = rng.choice(payday)
        else:
            c = self._pick(VISIT_WEIGHT)
        inbound = self._settle(c, day)
        age = c.age_on(day)
        if rng.random() < (0.8 if age >= 60 else 0.7):
            kind = "cash_withdrawal"
            if rng.random() < 0.05:
                want = rng.lognormvariate(math.log(15_000), 0.7)
            else:
                want = rng.lognormvariate(math.log(2_000 if c.pensioner else 3_000), 0.9)
            purpose = self._choose({"daily": 45, "shopping": 15, "gift": 8, "medical": 6, "travel": 5,
                                    "education": 5, "home": 4, "other": 6, None: 6})
            payee_new = payee_age = None
        else:
            kind = "transfer_out"
            want = rng.lognormvariate(math.log(3_000), 1.0)
            purpose = self._choose({"transfer_to_relative": 40, "education": 12, "daily": 10, "shopping": 8,
                                    "loan_repayment": 8, "home": 6, "gift": 6, "other": 5, None: 5})
            payee_new = rng.random() < {"transfer_to_relative": 0.1, "loan_repayment": 0.05}.get(purpose, 0.3)
            payee_age = self._payee_age(0.4, 0.08)
        if c.balance < 200:
            c.balance += max(want, 200) * rng.uniform(1.0, 1.5)  # paid cash in first
        if want > c.balance:
            want = c.balance * rng.uniform(0.3, 1.0)
        amount = _cash(rng, want) if kind == "cash_withdrawal" else max(1.0, want)
        amount = min(amount, c.balance)
        balance = c.balance
        c.balance -= amount
        return [self._visit(self._clock(day), self._counter(), kind, c, amount, "ordinary", balance=balance,
                            inbound=inbound, flags=self._noise(age), purpose=purpose, payee_new=payee_new,
                            payee_age=payee_age)]

    def _business_cash(self, day: date) -> list[Visit]:
        rng = self.rng
        c = rng.choice(self.businesses)
        amount = rng.lognormvariate(math.log(25_000), 0.75)
        if day.day >= 25 or day.day <= 3:
            amount *= 1.8  # payroll in cash
        balance = amount / rng.uniform(0.2, 0.9)
        receipts = rng.randrange(0, 16)
        inbound = (receipts, amount * rng.uniform(0.3, 1.2) if receipts else 0.0)
        purpose = self._choose({"business": 80, "other": 8, None: 12})
        age = c.age_on(day)
        flags = self._flags(age, urgent=0.08)
        if rng.random() < 0.75:
            return [self._visit(self._clock(day), self._counter(), "cash_withdrawal", c, _cash(rng, amount),
                                "business_cash", balance=balance, inbound=inbound, flags=flags, purpose=purpose)]
        new = rng.random() < 0.15
        return [self._visit(self._clock(day), self._counter(), "transfer_out", c, amount, "business_cash",
                            balance=balance, inbound=inbound, flags=flags, purpose=purpose, payee_new=new,
                            payee_age=self._payee_age(0.5, 0.3 if new else 0.05))]

    def _trader_cash(self, day: date) -> list[Visit]:
        rng = self.rng
        if not self.traders:
            self.traders.append(self._trader(day))
        trader = rng.choice(self.traders)
        c = trader.customer
        count = 5 + int(rng.lognormvariate(math.log(20), 0.7))
        total = sum(rng.lognormvariate(math.log(250 * trader.scale), 0.8) for _ in range(count))
        leftover = rng.uniform(0, 5_000)
        want = total * rng.uniform(0.55, 1.0)
        if want >= LARGE_CASH_LINE and rng.random() < 0.5:
            want = rng.uniform(45_000, 49_900)  # staying clear of the large-cash paperwork
        age = c.age_on(day)
        purpose = self._choose({"business": 70, "daily": 8, "other": 10, None: 12})
        visits = []
        when = self._clock(day)
        parts = 2 if rng.random() < 0.08 else 1  # morning takings and afternoon takings
        balance = leftover + total
        for _ in range(parts):
            amount = min(_cash(rng, want / parts), balance)
            if rng.random() < 0.9:
                visits.append(self._visit(when, self._counter(), "cash_withdrawal", c, amount, "trader_cash",
                                          balance=balance, inbound=(count, total), flags=self._noise(age),
                                          purpose=purpose))
            else:  # paying the wholesaler
                visits.append(self._visit(when, self._counter(), "transfer_out", c, amount, "trader_cash",
                                          balance=balance, inbound=(count, total), flags=self._noise(age),
                                          purpose=purpose, payee_new=rng.random() < 0.1,
                                          payee_age=self._payee_age(0.4, 0.1)))
            balance -= amount
            when = self._after(when, 60, 300)
        return visits

    def _big_ticket(self, day: date, c: Customer, amount: float, share: tuple[float, float],
                    consolidate: float) -> tuple[float, tuple[int, float]]:
        """Make sure the savings for a planned large payment are there; returns balance and inbound."""
        rng = self.rng
        inbound = self._settle(c, day)
        need = amount / rng.uniform(*share)
        if c.balance < need:
            if rng.random() < consolidate:  # from the customer's other banks or family
                moved = need - c.balance
                inbound = (inbound[0] + rng.randint(1, 3), inbound[1] + moved)
            c.balance = need  # otherwise a time deposit matured into this account
        balance = c.balance
        c.balance = max(0.0, c.balance - amount)
        return balance, inbound

    def _big_payment(self, day: date, c: Customer, typology: str, amount: float, *, cash: float,
                     share: tuple[float, float], consolidate: float, flags: set[str], purpose: str | None,
                     payee_new: float, payee_age: int | None) -> list[Visit]:
        """One planned large payment: in cash with probability ``cash``, otherwise by transfer."""
        rng = self.rng
        kind = "cash_withdrawal" if rng.random() < cash else "transfer_out"
        if kind == "cash_withdrawal":
            amount = _cash(rng, amount)
        balance, inbound = self._big_ticket(day, c, amount, share, consolidate)
        payee = {"payee_new": rng.random() < payee_new, "payee_age": payee_age} if kind == "transfer_out" else {}
        return [self._visit(self._clock(day), self._counter(), kind, c, amount, typology, balance=balance,
                            inbound=inbound, flags=flags, purpose=purpose, **payee)]

    def _house_purchase(self, day: date) -> list[Visit]:
        rng = self.rng
        c = self._pick((0.6, 1.5, 1.0, 0.5, 0.1))
        flags = self._flags(c.age_on(day), accompanied=0.35, customer_on_phone=0.10, urgent=0.10, anxious=0.03)
        purpose = self._choose({"home": 85, "other": 5, None: 10})
        # A seller's own account is old; a developer's project account may be months old.
        payee_age = self._payee_age(0.5, 0.4, young_days=(30, 700), old_days=(5 * 365, 30 * 365))
        if rng.random() < 0.15:  # earnest money in cash
            return self._big_payment(day, c, "house_purchase", rng.uniform(20_000, 100_000), cash=1.0,
                                     share=(0.3, 1.0), consolidate=0.25, flags=flags, purpose=purpose,
                                     payee_new=0.9, payee_age=None)
        return self._big_payment(day, c, "house_purchase", rng.lognormvariate(math.log(300_000), 0.6), cash=0.0,
                                 share=(0.6, 1.0), consolidate=0.25, flags=flags, purpose=purpose,
                                 payee_new=0.9, payee_age=payee_age)

    def _medical_bill(self, day: date) -> list[Visit]:
        rng = self.rng
        c = self._pick((0.6, 0.8, 1.2, 1.5, 1.5))
        flags = self._flags(c.age_on(day), anxious=0.20, urgent=0.25, customer_on_phone=0.15, accompanied=0.25)
        return self._big_payment(day, c, "medical_bill", rng.lognormvariate(math.log(20_000), 0.8), cash=0.5,
                                 share=(0.2, 1.0), consolidate=0.2, flags=flags,
                                 purpose=self._choose({"medical": 85, "other": 7, None: 8}), payee_new=0.7,
                                 payee_age=self._payee_age(0.4, 0.0, old_days=(5 * 365, 40 * 365)))

    def _elderly_family(self, day: date) -> list[Visit]:
        rng = self.rng
        c = self._pick((0, 0, 0, 1.0, 1.2))
        flags = self._flags(c.age_on(day), accompanied=0.85, customer_on_phone=0.08, urgent=0.05, anxious=0.03,
                            declared_purpose_mismatch=0.015)
        purpose = self._choose({"gift": 25, "home": 25, "transfer_to_relative": 25, "medical": 10,
                                "education": 5, "other": 10})
        return self._big_payment(day, c, "elderly_family", rng.lognormvariate(math.log(40_000), 0.7), cash=0.6,
                                 share=(0.3, 1.0), consolidate=0.1, flags=flags, purpose=purpose, payee_new=0.4,
                                 payee_age=self._payee_age(0.3, 0.3, young_days=(5, 400)))

    def _family_emergency(self, day: date) -> list[Visit]:
        rng = self.rng
        c = self._pick((0, 0.3, 0.8, 1.5, 1.2))
        flags = self._flags(c.age_on(day), customer_on_phone=0.75, anxious=0.55, urgent=0.60, accompanied=0.10,
                            declared_purpose_mismatch=0.05)
        purpose = self._choose({"medical": 40, "transfer_to_relative": 35, "education": 10, "other": 15})
        # A child's new card, a hospital, a relative's old account: all three happen.
        return self._big_payment(day, c, "family_emergency", rng.lognormvariate(math.log(30_000), 0.7), cash=0.3,
                                 share=(0.3, 1.0), consolidate=0.15, flags=flags, purpose=purpose, payee_new=0.45,
                                 payee_age=self._payee_age(0.35, 0.3, young_days=(2, 200)))

    def _own_investment(self, day: date) -> list[Visit]:
        rng = self.rng
        c = self._pick((0.1, 0.6, 1.2, 1.2, 0.5))
        flags = self._flags(c.age_on(day), urgent=0.04)
        purpose = self._choose({"investment": 80, "other": 10, None: 10})
        # 8 % buy gold bars with cash; the rest pay a fund, wealth product or securities account.
        return self._big_payment(day, c, "own_investment", rng.lognormvariate(math.log(50_000), 0.9), cash=0.08,
                                 share=(0.2, 0.9), consolidate=0.1, flags=flags, purpose=purpose, payee_new=0.55,
                                 payee_age=self._payee_age(0.6, 0.05, young_days=(10, 90),
                                                           old_days=(3 * 365, 25 * 365)))

    def _savings_move(self, day: date) -> list[Visit]:
        rng = self.rng
        c = self._pick((0, 0.2, 1.0, 1.5, 1.0))
        age = c.age_on(day)
        inbound = self._settle(c, day)
        if c.balance < 30_000:
            c.balance = rng.lognormvariate(math.log(200_000), 0.8)  # a time deposit just matured
        amount = c.balance * rng.uniform(0.6, 1.0)
        balance = c.balance
        c.balance -= amount
        flags = self._flags(age, urgent=0.05)
        purpose = self._choose({"other": 40, "investment": 25, "transfer_to_relative": 5, None: 30})
        # The customer's own account at another bank: often just opened for the promotion.
        payee_age = self._payee_age(0.25, 0.5, young_days=(2, 60), old_days=(365, 20 * 365))
        return [self._visit(self._clock(day), self._counter(), "transfer_out", c, amount, "savings_move",
                            balance=balance, inbound=inbound, flags=flags, purpose=purpose,
                            payee_new=rng.random() < 0.6, payee_age=payee_age)]

    # -- fraud --------------------------------------------------------------------------------

    def _safe_account(self, day: date) -> list[Visit]:
        rng = self.rng
        c = self._pick((0.4, 0.5, 0.8, 3.0, 3.0))
        episode = Episode(c, coached=rng.random() < 0.5, payee=1)
        return self._safe_account_visit(day, episode, first=True)

    def _safe_account_visit(self, day: date, ep: Episode, first: bool, when: datetime | None = None) -> list[Visit]:
        rng = self.rng
        c = ep.customer
        inbound = self._settle(c, day)
        if first and rng.random() < 0.3:  # told to gather everything into one account first
            moved = c.balance * rng.uniform(0.3, 2.0) + 5_000
            c.balance += moved
            inbound = (inbound[0] + rng.randint(1, 4), inbound[1] + moved)
        if c.balance < 3_000:
            c.balance += rng.lognormvariate(math.log(20_000), 0.8)  # a time deposit broken early
        share = min(1.0, max(0.35, rng.betavariate(5, 1.3)))
        age = c.age_on(day)
        if ep.coached:
            flags = self._coached_flags(age)
            purpose = self._choose({"home": 25, "transfer_to_relative": 20, "gift": 10, "medical": 10,
                                    "education": 8, "daily": 12, "business": 5, "travel": 5, None: 5})
        else:
            flags = self._flags(age, customer_on_phone=0.60, anxious=0.50, urgent=0.45,
                                declared_purpose_mismatch=0.35)
            purpose = self._choose({"other": 30, "transfer_to_relative": 15, "home": 10, "investment": 10,
                                    "daily": 10, None: 25})
        if rng.random() < 0.9:
            flags.discard("accompanied")  # told to come alone and tell no one
        when = when or self._clock(day)
        balance = c.balance
        if rng.random() < 0.45:
            amount = min(_cash(rng, balance * share, step=1000 if balance * share >= 10_000 else 100), balance)
            visit = self._visit(when, self._counter(), "cash_withdrawal", c, amount, "safe_account",
                                balance=balance, inbound=inbound, flags=flags, purpose=purpose, episode=ep)
        else:
            amount = min(_cash(rng, balance * share, step=100), balance)
            repeat = not first and ep.payee in ep.paid
            if not repeat:
                ep.paid.append(ep.payee)
            visit = self._visit(when, self._counter(), "transfer_out", c, amount, "safe_account",
                                balance=balance, inbound=inbound, flags=flags, purpose=purpose,
                                payee_new=not repeat or rng.random() < 0.03,
                                payee_age=self._payee_age(0.4, 0.8, young_days=(3, 120), old_days=(400, 8 * 365)),
                                episode=ep)
        c.balance -= amount
        if first and rng.random() < 0.25:  # back for the rest ("to finish the verification")
            if rng.random() >= 0.5:
                ep.payee += 1  # a fresh "safe account"
            if rng.random() < 0.4:
                later = self._after(when, 30, 240)
                return [visit] + self._safe_account_visit(day, ep, first=False, when=later)
            self._later(day + timedelta(days=rng.randint(1, 2)), lambda d: self._safe_account_visit(d, ep, first=False))
        return [visit]

    def _mule_cash_out(self, day: date) -> list[Visit]:
        rng = self.rng
        rented = rng.random() < 0.3
        if rented:
            age = rng.uniform(20, 46) if rng.random() < 0.8 else rng.uniform(46, 66)
            opened = day - timedelta(days=rng.randint(365, 12 * 365))
        else:
            age = self._choose({(18, 27): 70, (27, 41): 25, (41, 61): 5})
            age = rng.uniform(*age)
            opened = day - timedelta(days=rng.randint(2, 75))
        c = Customer(self._account(prefix=rng.choice(("6217", "6222", "6228"))), age, opened, rng.uniform(0, 500),
                     0.0, 1, False, 0, day)
        c.age = age - (day - START).days / 365.25  # age_on(day) is the holder's age today
        ep = Episode(c, coached=False, watchlisted=rng.random() < 0.2)
        days = self._choose({1: 65, 2: 25, 3: 10})
        for k in range(1, days):
            self._later(day + timedelta(days=k), lambda d: self._mule_day(d, ep))
        return self._mule_day(day, ep)

    def _mule_day(self, day: date, ep: Episode) -> list[Visit]:
        rng = self.rng
        c = ep.customer
        count = 3 + int(rng.lognormvariate(math.log(8), 0.7))
        total = min(600_000.0, max(15_000.0, rng.lognormvariate(math.log(80_000), 0.7)))
        balance = c.balance + total
        out = total * rng.uniform(0.9, 1.0)
        under_line = rng.random() < 0.6
        chunks = []
        while out >= 1_000 and len(chunks) < 4:
            if under_line:
                step = rng.uniform(49_000, 49_900) if rng.random() < 0.5 else rng.uniform(45_000, 49_000)
            else:
                step = out / max(1, 4 - len(chunks)) if rng.random() < 0.5 else out
            step = min(step, out)
            chunks.append(_cash(rng, step))
            out -= chunks[-1]
        if out >= 1_000:  # more than four visits' worth: the last one takes the rest
            chunks[-1] = _cash(rng, chunks[-1] + out)
        age = c.age_on(day)
        when = self._clock(day)
        if len(chunks) > 1:
            when = min(when, when.replace(hour=13, minute=0))  # a day's round starts before the afternoon
        counter = self._counter()
        visits = []
        purpose = self._choose({"business": 30, "daily": 15, "other": 20, "shopping": 5, "home": 5, None: 25})
        for i, amount in enumerate(chunks):
            amount = min(amount, balance)
            flags = self._flags(age, customer_on_phone=0.25, urgent=0.30, anxious=0.10,
                                declared_purpose_mismatch=0.10, accompanied=0.12)
            if rng.random() < 0.15:  # on to the next layer of accounts
                repeat = ep.payee in ep.paid and rng.random() < 0.5
                if not repeat:
                    ep.payee += 1
                    ep.paid.append(ep.payee)
                visits.append(self._visit(when, counter, "transfer_out", c, amount, "mule_cash_out",
                                          balance=balance, inbound=(count, total), flags=flags, purpose=purpose,
                                          payee_new=not repeat, payee_age=self._payee_age(0.4, 0.9, young_days=(1, 60)),
                                          watchlisted=ep.watchlisted, episode=ep))
            else:
                visits.append(self._visit(when, counter, "cash_withdrawal", c, amount, "mule_cash_out",
                                          balance=balance, inbound=(count, total), flags=flags, purpose=purpose,
                                          watchlisted=ep.watchlisted, episode=ep))
            balance -= amount
            when = self._after(when, 10, 120)
            counter = self._counter(avoid=counter) if rng.random() < 0.7 else counter
        c.balance = balance
        return visits

    def _investment_scam(self, day: date) -> list[Visit]:
        rng = self.rng
        c = self._pick((0, 0.8, 1.5, 1.0, 0.15))
        ep = Episode(c, coached=rng.random() < 0.5, payee=1)
        ep.amount = rng.lognormvariate(math.log(10_000), 0.8)
        payments = min(8, 2 + int(rng.expovariate(1 / 1.5)))
        young = rng.random() < 0.8
        # When the platform's collection account was opened; the bank knows it for some payees.
        opened = {"at": day - timedelta(days=rng.randint(3, 200) if young else rng.randint(365, 6 * 365))}
        known = rng.random() < 0.45

        def pay(d: date, left: int) -> list[Visit]:
            inbound = self._settle(c, d)
            if c.balance < ep.amount:  # borrows from family, sells a fund
                topped = ep.amount - c.balance + rng.uniform(0, 2_000)
                c.balance += topped
                inbound = (inbound[0] + rng.randint(1, 3), inbound[1] + topped)
            age = c.age_on(d)
            if ep.coached:
                flags = self._coached_flags(age)
                purpose = self._choose({"business": 15, "gift": 15, "transfer_to_relative": 25, "home": 15,
                                        "shopping": 10, "daily": 10, None: 10})
            else:
                flags = self._flags(age, urgent=0.15, customer_on_phone=0.15, anxious=0.05,
                                    declared_purpose_mismatch=0.10)
                purpose = self._choose({"investment": 85, "other": 10, None: 5})
            balance = c.balance
            amount = min(ep.amount, balance * 0.95)
            if rng.random() < 0.1:
                visit = self._visit(self._clock(d), self._counter(), "cash_withdrawal", c, _cash(rng, amount),
                                    "investment_scam", balance=balance, inbound=inbound, flags=flags, purpose=purpose,
                                    episode=ep)
                amount = visit.event["amount"]
            else:
                if ep.paid and rng.random() < 0.3 / max(1, payments - 1):
                    ep.payee += 1  # "the platform has a new settlement account"
                    opened["at"] = d - timedelta(days=rng.randint(3, 120))
                new = ep.payee not in ep.paid
                if new:
                    ep.paid.append(ep.payee)
                age_days = (d - opened["at"]).days if known else None
                amount = round(amount, -2) if rng.random() < 0.7 else amount
                visit = self._visit(self._clock(d), self._counter(), "transfer_out", c, max(amount, 100.0),
                                    "investment_scam", balance=balance, inbound=inbound, flags=flags,
                                    purpose=purpose, payee_new=new, payee_age=age_days, episode=ep)
            c.balance -= min(amount, c.balance)
            ep.amount *= rng.uniform(1.2, 2.5)
            if left > 1:
                self._later(d + timedelta(days=rng.randint(2, 20)), lambda nd: pay(nd, left - 1))
            return [visit]

        return pay(day, payments)

    def _loan_fee_scam(self, day: date) -> list[Visit]:
        rng = self.rng
        c = self._pick((1.5, 1.5, 0.4, 0, 0))
        ep = Episode(c, coached=rng.random() < 0.5, payee=1)
        ep.amount = rng.lognormvariate(math.log(3_000), 0.6)
        payments = self._choose({1: 35, 2: 35, 3: 20, 4: 10})

        def pay(d: date, left: int, when: datetime | None = None) -> list[Visit]:
            inbound = self._settle(c, d)
            if c.balance < ep.amount:  # borrowed from friends to pay the "fee"
                topped = ep.amount - c.balance + rng.uniform(0, 500)
                c.balance += topped
                inbound = (inbound[0] + rng.randint(1, 3), inbound[1] + topped)
            age = c.age_on(d)
            if ep.coached:
                flags = self._coached_flags(age)
                purpose = self._choose({"daily": 25, "shopping": 20, "education": 10, "transfer_to_relative": 20,
                                        "business": 10, None: 15})
            else:
                flags = self._flags(age, customer_on_phone=0.40, anxious=0.35, urgent=0.45,
                                    declared_purpose_mismatch=0.20)
                purpose = self._choose({"loan_repayment": 70, "other": 30})
            when = when or self._clock(d)
            balance = c.balance
            amount = round(min(ep.amount, balance), -2 if ep.amount >= 1_000 else 0)
            amount = max(amount, 100.0)
            if rng.random() < 0.1:
                visit = self._visit(when, self._counter(), "cash_withdrawal", c, _cash(rng, amount), "loan_fee_scam",
                                    balance=balance, inbound=inbound, flags=flags, purpose=purpose, episode=ep)
            else:
                if ep.paid and rng.random() < 0.5:
                    ep.payee += 1  # "pay the unfreezing fee to our finance department"
                new = ep.payee not in ep.paid
                if new:
                    ep.paid.append(ep.payee)
                visit = self._visit(when, self._counter(), "transfer_out", c, amount, "loan_fee_scam",
                                    balance=balance, inbound=inbound, flags=flags, purpose=purpose, payee_new=new,
                                    payee_age=self._payee_age(0.4, 0.85, young_days=(2, 90)), episode=ep)
            c.balance -= min(visit.event["amount"], c.balance)
            ep.amount *= rng.uniform(1.5, 3.0)
            if left > 1:
                gap = rng.randint(0, 2)
                if gap == 0:
                    return [visit] + pay(d, left - 1, self._after(when, 20, 180))
                self._later(d + timedelta(days=gap), lambda nd: pay(nd, left - 1))
            return [visit]

        return pay(day, payments)


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (the normal approximation above 30), for daily visit counts."""
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation, close enough for daily volumes
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _cash(rng: random.Random, amount: float, step: int | None = None) -> int:
    """Cash comes in 100-yuan notes; large sums are usually asked for in round thousands."""
    if step is None:
        step = 1000 if amount >= 20_000 and rng.random() < 0.6 else 100
    return max(100, int(amount // step) * step)


def _yuan(amount: float):
    """Whole yuan as an int, otherwise fen-exact float."""
    return int(amount) if float(amount).is_integer() else round(float(amount), 2)


# -- what the counter learns beyond the event: lists of persons and payees, the caring answers -----

SIGNALS = ("told_to_by_caller", "knows_payee_in_person", "promised_returns", "told_account_in_crime",
           "told_to_keep_secret", "buying_for_someone")  # in the teller's asking order (core/dialogue.py)
SIGNAL_LABELS = ("caller", "knows payee", "returns", "crime case", "keep secret", "for someone")
PAYEE = 1  # index of knows_payee_in_person, whose sign of a scam is "no"; every other sign is "yes"
VICTIMS = ("safe_account", "investment_scam", "loan_fee_scam")
IDENTITY_SKIPPED = 0.07  # a current terminal that could send the identity, but the teller did not read it

# Honest customers: the chance each answer is the scam's sign (yes; "no" for knows_payee_in_person)
# for an honest reason, by typology; then the chance on the phone, and with a companion.
HONEST_SIGNS = {
    #                  caller knows  returns crime  secret  for someone
    "ordinary":         (0.010, 0.15, 0.005, 0.001, 0.002, 0.03),
    "business_cash":    (0.020, 0.35, 0.003, 0.001, 0.002, 0.12),
    "trader_cash":      (0.020, 0.25, 0.003, 0.002, 0.002, 0.06),
    "house_purchase":   (0.060, 0.65, 0.040, 0.002, 0.010, 0.22),
    "medical_bill":     (0.100, 0.55, 0.003, 0.001, 0.005, 0.45),
    "elderly_family":   (0.080, 0.05, 0.010, 0.001, 0.020, 0.60),
    "family_emergency": (0.300, 0.30, 0.005, 0.003, 0.040, 0.55),
    "own_investment":   (0.060, 0.50, 0.300, 0.001, 0.005, 0.05),
    "savings_move":     (0.080, 0.04, 0.200, 0.001, 0.005, 0.03),
}
HONEST_ON_PHONE = {"ordinary": 0.25, "house_purchase": 0.40, "medical_bill": 0.35, "elderly_family": 0.30,
                   "family_emergency": 0.70}  # told_to_by_caller when on the phone; 0.20 otherwise
HONEST_ANNOYED = {"business_cash": 0.08, "trader_cash": 0.08}  # else 0.04; an annoyed customer declines half

# Victims: the chance the scam's script contains each sign (drawn once per victim), and how openly an
# uncoached victim tells it (mean share of the script's signs admitted).
SCRIPT = {
    "safe_account":    (0.97, 1.00, 0.20, 0.95, 0.92, 0.15),
    "investment_scam": (0.80, 0.97, 0.95, 0.12, 0.40, 0.05),
    "loan_fee_scam":   (0.88, 1.00, 0.50, 0.20, 0.30, 0.03),
}
REVEAL = {"safe_account": 0.85, "investment_scam": 0.70, "loan_fee_scam": 0.80}
MULE_SCRIPT = (0.85, 1.00, 0.70, 0.02, 0.80, 1.00)  # what a card seller's job really involves

# The police learn of a victim's contact for this share of victims, and when, in hours from the
# victim's first visit (negative: warned before it).
WARNED_VICTIMS = {"safe_account": (0.50, 0.55, (-72, -0.5), (0.5, 96)),
                  "investment_scam": (0.40, 0.45, (-30 * 24, -0.5), (0.5, 40 * 24)),
                  "loan_fee_scam": (0.30, 0.45, (-48, -0.5), (0.5, 120))}
WARNED_DAYS_VICTIM = (30, 90)  # a victim stays on the list until the case is followed up
CALLED_PER_YEAR = (0.020, 0.035)  # honest people warned after a scam call they hung up on: under 60, 60+
WARNED_DAYS_CALLED = (15, 45)
RESTRICTED_MULE = (0.10, 0.25)  # holders of a newly opened / an old rented mule account
RESTRICTED_HONEST = 0.001  # stale entries: a card lent years ago, the five years not yet over
PAYEE_LISTED = {  # fraud payees: listed before first use, listed later, and how many days later
    "safe_account": (0.20, 0.40, (1, 10)), "investment_scam": (0.10, 0.50, (3, 30)),
    "loan_fee_scam": (0.15, 0.35, (2, 15)), "mule_cash_out": (0.10, 0.0, (1, 2)),
}
PAYEE_LISTED_HONEST = 0.0005  # an honest payee's account frozen after it unknowingly took dirty money


@dataclass
class _Person:
    warned: list  # (from, until) datetimes of the person's warned-list entries
    restricted: bool


class _Signals:
    """The lists and the caring answers for a time-ordered list of visits, from generators of their own.

    Three generators seeded from the world seed (never the branch's): one for the fraud episodes
    (warning, payee listing and script, in the order the episodes first appear), one for the persons
    (calls they hung up on, stale restrictions, in the order they first appear) and one for each
    event's draws; so the branch's events are untouched.
    """

    def __init__(self, seed: int, visits: list[Visit]):
        self.episodes_rng = random.Random(f"independent/{seed}/episodes")
        self.persons_rng = random.Random(f"independent/{seed}/persons")
        self.rng = random.Random(f"independent/{seed}/events")
        self.honest_tables: dict[tuple, tuple] = {}
        self.persons: dict[str, _Person] = {}
        self.episodes: dict[int, dict] = {}
        self.payees: dict[tuple[int, int], datetime | None] = {}
        self.first = visits[0].when if visits else None
        last = visits[-1].when if visits else None
        self.window = (self.first - timedelta(days=WARNED_DAYS_CALLED[1]), last) if visits else None
        self.victim_entries: dict[str, list] = {}
        for visit in visits:  # the episodes first, since a victim may be warned before the first visit
            ep = visit.episode
            if ep is not None:
                if id(ep) not in self.episodes:
                    self.episodes[id(ep)] = self._episode(visit)
                if visit.payee is not None and visit.payee not in self.payees:
                    self.payees[visit.payee] = self._payee(visit)

    def _episode(self, visit: Visit) -> dict:
        rng = self.episodes_rng
        ep, typology = visit.episode, visit.typology
        if typology == "mule_cash_out":
            rented = visit.customer.account_age(visit.when.date()) >= 365
            lie = rng.uniform(0.70, 0.98) + (0.05 if visit.accompanied else 0.0)
            script = tuple(rng.random() < p for p in MULE_SCRIPT)
            return {"script": script, "lie": min(lie, 0.99), "restricted":
                    rng.random() < RESTRICTED_MULE[rented]}
        known, before, early, late = WARNED_VICTIMS[typology]
        if rng.random() < known:
            lo, hi = early if rng.random() < before else late
            start = visit.when + timedelta(hours=rng.uniform(lo, hi))
            until = start + timedelta(days=rng.uniform(*WARNED_DAYS_VICTIM))
            self.victim_entries.setdefault(visit.customer.account, []).append((start, until))
        script = tuple(rng.random() < p for p in SCRIPT[typology])
        if ep.coached:
            openly = 1.0 - rng.uniform(0.60, 1.0)  # how far the coaching holds: most say little
        else:
            openly = min(1.0, REVEAL[typology] + rng.uniform(-0.15, 0.10))
        return {"script": script, "openly": openly}

    def _payee(self, visit: Visit) -> datetime | None:
        """When the fraud payee went on the stop-payment list (None: not within the set)."""
        rng = self.episodes_rng
        already, later, days = PAYEE_LISTED[visit.typology]
        r = rng.random()
        if r < already:
            return visit.when - timedelta(days=1)
        if r < already + later:
            return visit.when + timedelta(days=rng.uniform(*days))
        return None

    def _person(self, c: Customer, mule: bool) -> _Person:
        rng = self.persons_rng
        entries = list(self.victim_entries.get(c.account, ()))
        if not mule:
            start, end = self.window
            span = (end - start).total_seconds()
            rate = CALLED_PER_YEAR[c.age_on(start.date()) >= 60]
            for _ in range(poisson(rng, rate * span / (365.25 * 86400))):
                begin = start + timedelta(seconds=rng.uniform(0, span))
                entries.append((begin, begin + timedelta(days=rng.uniform(*WARNED_DAYS_CALLED))))
        restricted = not mule and rng.random() < RESTRICTED_HONEST
        return _Person(entries, restricted)

    def of(self, visit: Visit) -> tuple[dict, bool]:
        """(signals, coached) of one visit; call in time order."""
        rng = self.rng
        c, when, event, ep = visit.customer, visit.when, visit.event, visit.episode
        transfer = event["kind"] == "transfer_out"
        old = event["counter"] == OLD_TERMINAL
        mule = ep is not None and visit.typology == "mule_cash_out"
        person = self.persons.get(c.account)
        if person is None:
            person = self.persons[c.account] = self._person(c, mule)
        identity = not old and rng.random() >= IDENTITY_SKIPPED
        warned = restricted = payee_listed = False
        if identity:
            if person.warned:
                warned = any(start <= when < until for start, until in person.warned)
            restricted = self.episodes[id(ep)]["restricted"] if mule else person.restricted
        if transfer and not old:
            if visit.payee is not None:
                listed = self.payees[visit.payee]
                payee_listed = listed is not None and listed <= when
            else:
                payee_listed = rng.random() < PAYEE_LISTED_HONEST
        if ep is None:
            annoyed = rng.random() < HONEST_ANNOYED.get(visit.typology, 0.04)
            key = (visit.typology, visit.on_phone, visit.accompanied, c.age_on(when.date()) >= 75, annoyed, transfer)
            table = self.honest_tables.get(key) or self.honest_tables.setdefault(key, _honest_table(*key))
            answers = _answer(rng, *table)
        else:
            answers = self._scammed(visit, self.episodes[id(ep)], transfer, mule)
        return {"identity": identity, "warned": warned, "restricted": restricted, "payee_listed": payee_listed,
                "answers": answers}, ep is not None and ep.coached

    def _scammed(self, visit: Visit, state: dict, transfer: bool, mule: bool) -> dict:
        rng = self.rng
        script = state["script"]
        if mule:  # complicit: lies most of the time, a little less about doing it for someone else
            lie = state["lie"]
            lies = (lie, lie, lie, lie, lie, lie * 0.8)
            declined_share = 0.25
        elif visit.episode.coached:  # rehearsed lies: no one called, the payee is "my nephew"
            keep = 1.0 - state["openly"]
            lies = (min(0.97, keep + 0.15), keep, keep, keep, keep, keep)
            declined_share = 0.15
        else:  # tells the script, though not every sign of it (ashamed, or does not see it as one)
            lies = (1.0 - state["openly"],) * 6
            declined_share = 0.35
        answers = {}
        for i, signal in enumerate(SIGNALS):
            if i == PAYEE and not transfer:
                continue
            sign, clean = ("no", "yes") if i == PAYEE else ("yes", "no")
            r = rng.random()
            if script[i]:
                lie = lies[i]
                answers[signal] = sign if r >= lie else "declined" if r < lie * declined_share else clean
            else:  # not part of this scam: answered truthfully, with the odd slip or refusal
                answers[signal] = "declined" if r < 0.03 else sign if r < 0.05 else clean
        return answers


def _honest_table(typology: str, on_phone: bool, accompanied: bool, old: bool, annoyed: bool, transfer: bool):
    """The chances of an honest customer's answers in one situation, arranged for ``_answer``."""
    signs = list(HONEST_SIGNS[typology])
    if on_phone:  # the person on the line is family, an agent, a hospital
        signs[0] = max(signs[0], HONEST_ON_PHONE.get(typology, 0.20))
    if accompanied:  # the companion is often who the money is for
        signs[5] = min(1.0, signs[5] + 0.10)
    if old:  # 75 or over: hard of hearing, a question misunderstood
        signs = [p + 0.01 for p in signs]
    decline = 0.5 if annoyed else 0.004  # an annoyed customer refuses half the questions
    names, odd, cumulative, sign_share = [], [], [], []
    clean_so_far = 1.0
    for i, signal in enumerate(SIGNALS):
        if i == PAYEE and not transfer:
            continue
        q = decline + (1.0 - decline) * signs[i]  # the answer is not the reassuring one
        names.append((signal, "no" if i == PAYEE else "yes", "yes" if i == PAYEE else "no"))
        odd.append(q)
        sign_share.append((1.0 - decline) * signs[i] / q)
        cumulative.append(1.0 - clean_so_far * (1.0 - q))
        clean_so_far *= 1.0 - q
    clean = {signal: reassuring for signal, _, reassuring in names}
    return names, odd, cumulative, sign_share, clean


def _answer(rng: random.Random, names, odd, cumulative, sign_share, clean) -> dict:
    """Answers drawn question by question with the chances ``odd`` of anything but the reassuring
    answer (a sign with ``sign_share`` of that, else declined). The same draw, arranged for speed: one
    number finds the first question not answered reassuringly, most often none."""
    first = bisect.bisect_right(cumulative, rng.random())
    answers = dict(clean)
    if first == len(names):
        return answers
    for i in range(first, len(names)):
        if i == first or rng.random() < odd[i]:
            signal, sign, _ = names[i]
            answers[signal] = sign if rng.random() < sign_share[i] else "declined"
    return answers


def independent_branch(seed: int, n_events: int) -> list[dict]:
    """``n_events`` labelled counter events of one branch, in time order, the same for the same seed."""
    if isinstance(n_events, bool) or not isinstance(n_events, int) or n_events < 0:
        raise ValueError(f"n_events must be a whole number of events >= 0, got {n_events!r}")
    branch = Branch(random.Random(seed))
    visits: list[Visit] = []
    day = START
    while len(visits) < n_events:
        visits.extend(branch.day(day))
        day += timedelta(days=1)
    visits.sort(key=lambda v: (v.when, v.seq))
    visits = visits[:n_events]
    signals = _Signals(seed, visits)
    items = []
    visits.reverse()  # each visit is let go once its item is made: far less for the collector to walk
    for i in range(len(visits)):
        visit = visits.pop()
        event = {"event_id": f"ind{seed}-{i:06d}", **visit.event}
        seen, coached = signals.of(visit)
        items.append({"event": event, "label": int(visit.typology in FRAUD), "typology": visit.typology,
                      "watchlisted": visit.watchlisted, "signals": seen, "coached": coached})
    return items


def unflagged_ordinary_purpose(event: dict) -> bool:
    """A withdrawal that shows nothing at the counter: no teller flag and an everyday purpose."""
    return not event.get("teller_flags") and event.get("purpose") in ORDINARY_PURPOSES


def summary(items: list[dict]) -> str:
    counts = Counter(item["typology"] for item in items)
    fraud = sum(item["label"] for item in items)
    days = len({item["event"]["ts"][:10] for item in items})
    lines = [f"{'typology':<18} {'kind':<6} {'events':>7} {'share':>7}"]
    for typology in TYPOLOGIES:
        n = counts.get(typology, 0)
        kind = "fraud" if typology in FRAUD else "honest"
        lines.append(f"{typology:<18} {kind:<6} {n:>7} {n / max(1, len(items)):>7.2%}")
    hidden = sum(1 for item in items if item["label"] and unflagged_ordinary_purpose(item["event"]))
    lines += [
        f"events {len(items)} over {days} days ({len(items) / max(1, days):.0f} a day)",
        f"fraud share {fraud / max(1, len(items)):.2%} ({fraud} events)",
        f"fraud events showing no sign at the counter (no flag, everyday purpose): {hidden}",
        f"watchlisted events {sum(item['watchlisted'] for item in items)}",
    ]
    return "\n".join(lines + signal_summary(items))


def _group(item: dict) -> str:
    if item["typology"] == "mule_cash_out":
        return "mule holders"
    if item["label"]:
        return "victims, coached" if item.get("coached") else "victims, uncoached"
    return "honest"


def signal_summary(items: list[dict]) -> list[str]:
    """Lines on the lists of persons and payees and on the caring answers of a set of items."""
    items = [item for item in items if "signals" in item]
    if not items:
        return []
    share = lambda part, whole: f"{part / max(1, whole):.1%}"  # noqa: E731
    seen = [item["signals"] for item in items]
    victims = [item for item in items if item["typology"] in VICTIMS]
    honest = [item for item in items if not item["label"]]
    mules = [item for item in items if item["typology"] == "mule_cash_out"]
    warned = sum(s["warned"] for s in seen)
    warned_honest = sum(item["signals"]["warned"] for item in honest)
    warned_victims = sum(item["signals"]["warned"] for item in victims)
    identified = [item for item in victims if item["signals"]["identity"]]
    fraud_transfers = [item for item in items if item["label"] and item["event"]["kind"] == "transfer_out"]
    honest_transfers = [item for item in honest if item["event"]["kind"] == "transfer_out"]
    lines = [
        f"identity sent {share(sum(s['identity'] for s in seen), len(seen))} of events (never from counter "
        f"{OLD_TERMINAL}, the old terminal)",
        f"warned persons: {share(warned_victims, len(victims))} of victim events ({warned_victims} of {len(victims)}; "
        f"{share(sum(i['signals']['warned'] for i in identified), len(identified))} where the identity was sent)",
        f"  and {warned_honest} honest events of warned persons ({share(warned_honest, len(honest))} of honest events, "
        f"{share(warned_honest, warned)} of warned events), "
        f"{len({i['event']['account'] for i in honest if i['signals']['warned']})} honest persons",
        f"restricted persons: {share(sum(i['signals']['restricted'] for i in mules), len(mules))} of mule events, "
        f"{sum(i['signals']['restricted'] for i in honest)} honest events",
        f"payee on the stop-payment list: "
        f"{share(sum(i['signals']['payee_listed'] for i in fraud_transfers), len(fraud_transfers))} "
        f"of fraud transfers, {sum(i['signals']['payee_listed'] for i in honest_transfers)} of "
        f"{len(honest_transfers)} honest transfers",
        "caring answers, if asked: share giving the scam's sign (yes; 'no' for knows_payee_in_person) / declined",
        f"{'':<26}" + "".join(f"{name:>15}" for name in SIGNAL_LABELS),
    ]
    for group in ("honest", "victims, uncoached", "victims, coached", "mule holders"):
        rows = [item["signals"]["answers"] for item in items if _group(item) == group]
        cells = []
        for i, signal in enumerate(SIGNALS):
            asked = [a[signal] for a in rows if signal in a]
            sign = sum(a == ("no" if i == PAYEE else "yes") for a in asked)
            declined = sum(a == "declined" for a in asked)
            cells.append(f"{share(sign, len(asked))} / {share(declined, len(asked))}")
        lines.append(f"{group + f' ({len(rows)})':<26}" + "".join(f"{c:>15}" for c in cells))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        seed = int(args[0]) if args else 11
        n_events = int(args[1]) if len(args) > 1 else 60_000
        if len(args) > 2 or n_events < 0:
            raise ValueError
    except ValueError:
        print("usage: python -m counterguard.models.independent [SEED] [N_EVENTS]  (whole numbers, N_EVENTS >= 0)",
              file=sys.stderr)
        return 2
    print(f"independent branch, seed {seed}")
    print(summary(independent_branch(seed, n_events)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
