"""An independent evaluation world of "two cards" events: SIM activations and account openings.

Fraud in China runs on two cards: bank accounts and phone SIM cards bought, rented or opened for
someone else (the public security "card-breaking" 断卡 campaign since October 2020 names both), then
used to take victims' money and to call them. The gateway takes both card kinds (docs/events.md
"Two cards"). This module draws labelled card events from a generator of its own, written from how
the campaign's public notices, court cases and carrier and bank guidance describe the card trade
and from how an outlet's and a desk's honest customers behave, without reference to any other card
simulator of the project, the card rule book (core/cards.py) or what a model reads, so the two
share only the event schema and the typology idea. ``independent_cards(seed, n_events, kind)``
with ``kind`` ``"sim_activation"`` (a carrier's business hall) or ``"account_opening"`` (a bank's
account-opening desks) returns ``n_events`` items in time order::

    {"event": <card event body>, "label": 0 | 1, "typology": "<name>",
     "signals": {"identity": True, "warned": bool, "restricted": bool}}

Every body passes ``core.events.parse_event``. The same seed gives the same items; another seed
gives another world. Every number below is an ASSUMPTION chosen from the domain before any rule or
model was run against this set, except the fraud episode rates, which were set so that fraud is
about 3 % of card events (the documented range is 2-5 %, per kind). Where a public pattern stands
behind a choice it is named.

Places and time
    One gateway per kind, in a district of Wuhan with several universities, an industrial park and
    older residential streets. The set starts on Monday 4 March 2024 and runs day by day until it
    holds ``n_events``; times carry +08:00.

    sim_activation   A carrier's flagship business hall, counters 1-8, counter 8 the enterprise
                     desk (small businesses and IoT fleets go there 70 % of the time). Open
                     09:00-21:00 every day, busiest at lunch and after work; weekend traffic of
                     private customers x1.3, of businesses x0.6, of fleets x0.3. About 90 SIM
                     activations on a weekday and 110 at weekends, many more at term start.
    account_opening  A bank branch's desks, counters 1-6, accounts mostly opened at 3-6 (counter 6
                     is the corporate desk, 60 % of small businesses). Open 09:00-17:00 on weekdays
                     and 09:00-16:00 at weekends with half the traffic and no payroll batches.
                     About 50 account openings on a weekday, many more at term start.

    Term start: 1-21 September (freshmen: student traffic x12 at the hall, x25 at the bank, where
    the university's partner bank opens the campus cards) and 24 February-10 March (x4). Factory
    hiring after the Spring Festival: payroll batches x3 from 15 February to 31 March.

Persons and their history
    Every customer is a person with an 18-character resident identity number (GB 11643: a real
    district or county code, the birth date, a sequence number and the MOD 11-2 check digit) whose
    birth date gives ``customer_age`` on the day of the visit. Locals carry Wuhan district codes;
    students and migrant workers other provinces' codes; elderly people bussed in by dealers the
    codes of rural counties of Hubei. A person keeps the cards or accounts in their name: every
    card opened here (when the teller completes the request) or elsewhere (another outlet, another
    bank, recorded with its time) counts in ``sims_held`` / ``accounts_held`` at every later visit,
    and an account opened in the last 90 days in ``accounts_opened_90d``. A person seen again has
    the same ``customer_id`` (and phone). Honest persons come back too: 3 % of ordinary visits are
    an earlier ordinary customer; families (8 %), small businesses (25 %) and IoT fleets (55 %, again
    and again) return weeks later; 1 % of honest visits are a retry at another counter 20-120
    minutes after a first attempt that could not be completed (a document missing, the real-name
    face check failing), so "the same person twice today" happens to honest people.

    Optional fields are left out now and then: the phone when the person has none or 12 % of the
    time, ``customer_age`` 1 %, ``sims_held`` 3 % and ``accounts_opened_90d`` 7 % (the national
    one-ID lookup did not answer), ``accounts_held`` 2 %, ``for_self`` and ``accompanied`` 2 % each
    (not asked), ``purpose`` 3 %, ``number_type`` 3 %, ``card_type`` 2 %. ``teller_flags`` is sent
    when the teller set any; the ``accompanied`` flag goes with 40 % of accompanied visits.

Honest teller-flag noise (every honest visit): on the phone 2.5 %, anxious 1 % (2 % for 65+),
urgent 2 %, purpose mismatch 0.5 %.

Ordinary customers (most traffic)
    sim_activation   70 a weekday. Ages 16-21 8 %, 22-34 28 %, 35-49 27 %, 50-64 22 %, 65-88 15 %.
                     Cards already held 0-4 (mostly 1-2; 0 for a first phone or a newcomer).
                     One card (91 %), two (8 %: a work number), three (1 %). For themselves 97 %
                     (3 % a spare for a relative, said plainly: for_self false, purpose personal).
                     Accompanied 3 % (12 % at 65-74, 30 % at 75+). Purpose personal 90 %, other
                     6 %, business 4 %; postpaid 50 %, prepaid 38 %, data only 12 % (60 % prepaid
                     at 65+).
    account_opening  30 a weekday. Ages 16-88 as above. Accounts held 0-5 (mostly 1-3), opened in the last 90
                     days 0 (88 %), 1 (10 %), 2 (2 %). Class I 50 %, II 30 %, III 5 %, credit 15 %;
                     purpose savings 35 %, salary 30 % (pension for 55+ instead of most salary),
                     investment 8 %, other 7 %, business 5 %. For themselves 98 %; accompanied as above.

Honest look-alikes (label 0)
    family_cards     sim: 6 a weekday. A parent (30-62; 10 % grandparents to 72) buying cards for
                     children, or an adult child for an elderly parent, in their own name: 1-4
                     cards (45 % more than one), 1-5 already held, for_self false 92 %, purpose
                     family 85 % / personal 10 % / other 5 % (so 15 % show a dealer's "not for
                     self" with no family purpose), accompanied 12 % (spouse or child does the
                     talking); 15 % data-only (a child's watch).
                     account: 3 a weekday. A parent opening an account in their own name for a
                     child at university, or a child for a parent's care costs: for_self false
                     90 %, purpose student 35 / savings 35 / other 20 / pension 10 %, Class II 50 %,
                     accompanied 20 %.
    small_business   sim: 2 a weekday. A shop owner (26-60) buying 2-10 cards for staff (median 3),
                     1-6 held, for_self false 85 %, purpose business 85 % / personal 8 % / other 7 %,
                     accompanied 15 %; 25 % come back 20-200 days later for new staff.
                     account: 3 a weekday. An owner opening a business account: purpose business
                     85 % / salary 5 % / other 10 %, Class I 90 %, 2-6 held, opened in 90 days 0
                     (60 %), 1 (30 %), 2-3 (10 %: just registered, opening at two banks), for_self
                     false 30 % (the shop's), accompanied 20 % (the bookkeeper).
    iot_fleet        sim only: 0.8 a weekday. A logistics, bike-sharing or alarm company's handler
                     (25-55) activating 5-100 cards (median 15) for devices, 5-60 already held,
                     number type iot 88 % / data only 12 %, purpose iot 92 % / business 8 %,
                     for_self false 70 %; 55 % come back 5-60 days later, and again.
    payroll_batch    account only: 0.22 batches a weekday of 5-20 new hires (18-35, a third under
                     22) an employer's HR brings to open salary accounts: purpose salary 95 %,
                     accompanied 55 % (HR does the talking), 15 % give HR's phone (no local number
                     yet), 25 % opened an account at their last job in the last 90 days. Groups,
                     young, accompanied, a shared phone: what a dealer's group looks like.
    student_term     sim: 1 group a day outside term start (x12 / x4 in it) of 1-4 dorm mates
                     (mean 1.85). Students 17-22 (17-19 in September) buying a campus number, 1
                     card (90 %), 1 held (80 %), prepaid 70 %, for themselves; accompanied by a
                     parent 35 % in September (8 % otherwise).
                     account: 0.6 groups a day (x25 / x4). Freshmen 17-20 opening the campus card:
                     purpose student 80 % / savings 15 % / salary 5 %, 0-1 held, Class I 85 %,
                     accompanied by a parent 40 % in September.
    elderly_with_child  sim: 4 a weekday; account: 3 (x1.2: 20 % are both parents, two events a few
                     minutes apart with the same child's phone). A customer of 65-90 with an adult
                     child who does the talking (accompanied 97 %): for themselves 88 % (sim; 10 %
                     are two cards, one for the spouse, purpose family) / 95 % (account); the
                     child's phone given 40 % (sim) / 45 % (account); account purpose pension 45 /
                     savings 50 / other 5 %.
    carrier_switch   sim only: 3 a weekday. Someone moving to this carrier who already holds 3-7
                     numbers (work, personal, data, an old number kept for banking), 1-2 cards,
                     for themselves; over five cards with the new one in about half the cases.
    rate_chaser      account only: 4 a weekday. After the 2023-2024 deposit-rate cuts, savers
                     (40-78) open an account at another bank for a better rate: 3-9 held, 1-4
                     opened in the last 90 days, purpose savings 70 / investment 30 %.

Fraud (label 1): about 3 % of card events
    Card dealers (卡商) pay 100-300 yuan a SIM card and 500-2,000 yuan a Class I account. Each
    recruit makes one or more "runs": on a run day a dealer takes them to 2-5 outlets or banks
    35-100 minutes apart, one of which (two, at another counter, for 20-30 % of runs at the hall,
    10-15 % at the bank) is this gateway; cards opened at the other stops count in later visits'
    holdings. The teller completes 85 % of fraud requests (the other 15 % are turned down and open
    nothing). A share of recruits is COACHED: they say the cards are for themselves, give an
    everyday purpose, come in alone (the helper waits outside; seen with them 5-20 % of the time by
    typology) and ask for one or two cards at a time; a coached recruit shows only leakage flags
    (on the phone 6 %, anxious 4 %, purpose mismatch 3 %, urgent 2 %). Uncoached recruits say
    what they were told (for someone else, "business", "other"), come with the helper and show
    more (on the phone 25 %, anxious 15 %, purpose mismatch 20 %, urgent 10 %). No field is
    certain either way. Recruits often give the dealer's phone as theirs (20 % at the hall, 35 % at
    the bank: "several accounts bound to one number", a public red flag), one of about 30 dealers
    active at a time (one is replaced now and then).

    student_recruit  Students 18-22 answering a "part-time job" (campus groups, QQ/WeChat ads):
                     0.35 episodes a day (x2 at term start), 30 % a group of 2-4 classmates
                     arriving together. Coached 50 %. Runs: 1 (55 %), 2 (30 %), 3 (15 %), 2-20 days
                     apart. Sim: 1-5 cards here (coached 1-2), 1-2 at each other stop, prepaid
                     85 %; uncoached for_self false 50 %, accompanied 40 %, purpose personal 55 /
                     other 25 / business 15 / family 5 %. Account: Class I 70 %, uncoached purpose
                     business 25 / other 30 / investment 15 / salary 20 / savings 10 % (coached:
                     student, salary or savings).
    elderly_recruit  Elderly people 65-86 from villages and old estates, signed up with small gifts
                     (eggs, cooking oil, "free phones", a "subsidy") and bussed in by a helper:
                     0.10 groups a day of 2-7, served at several counters within 45 minutes, the
                     van touring 2-4 outlets or banks. The helper decides for the group (each
                     member follows 90 %) whether to wait outside (coached, 30 % of groups: at
                     the counter 15 %) or come to the counter (85 %): about two thirds in all.
                     Uncoached, for_self true 85 % (the helper says it is grandma's own card),
                     purpose personal 80 % / family 15 % ("for my grandson") / other 5 %;
                     coached, personal 85 % / family 15 %. 1-3 cards (coached 1-2), 0-2 held,
                     prepaid 90 %; at least anxious 10 % and purpose
                     mismatch 15 % (cannot say what the card is for). 20 % are brought back 7-40
                     days later. Account: Class I 80 %, purpose savings / pension when coached.
    card_seller      Adults 20-50 (mostly 22-38, often in debt) who sell or rent out cards in their
                     own name again and again: 0.15 new sellers a day, each 2-6 runs 3-30 days
                     apart, 2-5 cards or accounts already held at the start. Coached 70 %
                     (they know what to say). Sim: coached 1-2 cards, uncoached 2-6, 1-3 at each
                     other stop; account: Class I 60 %, purpose salary / savings / business.
    escorted_recruit Job seekers, migrant workers and people in debt (20-55) told a job or a loan
                     needs new cards, escorted by a "helper" who takes them at the door: 0.30
                     episodes a day (25 % pairs), coached 45 %; accompanied 65 % uncoached and
                     20 % coached (the helper stands back but is seen); runs 1 (50 %), 2 (35 %),
                     3 (15 %) 2-25 days apart; 1-3 held; sim: 1-4 cards (coached 1-2), purpose
                     personal 60 / business 30 / other 10 %; account: Class I 75 %, purpose
                     business 35 / salary 30 / other 25 / savings 10 % (coached salary / savings).

    The bank desk sees the same typologies at half the hall's episode rates (a bank account is
    harder to open: a Class I account is limited to one per bank and person), 0.6 of them at
    weekends; one account per visit, one at each other bank of a run.

What the set looks like (seed 11, 30,000 events of each kind; other seeds differ a little)
    Fraud is 3.2 % of the hall's events and 2.7 % of the bank's (2.3-3.5 % over seeds 1-20 at
    20,000 events); about half the fraud persons are seen more than once here (three quarters of
    the fraud events), against 900-1,200 honest persons seen twice (retries, returning families,
    businesses and fleets). The plain signs, fraud / honest events, hall then bank: for_self false
    18 / 12 % and 16 / 9 %; accompanied 33 / 12 % and 31 / 18 %; young (under 22) or elderly (65+)
    49 / 27 % and 44 / 33 %. Over five cards held and asked for: 56 % of the hall's fraud events, 6 %
    of honest ones; two accounts or more opened in 90 days: 58 % / 6 % at the bank. About 35-40 %
    of fraud events show no sign at all at the counter (for themselves, alone, an everyday purpose,
    no teller flag).

Signals beyond the event
    Drawn after the events from a generator of their own (seeded from the world seed, persons in
    the order they first appear), so the events, labels and typologies are the same with or
    without them. ``identity`` is always True: a card event always carries the customer's
    identity number.

    warned      on the police's warned-persons list at the time of the visit. Recruits the police
                contacted (campus anti-fraud checks, a warning call after a dealer's group chat was
                found): student 10 %, elderly 12 %, card seller 8 %, escorted 10 % of persons,
                listed from 20 days before to 10 days after their first visit here, for 30-120
                days. Honest persons warned after a scam call they hung up on: 3 % a year (5 % at
                65+), listed once for 15-60 days starting anywhere in the set (or up to 60 days
                before it): about 0.4 % of honest events. Noisy both ways: most recruits are not
                on it, and more than half of the warned events at the counter are honest.
    restricted  "both cards restricted" (两卡惩戒, five years): a card seller seen here on two days
                or more is restricted from before the first visit 30 % of the time (sold cards
                before), or from 1-10 days after the second run 20 % of the time (this hall or
                bank reported them); other recruits 2 % (an earlier sale); 0.15 % of honest persons are stale
                entries (a card lent years ago, the five years not yet over).

Run ``python -m counterguard.models.independent_cards [SEED] [N]`` for a summary of both kinds.
"""

from __future__ import annotations

import math
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from counterguard.core.events import CARD_KINDS, TELLER_FLAGS
from counterguard.core.identity import resident_check_digit
from counterguard.models.independent import poisson

SIM, ACCOUNT = CARD_KINDS  # "sim_activation", "account_opening"
FRAUD_TYPOLOGIES = ("student_recruit", "elderly_recruit", "card_seller", "escorted_recruit")
FRAUD = frozenset(FRAUD_TYPOLOGIES)
HONEST = {
    SIM: ("ordinary", "family_cards", "small_business", "iot_fleet", "student_term", "elderly_with_child",
          "carrier_switch"),
    ACCOUNT: ("ordinary", "family_cards", "small_business", "payroll_batch", "student_term", "elderly_with_child",
              "rate_chaser"),
}
LOOKALIKES = {kind: names[1:] for kind, names in HONEST.items()}  # every honest typology but ordinary
TYPOLOGIES = {kind: HONEST[kind] + FRAUD_TYPOLOGIES for kind in CARD_KINDS}
FRAUD_SHARE_RANGE = (0.02, 0.05)  # documented: fraud is about 3 % of card events of either kind

TZ = timezone(timedelta(hours=8))
START = date(2024, 3, 4)  # a Monday
# Mean visits (honest) or episodes (fraud) on a weekday, and the weekend factor.
DAILY = {
    SIM: {
        "ordinary": (70.0, 1.3), "family_cards": (6.0, 1.3), "small_business": (2.0, 0.6), "iot_fleet": (0.8, 0.3),
        "student_term": (1.0, 1.0), "elderly_with_child": (4.0, 1.3), "carrier_switch": (3.0, 1.3),
        "student_recruit": (0.35, 1.0), "elderly_recruit": (0.10, 1.0), "card_seller": (0.15, 1.0),
        "escorted_recruit": (0.30, 1.0),
    },
    ACCOUNT: {
        "ordinary": (30.0, 0.5), "family_cards": (3.0, 0.5), "small_business": (3.0, 0.5), "payroll_batch": (0.22, 0.0),
        "student_term": (0.6, 0.5), "elderly_with_child": (3.0, 0.5), "rate_chaser": (4.0, 0.5),
        "student_recruit": (0.17, 0.6), "elderly_recruit": (0.05, 0.6), "card_seller": (0.075, 0.6),
        "escorted_recruit": (0.15, 0.6),
    },
}
COUNTERS = {SIM: (1, 2, 3, 4, 5, 6, 7, 8), ACCOUNT: (1, 2, 3, 4, 5, 6)}
COUNTER_WEIGHTS = {SIM: (0.15, 0.15, 0.15, 0.14, 0.14, 0.12, 0.12, 0.03), ACCOUNT: (0.08, 0.08, 0.21, 0.21, 0.21, 0.21)}
BUSINESS_DESK = {SIM: (8, 0.70), ACCOUNT: (6, 0.60)}
OPEN_HOURS = {SIM: ((9, 21), (9, 21)), ACCOUNT: ((9, 17), (9, 16))}  # weekday, weekend
# Arrival weights per half hour from 09:00.
SLOTS = {
    SIM: (4, 6, 7, 8, 8, 9, 10, 10, 8, 7, 6, 6, 6, 6, 7, 7, 8, 9, 10, 10, 9, 7, 5, 3),
    ACCOUNT: (6, 9, 10, 10, 9, 8, 6, 5, 5, 6, 8, 9, 9, 8, 6, 4),
}
AGE_BANDS = ((16, 21), (22, 34), (35, 49), (50, 64), (65, 88))
AGE_MIX = (0.08, 0.28, 0.27, 0.22, 0.15)
LOCAL = ("420102", "420103", "420104", "420105", "420106", "420107", "420111", "420115")
PROVINCES = ("410102", "411302", "411503", "430102", "430521", "360102", "362201", "340104", "341202",
             "510104", "500101", "421023", "420281", "421181", "422801", "441302", "320106", "610113")
RURAL = ("420281", "421023", "421126", "421181", "420982", "422801", "421022", "420621", "421221")
FRAUD_GRANTED = 0.85  # the teller completes the request; the rest are turned down and open nothing
HONEST_GRANTED = 0.98
RETRY = 0.01  # an honest first attempt that could not be completed, tried again at another counter
OMIT = {"customer_phone": 0.12, "customer_age": 0.01, "sims_held": 0.03, "accounts_opened_90d": 0.07,
        "accounts_held": 0.02, "for_self": 0.02, "accompanied": 0.02, "purpose": 0.03, "number_type": 0.03,
        "card_type": 0.02}
COACHED = {"student_recruit": 0.50, "elderly_recruit": 0.30, "card_seller": 0.70, "escorted_recruit": 0.45}
DEALER_PHONE = {SIM: 0.20, ACCOUNT: 0.35}
# Signals: warned share of persons and restricted share, by typology.
WARNED_FRAUD = {"student_recruit": 0.10, "elderly_recruit": 0.12, "card_seller": 0.08, "escorted_recruit": 0.10}
WARNED_HONEST = (0.03, 0.05)  # a year, under 65 and 65+: listed once for 15-60 days
RESTRICTED_SELLER = (0.30, 0.20)  # before the first visit, from 1-10 days after the second run
RESTRICTED_RECRUIT = 0.02
RESTRICTED_HONEST = 0.0015


@dataclass
class Person:
    """A customer and the cards or accounts in their name, opened here or elsewhere, with times."""

    pid: int
    customer_id: str
    born: date
    phone: str | None
    typology: str
    held: int = 0  # opened before the history below begins
    gains: list = field(default_factory=list)  # (when, how many) opened here or elsewhere
    coached: bool = False
    dealer: str | None = None

    def age_on(self, day: date) -> int:
        return day.year - self.born.year - ((day.month, day.day) < (self.born.month, self.born.day))

    def held_at(self, when: datetime) -> int:
        return self.held + sum(n for t, n in self.gains if t < when)

    def opened_since(self, when: datetime, days: int) -> int:
        since = when - timedelta(days=days)
        return sum(n for t, n in self.gains if since <= t < when)


@dataclass(slots=True)
class Visit:
    when: datetime
    seq: int
    person: Person
    typology: str
    counter: int
    requested: int
    fields: dict
    granted: bool


class _World:
    """One gateway's card traffic, day by day, from one random generator."""

    def __init__(self, rng: random.Random, kind: str):
        self.rng = rng
        self.kind = kind
        self.seq = 0
        self.pid = 0
        self.ids: set[str] = set()
        self.phones: set[str] = set()
        self.pending: dict[date, list[Visit]] = {}
        self.pool: dict[str, list[Person]] = {}
        self.dealers = [self._phone() for _ in range(30)]

    # -- people -------------------------------------------------------------------------------

    def _phone(self) -> str:
        rng = self.rng
        while True:
            phone = f"{rng.choice(('13', '15', '17', '18', '19'))}{rng.randrange(10 ** 9):09d}"
            if phone not in self.phones:
                self.phones.add(phone)
                return phone

    def _resident_id(self, region: str, born: date) -> str:
        while True:
            first17 = f"{region}{born:%Y%m%d}{self.rng.randrange(1000):03d}"
            number = first17 + resident_check_digit(first17)
            if number not in self.ids:
                self.ids.add(number)
                return number

    def _person(self, day: date, ages: tuple[int, int], typology: str, *, region: str = "", held: int = 0,
                phone: bool = True, recent: int = 0) -> Person:
        """A new person aged ``ages`` (inclusive) on ``day`` with ``held`` cards or accounts, ``recent`` of
        them opened in the last 90 days."""
        rng = self.rng
        lo, hi = ages
        while True:
            born = day - timedelta(days=int(rng.uniform(lo, hi + 1) * 365.25))
            person_age = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
            if lo <= person_age <= hi:
                break
        if not region:
            region = rng.choice(LOCAL) if rng.random() < 0.6 else rng.choice(PROVINCES)
        self.pid += 1
        person = Person(self.pid, self._resident_id(region, born), born, self._phone() if phone else None, typology,
                        held=max(0, held - recent))
        start = datetime(day.year, day.month, day.day, 9, tzinfo=TZ)
        for _ in range(min(recent, held)):
            person.gains.append((start - timedelta(days=rng.uniform(1, 89)), 1))
        return person

    def _age_band(self) -> tuple[int, int]:
        return AGE_BANDS[self.rng.choices(range(len(AGE_BANDS)), AGE_MIX)[0]]

    # -- the counter --------------------------------------------------------------------------

    def _hours(self, day: date) -> tuple[int, int]:
        return OPEN_HOURS[self.kind][day.weekday() >= 5]

    def _clock(self, day: date, lo_hour: float | None = None, hi_hour: float | None = None) -> datetime:
        """An arrival time: by the day's arrival curve, or uniform between two hours."""
        rng = self.rng
        opens, closes = self._hours(day)
        base = datetime(day.year, day.month, day.day, opens, tzinfo=TZ)
        if lo_hour is not None:
            return base + timedelta(seconds=int(rng.uniform(lo_hour - opens, hi_hour - opens) * 3600))
        slots = SLOTS[self.kind][: (closes - opens) * 2]
        slot = rng.choices(range(len(slots)), slots)[0]
        return base + timedelta(seconds=slot * 1800 + rng.randrange(1800))

    def _open(self, when: datetime) -> bool:
        opens, closes = self._hours(when.date())
        return opens <= when.hour < closes

    def _counter(self, avoid: int | None = None, business: bool = False) -> int:
        rng = self.rng
        desk, share = BUSINESS_DESK[self.kind]
        if business and desk != avoid and rng.random() < share:
            return desk
        while True:
            counter = rng.choices(COUNTERS[self.kind], COUNTER_WEIGHTS[self.kind])[0]
            if counter != avoid:
                return counter

    def _pick(self, table: dict):
        return self.rng.choices(list(table), list(table.values()))[0]

    def _flags(self, age: int, accompanied: bool, rates: dict | None = None) -> list[str]:
        """Teller flags: honest noise, or ``rates`` for a recruit."""
        r = self.rng.random
        if rates is None:
            rates = {"customer_on_phone": 0.025, "anxious": 0.02 if age >= 65 else 0.01, "urgent": 0.02,
                     "declared_purpose_mismatch": 0.005}
        flags = {flag for flag, rate in rates.items() if r() < rate}
        if accompanied and r() < 0.40:
            flags.add("accompanied")
        return [f for f in TELLER_FLAGS if f in flags]

    def _visit(self, when: datetime, person: Person, typology: str, counter: int, fields: dict, *,
               requested: int = 1, granted: bool | None = None) -> Visit:
        if granted is None:
            granted = self.rng.random() < (FRAUD_GRANTED if typology in FRAUD else HONEST_GRANTED)
        self.seq += 1
        visit = Visit(when, self.seq, person, typology, counter, requested, fields, granted)
        self.pending.setdefault(when.date(), []).append(visit)
        return visit

    def _honest(self, when: datetime, person: Person, typology: str, fields: dict, *, requested: int = 1,
                business: bool = False) -> None:
        """An honest visit, now and then a first attempt that could not be completed and a retry."""
        rng = self.rng
        counter = self._counter(business=business)
        if rng.random() < RETRY:
            self._visit(when, person, typology, counter, fields, requested=requested, granted=False)
            later = when + timedelta(minutes=rng.uniform(20, 120))
            if self._open(later) and later.date() == when.date():
                self._visit(later, person, typology, self._counter(avoid=counter, business=business), fields,
                            requested=requested, granted=True)
            return
        self._visit(when, person, typology, counter, fields, requested=requested)

    def _fields(self, person: Person, day: date, *, purpose: str | None, ctype: str | None, for_self: bool,
                accompanied: bool, flags: list[str] | None = None, phone: str | None = None) -> dict:
        return {"purpose": purpose, "type": ctype, "for_self": for_self, "accompanied": accompanied,
                "flags": self._flags(person.age_on(day), accompanied) if flags is None else flags,
                "phone": phone if phone is not None else person.phone}

    def _returning(self, typology: str, share: float, day: date) -> Person | None:
        """An earlier honest customer of this typology coming back, ``share`` of the time."""
        pool = self.pool.get(typology)
        if pool and self.rng.random() < share:
            return self.rng.choice(pool)
        return None

    def _remember(self, person: Person) -> Person:
        self.pool.setdefault(person.typology, []).append(person)
        return person

    # -- one day ------------------------------------------------------------------------------

    def day(self, day: date) -> list[Visit]:
        rng = self.rng
        weekend = day.weekday() >= 5
        for typology, (mean, weekend_factor) in DAILY[self.kind].items():
            lam = mean * (weekend_factor if weekend else 1.0) * self._season(typology, day)
            make = getattr(self, "_" + typology)
            for _ in range(poisson(rng, lam)):
                make(day)
        return self.pending.pop(day, [])

    def _season(self, typology: str, day: date) -> float:
        term = _term(day)
        if typology == "student_term":
            return {"autumn": 12.0 if self.kind == SIM else 25.0, "spring": 4.0}.get(term, 1.0)
        if typology == "student_recruit" and term:
            return 2.0
        if typology == "payroll_batch" and (date(day.year, 2, 15) <= day <= date(day.year, 3, 31)):
            return 3.0
        return 1.0

    # -- ordinary customers -------------------------------------------------------------------

    def _ordinary(self, day: date) -> None:
        rng = self.rng
        when = self._clock(day)
        person = self._returning("ordinary", 0.03, day)
        if person is None:
            ages = self._age_band()
            if self.kind == SIM:
                weights = (40, 50, 10, 0, 0) if ages[0] == 16 else (10, 65, 20, 4, 1) if ages[0] >= 65 else (
                    6, 52, 30, 9, 3)
                held = rng.choices(range(5), weights)[0]
                person = self._person(day, ages, "ordinary", held=held, phone=held > 0)
            else:
                held = rng.choices((0, 1, 2, 3, 4, 5), (3, 35, 30, 18, 9, 5))[0]
                recent = min(held, rng.choices((0, 1, 2), (88, 10, 2))[0])
                person = self._person(day, ages, "ordinary", held=held, recent=recent, phone=rng.random() < 0.95)
            self._remember(person)
        age = person.age_on(day)
        accompanied = rng.random() < (0.30 if age >= 75 else 0.12 if age >= 65 else 0.03)
        if self.kind == SIM:
            for_self = rng.random() < 0.97
            purpose = self._pick({"personal": 90, "other": 6, "business": 4})
            ntype = self._pick({"prepaid": 60, "postpaid": 32, "data_only": 8} if age >= 65 else
                               {"postpaid": 50, "prepaid": 38, "data_only": 12})
            requested = rng.choices((1, 2, 3), (91, 8, 1))[0]
            fields = self._fields(person, day, purpose=purpose, ctype=ntype, for_self=for_self, accompanied=accompanied)
            self._honest(when, person, "ordinary", fields, requested=requested)
        else:
            purposes = {"savings": 35, "salary": 30, "investment": 8, "other": 7, "business": 5}
            if age >= 55:
                purposes = {"savings": 35, "pension": 24, "salary": 6, "investment": 8, "other": 7, "business": 5}
            elif age < 23:
                purposes = {"savings": 30, "salary": 30, "student": 25, "other": 10, "investment": 5}
            ctype = self._pick({"type_i": 50, "type_ii": 30, "type_iii": 5, "credit": 15})
            fields = self._fields(person, day, purpose=self._pick(purposes), ctype=ctype,
                                  for_self=rng.random() < 0.98, accompanied=accompanied)
            self._honest(when, person, "ordinary", fields)

    # -- honest look-alikes -------------------------------------------------------------------

    def _family_cards(self, day: date) -> None:
        rng = self.rng
        person = self._returning("family_cards", 0.08, day)
        if person is None:
            ages = (60, 72) if rng.random() < 0.10 else (30, 62)
            if self.kind == SIM:
                held = rng.choices((1, 2, 3, 4, 5), (30, 35, 20, 10, 5))[0]
                person = self._remember(self._person(day, ages, "family_cards", held=held))
            else:
                held = rng.randint(2, 6)
                person = self._remember(self._person(day, ages, "family_cards", held=held,
                                                     recent=rng.choices((0, 1), (85, 15))[0]))
        when = self._clock(day)
        if self.kind == SIM:
            fields = self._fields(person, day, purpose=self._pick({"family": 85, "personal": 10, "other": 5}),
                                  ctype=self._pick({"prepaid": 50, "postpaid": 35, "data_only": 15}),
                                  for_self=rng.random() >= 0.92, accompanied=rng.random() < 0.12)
            self._honest(when, person, "family_cards", fields, requested=rng.choices((1, 2, 3, 4), (55, 30, 10, 5))[0])
        else:
            fields = self._fields(person, day,
                                  purpose=self._pick({"student": 35, "savings": 35, "other": 20, "pension": 10}),
                                  ctype=self._pick({"type_ii": 50, "type_i": 45, "type_iii": 5}),
                                  for_self=rng.random() >= 0.90, accompanied=rng.random() < 0.20)
            self._honest(when, person, "family_cards", fields)

    def _small_business(self, day: date) -> None:
        rng = self.rng
        if self.kind == SIM:
            person = self._remember(self._person(day, (26, 60), "small_business", held=rng.randint(1, 6)))
            repeats = 1 + (rng.random() < 0.25)
            visit_day = day
            for _ in range(repeats):
                when = self._clock(visit_day)
                fields = self._fields(person, visit_day,
                                      purpose=self._pick({"business": 85, "personal": 8, "other": 7}),
                                      ctype=self._pick({"postpaid": 60, "prepaid": 35, "data_only": 5}),
                                      for_self=rng.random() >= 0.85, accompanied=rng.random() < 0.15)
                requested = rng.choices((2, 3, 4, 5, 6, 8, 10), (25, 25, 20, 12, 8, 6, 4))[0]
                self._honest(when, person, "small_business", fields, requested=requested, business=True)
                visit_day = visit_day + timedelta(days=rng.randint(20, 200))
        else:
            recent = rng.choices((0, 1, 2, 3), (60, 30, 6, 4))[0]
            person = self._remember(self._person(day, (26, 62), "small_business", held=rng.randint(2, 6) + recent,
                                                 recent=recent))
            fields = self._fields(person, day, purpose=self._pick({"business": 85, "salary": 5, "other": 10}),
                                  ctype=self._pick({"type_i": 90, "type_ii": 10}), for_self=rng.random() >= 0.30,
                                  accompanied=rng.random() < 0.20)
            self._honest(self._clock(day), person, "small_business", fields, business=True)

    def _iot_fleet(self, day: date) -> None:
        rng = self.rng
        person = self._remember(self._person(day, (25, 55), "iot_fleet", held=rng.randint(5, 60)))
        visit_day = day
        while True:
            fields = self._fields(person, visit_day, purpose=self._pick({"iot": 92, "business": 8}),
                                  ctype=self._pick({"iot": 88, "data_only": 12}), for_self=rng.random() >= 0.70,
                                  accompanied=rng.random() < 0.10)
            requested = max(5, min(100, int(rng.lognormvariate(math.log(15), 0.7))))
            self._honest(self._clock(visit_day), person, "iot_fleet", fields, requested=requested, business=True)
            if rng.random() >= 0.55:
                return
            visit_day = visit_day + timedelta(days=rng.randint(5, 60))

    def _student_term(self, day: date) -> None:
        rng = self.rng
        term = _term(day)
        when = self._clock(day)
        for _ in range(rng.choices((1, 2, 3, 4), (50, 25, 15, 10))[0]):
            with_parent = rng.random() < (0.35 if term == "autumn" else 0.08)
            if self.kind == SIM:
                held = rng.choices((1, 0, 2), (80, 10, 10))[0]
                person = self._person(day, (17, 19) if term == "autumn" else (17, 22), "student_term",
                                      region=rng.choice(PROVINCES) if rng.random() < 0.5 else "", held=held,
                                      phone=held > 0)
                fields = self._fields(person, day, purpose="personal" if rng.random() < 0.95 else "other",
                                      ctype=self._pick({"prepaid": 70, "postpaid": 25, "data_only": 5}),
                                      for_self=rng.random() < 0.97, accompanied=with_parent)
                requested = 1 if rng.random() < 0.90 else 2
            else:
                with_parent = rng.random() < (0.40 if term == "autumn" else 0.08)
                person = self._person(day, (17, 20), "student_term", held=rng.choices((0, 1), (55, 45))[0],
                                      region=rng.choice(PROVINCES) if rng.random() < 0.5 else "")
                fields = self._fields(person, day, purpose=self._pick({"student": 80, "savings": 15, "salary": 5}),
                                      ctype=self._pick({"type_i": 85, "type_ii": 15}), for_self=rng.random() < 0.98,
                                      accompanied=with_parent)
                requested = 1
            self._honest(when + timedelta(minutes=rng.uniform(0, 20)), person, "student_term", fields,
                         requested=requested)

    def _elderly_with_child(self, day: date) -> None:
        rng = self.rng
        when = self._clock(day)
        child_phone = self._phone() if rng.random() < (0.40 if self.kind == SIM else 0.45) else None
        accompanied = rng.random() < 0.97
        for _ in range(2 if rng.random() < 0.20 else 1):  # both parents, now and then
            if self.kind == SIM:
                held = rng.choices((0, 1, 2), (30, 55, 15))[0]
                person = self._person(day, (65, 90), "elderly_with_child", held=held, phone=held > 0)
                spouse = rng.random() < 0.10
                purpose = "family" if spouse else self._pick({"personal": 94, "other": 6})
                fields = self._fields(person, day, purpose=purpose, ctype=self._pick({"prepaid": 55, "postpaid": 45}),
                                      for_self=not spouse and rng.random() < 0.98, accompanied=accompanied,
                                      phone=child_phone)
                self._honest(when, person, "elderly_with_child", fields, requested=2 if spouse else 1)
            else:
                person = self._person(day, (65, 90), "elderly_with_child", held=rng.randint(1, 4),
                                      recent=rng.choices((0, 1), (80, 20))[0], phone=rng.random() < 0.7)
                fields = self._fields(person, day, purpose=self._pick({"pension": 45, "savings": 50, "other": 5}),
                                      ctype=self._pick({"type_i": 80, "type_ii": 20}), for_self=rng.random() < 0.95,
                                      accompanied=accompanied, phone=child_phone)
                self._honest(when, person, "elderly_with_child", fields)
            when = when + timedelta(minutes=rng.uniform(3, 25))

    def _carrier_switch(self, day: date) -> None:
        rng = self.rng
        person = self._remember(self._person(day, (25, 60), "carrier_switch",
                                             held=rng.choices((3, 4, 5, 6, 7), (30, 30, 20, 12, 8))[0]))
        fields = self._fields(person, day, purpose=self._pick({"personal": 75, "business": 20, "other": 5}),
                              ctype=self._pick({"postpaid": 70, "prepaid": 25, "data_only": 5}),
                              for_self=rng.random() < 0.98, accompanied=rng.random() < 0.04)
        self._honest(self._clock(day), person, "carrier_switch", fields, requested=1 if rng.random() < 0.85 else 2)

    def _payroll_batch(self, day: date) -> None:
        rng = self.rng
        when = self._clock(day, 9.25, 14.5)
        hr_phone = self._phone()
        hr_talks = rng.random() < 0.55
        for _ in range(rng.randint(5, 20)):
            ages = (18, 21) if rng.random() < 0.33 else (22, 35)
            recent = 1 if rng.random() < 0.25 else 0
            person = self._person(day, ages, "payroll_batch", held=rng.randint(0, 3) + recent, recent=recent,
                                  region=rng.choice(PROVINCES) if rng.random() < 0.6 else "")
            accompanied = hr_talks if rng.random() < 0.9 else not hr_talks
            fields = self._fields(person, day, purpose="salary" if rng.random() < 0.95 else "savings",
                                  ctype=self._pick({"type_i": 70, "type_ii": 30}), for_self=rng.random() < 0.99,
                                  accompanied=accompanied, phone=hr_phone if rng.random() < 0.15 else None)
            self._honest(when + timedelta(minutes=rng.uniform(0, 90)), person, "payroll_batch", fields)

    def _rate_chaser(self, day: date) -> None:
        rng = self.rng
        recent = rng.choices((1, 2, 3, 4), (45, 35, 15, 5))[0]
        person = self._person(day, (40, 78), "rate_chaser", held=rng.randint(2, 5) + recent, recent=recent)
        age = person.age_on(day)
        fields = self._fields(person, day, purpose=self._pick({"savings": 70, "investment": 30}),
                              ctype=self._pick({"type_i": 80, "type_ii": 20}), for_self=rng.random() < 0.99,
                              accompanied=rng.random() < (0.20 if age >= 70 else 0.06))
        self._honest(self._clock(day), person, "rate_chaser", fields)

    # -- fraud --------------------------------------------------------------------------------

    def _recruit(self, day: date, ages: tuple[int, int], typology: str, *, region: str = "", held: int = 0,
                 recent: int = 0, dealer: str | None = None) -> Person:
        rng = self.rng
        phone = self.kind == ACCOUNT or held > 0 or rng.random() < 0.5
        person = self._person(day, ages, typology, region=region, held=held, recent=recent, phone=phone)
        person.coached = rng.random() < COACHED[typology]
        person.dealer = dealer or rng.choice(self.dealers)
        return person

    def _dealer(self) -> str:
        """One of about 30 dealers active at a time; now and then one stops and another starts."""
        if self.rng.random() < 0.02:
            self.dealers[self.rng.randrange(len(self.dealers))] = self._phone()
        return self.rng.choice(self.dealers)

    def _fraud_fields(self, person: Person, day: date, *, accompanied: float, for_self_false: float,
                      purposes: dict, coached_purposes: dict, ctypes: dict,
                      coached_accompanied: float = 0.08) -> dict:
        rng = self.rng
        if person.coached:
            accompanied_now = rng.random() < coached_accompanied
            for_self = True
            purpose = self._pick(coached_purposes)
            rates = {"customer_on_phone": 0.06, "anxious": 0.04, "declared_purpose_mismatch": 0.03, "urgent": 0.02}
        else:
            accompanied_now = rng.random() < accompanied
            for_self = rng.random() >= for_self_false
            purpose = self._pick(purposes)
            rates = {"customer_on_phone": 0.25, "anxious": 0.15, "declared_purpose_mismatch": 0.20, "urgent": 0.10}
        if person.typology == "elderly_recruit":
            rates["anxious"] = max(rates["anxious"], 0.10)
            rates["declared_purpose_mismatch"] = max(rates["declared_purpose_mismatch"], 0.15)
        phone = person.dealer if rng.random() < DEALER_PHONE[self.kind] else person.phone
        return {"purpose": purpose, "type": self._pick(ctypes), "for_self": for_self, "accompanied": accompanied_now,
                "flags": self._flags(person.age_on(day), accompanied_now, rates), "phone": phone}

    def _runs(self, person: Person, day: date, runs: int, gap: tuple[int, int], make, *, second: float,
              start: datetime | None = None, stops: tuple[int, int] = (2, 5),
              elsewhere: tuple[int, int] = (1, 2)) -> None:
        """A recruit's run days: a dealer takes them to ``stops`` outlets or banks 35-100 minutes apart,
        this gateway among them (twice, at another counter, ``second`` of the time)."""
        rng = self.rng
        for r in range(runs):
            if r:
                day = day + timedelta(days=rng.randint(*gap))
            t = start if (r == 0 and start is not None) else self._clock(day, 9.3, 11.5 if self.kind == ACCOUNT else 14)
            n_stops = rng.randint(*stops)
            here = 1 + (rng.random() < second)
            order = [True] * here + [False] * max(0, n_stops - here)
            rng.shuffle(order)
            counter = None
            for is_here in order:
                if is_here:
                    if self._open(t) and t.date() == day:
                        fields, requested = make(person, day)
                        counter = self._counter(avoid=counter)
                        self._visit(t, person, person.typology, counter, fields, requested=requested)
                else:
                    n = rng.randint(*elsewhere) if self.kind == SIM else 1
                    if rng.random() < FRAUD_GRANTED:
                        person.gains.append((t, n))
                t = t + timedelta(minutes=rng.uniform(35, 100))

    def _sim_request(self, person: Person, coached: tuple, uncoached: tuple) -> int:
        values, weights = coached if person.coached else uncoached
        return self.rng.choices(values, weights)[0]

    def _student_recruit(self, day: date) -> None:
        rng = self.rng
        dealer = self._dealer()
        group = rng.randint(2, 4) if rng.random() < 0.30 else 1
        start = self._clock(day, 9.3, 11.5 if self.kind == ACCOUNT else 15)
        for _ in range(group):
            region = rng.choice(PROVINCES) if rng.random() < 0.55 else ""
            if self.kind == SIM:
                person = self._recruit(day, (18, 22), "student_recruit", region=region, dealer=dealer,
                                       held=rng.choices((1, 2, 0), (70, 20, 10))[0])
            else:
                person = self._recruit(day, (18, 22), "student_recruit", region=region, dealer=dealer,
                                       held=rng.choices((1, 2), (70, 30))[0], recent=rng.choices((0, 1), (70, 30))[0])

            def make(p: Person, d: date):
                if self.kind == SIM:
                    fields = self._fraud_fields(
                        p, d, accompanied=0.40, for_self_false=0.50,
                        purposes={"personal": 55, "other": 25, "business": 15, "family": 5},
                        coached_purposes={"personal": 100}, ctypes={"prepaid": 85, "postpaid": 15})
                    return fields, self._sim_request(p, ((1, 2), (70, 30)), ((1, 2, 3, 4, 5), (30, 35, 20, 10, 5)))
                fields = self._fraud_fields(
                    p, d, accompanied=0.40, for_self_false=0.45,
                    purposes={"business": 25, "other": 30, "investment": 15, "salary": 20, "savings": 10},
                    coached_purposes={"student": 35, "salary": 35, "savings": 30},
                    ctypes={"type_i": 70, "type_ii": 30})
                return fields, 1

            runs = rng.choices((1, 2, 3), (55, 30, 15))[0]
            self._runs(person, day, runs, (2, 20), make, second=0.25 if self.kind == SIM else 0.15,
                       start=start + timedelta(minutes=rng.uniform(0, 20)))

    def _elderly_recruit(self, day: date) -> None:
        rng = self.rng
        dealer = self._dealer()
        start = self._clock(day, 9.3, 11.5 if self.kind == ACCOUNT else 14)
        n_stops = rng.randint(2, 4)
        at = rng.randrange(n_stops)  # this gateway's place on the van's tour
        arrive = start + timedelta(minutes=at * rng.uniform(40, 90))
        coached = rng.random() < COACHED["elderly_recruit"]  # the helper decides for the whole group
        for _ in range(rng.randint(2, 7)):
            if self.kind == SIM:
                person = self._recruit(day, (65, 86), "elderly_recruit", region=rng.choice(RURAL), dealer=dealer,
                                       held=rng.choices((0, 1, 2), (25, 55, 20))[0])
            else:
                person = self._recruit(day, (65, 86), "elderly_recruit", region=rng.choice(RURAL), dealer=dealer,
                                       held=rng.choices((1, 2, 3), (50, 35, 15))[0])
            person.coached = coached if rng.random() < 0.9 else not coached

            def make(p: Person, d: date):
                if self.kind == SIM:
                    fields = self._fraud_fields(
                        p, d, accompanied=0.85, for_self_false=0.15, coached_accompanied=0.15,
                        purposes={"personal": 80, "family": 15, "other": 5},
                        coached_purposes={"personal": 85, "family": 15}, ctypes={"prepaid": 90, "postpaid": 10})
                    return fields, self._sim_request(p, ((1, 2), (70, 30)), ((1, 2, 3), (55, 38, 7)))
                fields = self._fraud_fields(
                    p, d, accompanied=0.85, for_self_false=0.15, coached_accompanied=0.15,
                    purposes={"other": 40, "business": 20, "savings": 40},
                    coached_purposes={"savings": 60, "pension": 40}, ctypes={"type_i": 80, "type_ii": 20})
                return fields, 1

            # the tour's other stops, before and after this gateway
            for stop in range(n_stops):
                if stop != at and rng.random() < FRAUD_GRANTED:
                    when = start + timedelta(minutes=stop * 65 + rng.uniform(0, 30))
                    person.gains.append((when, rng.randint(1, 2) if self.kind == SIM else 1))
            when = arrive + timedelta(minutes=rng.uniform(0, 45))
            if self._open(when) and when.date() == day:
                fields, requested = make(person, day)
                self._visit(when, person, "elderly_recruit", self._counter(), fields, requested=requested)
            if rng.random() < 0.20:
                self._runs(person, day + timedelta(days=rng.randint(7, 40)), 1, (1, 1), make, second=0.10,
                           stops=(2, 4))

    def _card_seller(self, day: date) -> None:
        rng = self.rng
        if self.kind == SIM:
            person = self._recruit(day, (20, 50) if rng.random() < 0.3 else (22, 38), "card_seller",
                                   held=rng.randint(2, 5))
        else:
            recent = rng.randint(0, 2)
            person = self._recruit(day, (20, 50) if rng.random() < 0.3 else (22, 38), "card_seller",
                                   held=rng.randint(2, 5) + recent, recent=recent)

        def make(p: Person, d: date):
            if self.kind == SIM:
                fields = self._fraud_fields(
                    p, d, accompanied=0.25, for_self_false=0.45, coached_accompanied=0.05,
                    purposes={"personal": 70, "business": 20, "other": 10}, coached_purposes={"personal": 100},
                    ctypes={"prepaid": 70, "postpaid": 20, "data_only": 10})
                return fields, self._sim_request(p, ((1, 2), (60, 40)), ((2, 3, 4, 5, 6), (30, 30, 20, 12, 8)))
            fields = self._fraud_fields(
                p, d, accompanied=0.25, for_self_false=0.40, coached_accompanied=0.05,
                purposes={"business": 35, "other": 25, "salary": 20, "savings": 20},
                coached_purposes={"salary": 50, "savings": 50}, ctypes={"type_i": 60, "type_ii": 40})
            return fields, 1

        self._runs(person, day, rng.randint(2, 6), (3, 30), make, second=0.30 if self.kind == SIM else 0.15,
                   elsewhere=(1, 3))

    def _escorted_recruit(self, day: date) -> None:
        rng = self.rng
        dealer = self._dealer()
        start = self._clock(day, 9.3, 11.5 if self.kind == ACCOUNT else 15)
        for _ in range(2 if rng.random() < 0.25 else 1):
            region = rng.choice(PROVINCES) if rng.random() < 0.6 else ""
            if self.kind == SIM:
                person = self._recruit(day, (20, 55), "escorted_recruit", region=region, dealer=dealer,
                                       held=rng.randint(1, 3))
            else:
                person = self._recruit(day, (20, 55), "escorted_recruit", region=region, dealer=dealer,
                                       held=rng.randint(1, 3), recent=rng.choices((0, 1), (75, 25))[0])

            def make(p: Person, d: date):
                if self.kind == SIM:
                    fields = self._fraud_fields(
                        p, d, accompanied=0.65, for_self_false=0.40, coached_accompanied=0.20,
                        purposes={"personal": 60, "business": 30, "other": 10}, coached_purposes={"personal": 100},
                        ctypes={"prepaid": 75, "postpaid": 20, "data_only": 5})
                    return fields, self._sim_request(p, ((1, 2), (70, 30)), ((1, 2, 3, 4), (30, 35, 25, 10)))
                fields = self._fraud_fields(
                    p, d, accompanied=0.65, for_self_false=0.40, coached_accompanied=0.20,
                    purposes={"business": 35, "salary": 30, "other": 25, "savings": 10},
                    coached_purposes={"salary": 60, "savings": 40}, ctypes={"type_i": 75, "type_ii": 25})
                return fields, 1

            runs = rng.choices((1, 2, 3), (50, 35, 15))[0]
            self._runs(person, day, runs, (2, 25), make, second=0.20 if self.kind == SIM else 0.10,
                       start=start + timedelta(minutes=rng.uniform(0, 10)))

    # -- the event ----------------------------------------------------------------------------

    def body(self, visit: Visit) -> dict:
        """The event as the terminal sends it, from the person's holdings at the time of the visit."""
        rng = self.rng
        p, f, when = visit.person, visit.fields, visit.when
        keep = lambda name: rng.random() >= OMIT[name]  # noqa: E731
        event = {"ts": when.isoformat(timespec="seconds"), "counter": visit.counter, "kind": self.kind,
                 "customer_id": p.customer_id}
        if f["phone"] is not None and keep("customer_phone"):
            event["customer_phone"] = f["phone"]
        if keep("customer_age"):
            event["customer_age"] = p.age_on(when.date())
        if self.kind == SIM:
            if keep("sims_held"):
                event["sims_held"] = p.held_at(when)
            event["sims_requested"] = visit.requested
        else:
            if keep("accounts_held"):
                event["accounts_held"] = p.held_at(when)
            if keep("accounts_opened_90d"):
                event["accounts_opened_90d"] = p.opened_since(when, 90)
        for name in ("for_self", "accompanied", "purpose"):
            if f[name] is not None and keep(name):
                event[name] = f[name]
        type_name = "number_type" if self.kind == SIM else "card_type"
        if f["type"] is not None and keep(type_name):
            event[type_name] = f["type"]
        if f["flags"]:
            event["teller_flags"] = list(f["flags"])
        if visit.granted:
            p.gains.append((when, visit.requested))
        return event


def _term(day: date) -> str:
    if day.month == 9 and day.day <= 21:
        return "autumn"
    if date(day.year, 2, 24) <= day <= date(day.year, 3, 10):
        return "spring"
    return ""


def _check(n_events, kind) -> None:
    if isinstance(n_events, bool) or not isinstance(n_events, int) or n_events < 0:
        raise ValueError(f"n_events must be a whole number of events >= 0, got {n_events!r}")
    if kind not in CARD_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CARD_KINDS)}, got {kind!r}")


def _visits(seed: int, n_events: int, kind: str) -> tuple[list[Visit], list[dict]]:
    _check(n_events, kind)
    world = _World(random.Random(f"independent-cards/{kind}/{seed}"), kind)
    visits: list[Visit] = []
    day = START
    while len(visits) < n_events:
        visits.extend(world.day(day))
        day += timedelta(days=1)
    visits.sort(key=lambda v: (v.when, v.seq))
    visits = visits[:n_events]
    prefix = "sim" if kind == SIM else "acc"
    bodies = [{"event_id": f"{prefix}{seed}-{i:06d}", **world.body(v)} for i, v in enumerate(visits)]
    return visits, bodies


def card_events(seed: int, n_events: int, kind: str) -> list[dict]:
    """The items of ``independent_cards`` without ``signals``: the events alone, for checking that the
    signals never change them."""
    visits, bodies = _visits(seed, n_events, kind)
    return [{"event": b, "label": int(v.typology in FRAUD), "typology": v.typology} for v, b in zip(visits, bodies)]


def independent_cards(seed: int, n_events: int, kind: str) -> list[dict]:
    """``n_events`` labelled card events of ``kind`` at one gateway, in time order, the same for the same seed."""
    visits, bodies = _visits(seed, n_events, kind)
    signals = _signals(seed, kind, visits)
    return [{"event": b, "label": int(v.typology in FRAUD), "typology": v.typology, "signals": s}
            for v, b, s in zip(visits, bodies, signals)]


def _signals(seed: int, kind: str, visits: list[Visit]) -> list[dict]:
    """The lists of persons at each visit, from a generator of their own (persons in order of first
    appearance), so the events are the same with or without them."""
    rng = random.Random(f"independent-cards/{kind}/{seed}/signals")
    if not visits:
        return []
    first_day, last_day = visits[0].when, visits[-1].when
    span = max(1.0, (last_day - first_day).total_seconds())
    windows: dict[int, tuple] = {}  # pid -> (warned from, until, restricted from)
    runs: dict[int, list[date]] = {}  # a card seller's run days seen here
    for v in visits:
        days = runs.setdefault(v.person.pid, [])
        if not days or days[-1] != v.when.date():
            days.append(v.when.date())
    out = []
    for v in visits:
        p = v.person
        if p.pid not in windows:
            windows[p.pid] = _person_lists(rng, p, v.when, first_day, span, runs[p.pid])
        warned_from, warned_until, restricted_from = windows[p.pid]
        out.append({"identity": True,
                    "warned": warned_from is not None and warned_from <= v.when < warned_until,
                    "restricted": restricted_from is not None and v.when >= restricted_from})
    return out


def _person_lists(rng: random.Random, p: Person, first: datetime, start: datetime, span: float, run_days: list):
    """When a person is on the warned list (from, until) and from when on the restricted list."""
    age = p.age_on(first.date())
    warned_from = warned_until = restricted_from = None
    if p.typology in FRAUD:
        if rng.random() < WARNED_FRAUD[p.typology]:
            warned_from = first + timedelta(days=rng.uniform(-20, 10))
            warned_until = warned_from + timedelta(days=rng.uniform(30, 120))
        if p.typology == "card_seller" and len(run_days) >= 2:
            r = rng.random()
            if r < RESTRICTED_SELLER[0]:
                restricted_from = first - timedelta(days=rng.uniform(30, 900))
            elif r < RESTRICTED_SELLER[0] + RESTRICTED_SELLER[1]:
                second = run_days[1]
                restricted_from = datetime(second.year, second.month, second.day, tzinfo=TZ) + timedelta(
                    days=rng.uniform(1, 10))
        elif rng.random() < RESTRICTED_RECRUIT:
            restricted_from = first - timedelta(days=rng.uniform(30, 900))
    else:
        # listed once in the set's time (and the 60 days before it) at the yearly rate
        if rng.random() < min(1.0, WARNED_HONEST[age >= 65] * (span / 86400 + 60) / 365):
            warned_from = start + timedelta(seconds=rng.uniform(-60 * 86400, span))
            warned_until = warned_from + timedelta(days=rng.uniform(15, 60))
        if rng.random() < RESTRICTED_HONEST:
            restricted_from = start - timedelta(days=rng.uniform(30, 1500))
    return warned_from, warned_until, restricted_from


# -- the summary ----------------------------------------------------------------------------------

def young_or_elderly(event: dict) -> bool:
    age = event.get("customer_age")
    return age is not None and (age < 22 or age >= 65)


SIGNS = {
    "for_self false": lambda e: e.get("for_self") is False,
    "accompanied true": lambda e: e.get("accompanied") is True,
    "young or elderly": young_or_elderly,
}


def summary(items: list[dict]) -> str:
    """Counts by typology, the fraud share, the shares of the plain signs and the lists of persons."""
    if not items:
        return "no events"
    n = len(items)
    counts = Counter(item["typology"] for item in items)
    fraud = [item for item in items if item["label"]]
    honest = [item for item in items if not item["label"]]
    days = (items[-1]["event"]["ts"][:10], items[0]["event"]["ts"][:10])
    share = lambda part, whole: f"{part / max(1, whole):.1%}"  # noqa: E731
    kind = items[0]["event"]["kind"]
    lines = [f"{'typology':<20} {'label':<6} {'events':>7} {'share':>7}"]
    for typology in TYPOLOGIES[kind]:
        label = "fraud" if typology in FRAUD else "honest"
        lines.append(f"{typology:<20} {label:<6} {counts[typology]:>7} {counts[typology] / n:>7.2%}")
    by_person = Counter(item["event"]["customer_id"] for item in fraud)
    repeat = [pid for pid, k in by_person.items() if k >= 2]
    honest_by_person = Counter(item["event"]["customer_id"] for item in honest)
    lines += [
        f"events {n} from {days[1]} to {days[0]}",
        f"fraud share {len(fraud) / n:.2%} ({len(fraud)} events, {len(by_person)} persons; "
        f"{len(repeat)} persons seen twice or more, {sum(by_person[p] for p in repeat)} events)",
        f"honest persons seen twice or more: {sum(1 for k in honest_by_person.values() if k >= 2)}",
        f"{'sign':<20} {'fraud':>7} {'honest':>7}",
    ]
    for name, has in SIGNS.items():
        lines.append(f"{name:<20} {share(sum(has(i['event']) for i in fraud), len(fraud)):>7} "
                     f"{share(sum(has(i['event']) for i in honest), len(honest)):>7}")
    if "signals" in items[0]:
        for name in ("warned", "restricted"):
            f = sum(i["signals"][name] for i in fraud)
            h = sum(i["signals"][name] for i in honest)
            lines.append(f"{name:<20} {share(f, len(fraud)):>7} {share(h, len(honest)):>7}  "
                         f"({f} fraud events, {h} honest events)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        seed = int(args[0]) if args else 11
        n_events = int(args[1]) if len(args) > 1 else 30_000
        if len(args) > 2 or n_events < 0:
            raise ValueError
    except ValueError:
        print("usage: python -m counterguard.models.independent_cards [SEED] [N_EVENTS]  "
              "(whole numbers, N_EVENTS >= 0)", file=sys.stderr)
        return 2
    for kind in CARD_KINDS:
        print(f"independent cards, {kind}, seed {seed}")
        print(summary(independent_cards(seed, n_events, kind)))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
