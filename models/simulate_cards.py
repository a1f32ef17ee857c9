"""A seeded simulator of the "two cards" counters: SIM cards at a carrier's outlet, accounts at a bank's desk.

Card dealers buy, rent or have opened for them the phone numbers and bank accounts that fraud runs
on (the "cut the cards" campaign, docs/typologies.md source 2; the People's Bank's limits on
accounts per person, source 4). This draws the card events a counter sees, labelled with the
typology behind each, in time order, for one kind at a time (``sim_activation`` or
``account_opening``, docs/events.md "Two cards"):

Honest (label 0)
    ``ordinary``        one card or account for themselves; all ages.
    ``family``          a parent buying numbers for children, or a child for an elderly parent:
                        not for themselves, often accompanied, two or three cards.
    ``business``        a small shop's SIM cards for its staff, or its business account: several
                        cards, not for the owner alone.
    ``iot_fleet``       (SIM cards) a fleet's or a factory's data cards: many at once, IoT numbers.
    ``student_term``    (accounts) a student opening a salary or student account at term start,
                        often a second one within 90 days.
    ``switcher``        someone who already holds several numbers or accounts, adding one more.

Fraud (label 1)
    ``recruited_student``  a student paid to open cards they hand over: young, often "accompanied"
                           by a recruiter who does the talking, several cards or accounts, often at
                           several counters the same day; coached recruits say the cards are their own.
    ``recruited_elderly``  an elderly person led in by a "helper": accompanied, not for themselves,
                           sometimes told to say they are.
    ``card_seller``        someone selling cards again and again: many cards already held, back on
                           later days; some already under "both cards restricted".

Each item also says what the lists of persons would tell the gateway (``signals``: the police's
warned list, the restricted list; identity is always sent for cards, which cannot be opened
without it), drawn with a generator of its own.

Usage::

    from counterguard.models.simulate_cards import simulate_cards
    items = simulate_cards(seed=7, n_events=30_000, kind="sim_activation")
    items[0]  # {"event": {...}, "label": 0, "typology": "ordinary", "signals": {...}}

All rates are assumptions (docs/typologies.md "Two cards"). Standard library only.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from counterguard.core.events import ACCOUNT_PURPOSES, CARD_KINDS
from counterguard.core.identity import resident_check_digit

CST = timezone(timedelta(hours=8))
START = date(2025, 9, 1)
FRAUD = ("recruited_student", "recruited_elderly", "card_seller")
HONEST = ("ordinary", "family", "business", "iot_fleet", "student_term", "switcher")
# Arrival mix per kind (relative weights); fraud about 3 % of events before repeat visits.
MIX = {
    "sim_activation": {"ordinary": 0.80, "family": 0.07, "business": 0.03, "iot_fleet": 0.015,
                       "switcher": 0.055, "recruited_student": 0.012, "recruited_elderly": 0.006,
                       "card_seller": 0.004},
    "account_opening": {"ordinary": 0.78, "family": 0.04, "business": 0.05, "student_term": 0.07,
                        "switcher": 0.04, "recruited_student": 0.012, "recruited_elderly": 0.006,
                        "card_seller": 0.004},
}
EVENTS_PER_DAY = 120.0
COUNTERS = 4
COACHED = 0.35  # share of recruits told to say the cards are their own and to come alone


@dataclass(frozen=True)
class CardWorld:
    """One outlet's habits; the defaults are the reference outlet above."""

    coached: float = COACHED  # recruits told to say the cards are their own and to come alone
    escorted: float = 0.65  # uncoached recruits "accompanied" by the recruiter
    prior_cards: int = 0  # cards a recruit already opened elsewhere on the dealer's round (up to)
    visits: int = 3  # counters a recruit is taken to here the same day (up to)
    fraud_rate: float = 1.0  # multiplier on every fraud typology's share
    lookalikes: float = 1.0  # multiplier on the honest look-alikes' shares (not ordinary)


def random_card_world(seed: int) -> CardWorld:
    """An outlet with its own habits, for training that cannot take one outlet's habits for signs."""
    rng = random.Random(seed)
    return CardWorld(coached=rng.uniform(0.1, 0.7), escorted=rng.uniform(0.3, 0.9), prior_cards=rng.randint(0, 8),
                     visits=rng.randint(1, 4), fraud_rate=math.exp(rng.uniform(math.log(0.4), math.log(2.5))),
                     lookalikes=math.exp(rng.uniform(math.log(1 / 3), math.log(3.0))))


@dataclass
class _Person:
    customer_id: str
    age: int
    held: int  # cards (SIM cards or accounts) already in their name
    seller_days: int = 0  # a card seller's remaining visits


def _resident_id(rng: random.Random, age: int, today: date) -> str:
    born = today - timedelta(days=int(age * 365.25) + rng.randrange(300))
    first17 = f"{rng.choice((110105, 310101, 440103, 510104, 610103))}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return first17 + resident_check_digit(first17)


class _Outlet:
    def __init__(self, rng: random.Random, kind: str, world: CardWorld):
        self.rng, self.kind, self.world = rng, kind, world
        self.sims = kind == "sim_activation"
        self.sellers: list[_Person] = []

    def person(self, age: int, held: int | None = None) -> _Person:
        rng = self.rng
        if held is None:
            held = rng.choice((0, 1, 1, 1, 2, 2, 3)) if self.sims else rng.choice((0, 1, 1, 2, 2, 3))
        return _Person(_resident_id(rng, age, START), age, held)

    def body(self, p: _Person, *, requested: int = 1, for_self: bool = True, accompanied: bool = False,
             purpose: str = "personal", number_type: str = "prepaid", opened_90d: int = 0,
             card_type: str = "type_i", flags=()) -> dict:
        body = {"kind": self.kind, "customer_id": p.customer_id, "customer_age": p.age,
                "for_self": for_self, "accompanied": accompanied}
        if self.sims:
            body.update(sims_held=p.held, sims_requested=requested, number_type=number_type,
                        purpose=purpose if purpose in ("personal", "family", "business", "iot", "other") else "other")
        else:
            body.update(accounts_held=p.held, accounts_opened_90d=opened_90d, card_type=card_type,
                        purpose=purpose if purpose in ACCOUNT_PURPOSES else "savings" if purpose == "personal" else "other")
        if flags:
            body["teller_flags"] = sorted(set(flags))
        p.held += requested
        return body

    def noise(self, p=0.02) -> list[str]:
        rng = self.rng
        return [f for f, q in (("customer_on_phone", p), ("urgent", p), ("anxious", p / 2)) if rng.random() < q]

    # --- honest -----------------------------------------------------------------------------------
    def ordinary(self) -> list[dict]:
        rng = self.rng
        p = self.person(rng.randint(18, 85))
        purpose = (rng.choice(("personal", "personal", "personal", "family", "other")) if self.sims
                   else rng.choice(("salary", "savings", "savings", "pension" if p.age >= 60 else "salary", "other")))
        return [self.body(p, purpose=purpose, number_type=rng.choice(("prepaid", "postpaid", "postpaid")),
                          accompanied=rng.random() < (0.25 if p.age >= 70 else 0.04),
                          card_type=rng.choice(("type_i", "type_i", "type_ii")), flags=self.noise())]

    def family(self) -> list[dict]:
        rng = self.rng
        parent = rng.random() < 0.6  # a parent for children, or a child for an elderly parent
        p = self.person(rng.randint(35, 55) if parent else rng.randint(25, 50))
        n = rng.choice((1, 2, 2, 3)) if self.sims else 1
        return [self.body(p, requested=n, for_self=False, accompanied=rng.random() < 0.5, purpose="family",
                          number_type=rng.choice(("prepaid", "postpaid")),
                          card_type=rng.choice(("type_i", "type_ii")), flags=self.noise())]

    def business(self) -> list[dict]:
        rng = self.rng
        p = self.person(rng.randint(25, 60), held=rng.randint(1, 6))
        n = rng.randint(2, 8) if self.sims else 1
        return [self.body(p, requested=n, for_self=rng.random() < 0.4, purpose="business",
                          number_type="postpaid", opened_90d=rng.choice((0, 0, 1)),
                          card_type=rng.choice(("type_i", "credit")), flags=self.noise(0.05))]

    def iot_fleet(self) -> list[dict]:
        rng = self.rng
        p = self.person(rng.randint(28, 60), held=rng.randint(2, 40))
        return [self.body(p, requested=rng.randint(5, 60), for_self=False, purpose="iot",
                          number_type=rng.choice(("iot", "iot", "data_only")), flags=self.noise())]

    def student_term(self) -> list[dict]:
        rng = self.rng
        p = self.person(rng.randint(18, 23), held=rng.choice((0, 1, 1, 2)))
        return [self.body(p, purpose=rng.choice(("student", "salary")), opened_90d=rng.choice((0, 0, 1, 1, 2)),
                          card_type=rng.choice(("type_i", "type_ii")), accompanied=rng.random() < 0.15,
                          flags=self.noise())]

    def switcher(self) -> list[dict]:
        rng = self.rng
        p = self.person(rng.randint(22, 65), held=rng.randint(3, 6))
        return [self.body(p, purpose=rng.choice(("personal", "business", "savings")) if self.sims
                          else rng.choice(("savings", "investment", "salary")),
                          number_type=rng.choice(("postpaid", "data_only")), opened_90d=rng.choice((0, 1, 1)),
                          card_type=rng.choice(("type_i", "type_ii", "credit")), flags=self.noise())]

    # --- fraud --------------------------------------------------------------------------------------
    def _recruit(self, p: _Person) -> list[dict]:
        rng = self.rng
        w = self.world
        coached = rng.random() < w.coached
        p.held += rng.randint(0, w.prior_cards)  # opened at other outlets earlier on the dealer's round
        visits = rng.randint(1, w.visits)  # the recruiter takes them round several counters
        out = []
        for _ in range(visits):
            requested = rng.randint(1, 4) if self.sims else 1
            out.append(self.body(
                p, requested=requested, for_self=coached or rng.random() < 0.3,
                accompanied=not coached and rng.random() < w.escorted,
                purpose=("personal" if coached else rng.choice(("personal", "family", "other"))) if self.sims
                else ("savings" if coached else rng.choice(("salary", "savings", "student", "other"))),
                number_type=rng.choice(("prepaid", "prepaid", "data_only")),
                opened_90d=rng.choice((0, 1, 2, 3)), card_type="type_i",
                flags=self.noise(0.02 if coached else 0.12)))
        return out

    def recruited_student(self) -> list[dict]:
        return self._recruit(self.person(self.rng.randint(18, 22), held=self.rng.choice((0, 1, 1, 2))))

    def recruited_elderly(self) -> list[dict]:
        return self._recruit(self.person(self.rng.randint(65, 85), held=self.rng.choice((0, 1, 1))))

    def card_seller(self) -> list[dict]:
        rng = self.rng
        if self.sellers and rng.random() < 0.6:  # an old hand back on another day
            p = rng.choice(self.sellers)
        else:
            p = self.person(rng.randint(19, 45), held=rng.randint(2, 9))
            self.sellers.append(p)
        return [self.body(p, requested=rng.randint(1, 3) if self.sims else 1, for_self=rng.random() < 0.6,
                          accompanied=rng.random() < 0.2, purpose=rng.choice(("personal", "business", "other"))
                          if self.sims else rng.choice(("business", "savings", "other")),
                          number_type=rng.choice(("prepaid", "data_only")), opened_90d=rng.randint(1, 5),
                          card_type=rng.choice(("type_i", "type_ii")), flags=self.noise(0.05))]


def simulate_cards(seed: int, n_events: int, kind: str, world: CardWorld | None = None) -> list[dict]:
    """``n_events`` labelled card events of ``kind`` in time order; the same seed gives the same list.
    ``world``: the outlet's habits (default the reference outlet; ``random_card_world`` draws others)."""
    if kind not in CARD_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CARD_KINDS)}, got {kind!r}")
    if isinstance(n_events, bool) or not isinstance(n_events, int) or n_events < 1:
        raise ValueError(f"n_events must be a positive whole number, got {n_events!r}")
    rng = random.Random(seed * 31 + (1 if kind == "sim_activation" else 2))
    world = world or CardWorld()
    outlet = _Outlet(rng, kind, world)
    mix = {name: w * (world.fraud_rate if name in FRAUD else 1.0 if name == "ordinary" else world.lookalikes)
           for name, w in MIX[kind].items()}
    names, weights = list(mix), list(mix.values())
    raw: list[tuple] = []
    day = START
    while len(raw) < n_events:
        for _ in range(max(1, int(rng.gauss(EVENTS_PER_DAY, 15)))):
            typology = rng.choices(names, weights)[0]
            at = 9 * 3600 + rng.uniform(0, 9 * 3600)
            for n, body in enumerate(getattr(outlet, typology)()):
                when = min(at + n * rng.uniform(900, 5400), 18 * 3600 - 1)
                raw.append((datetime(day.year, day.month, day.day, tzinfo=CST) + timedelta(seconds=int(when)),
                            len(raw), body, typology, rng.randint(1, COUNTERS)))
        day += timedelta(days=1)
    raw.sort(key=lambda r: (r[0], r[1]))
    signals = random.Random(seed * 7 + 99)
    restricted = {p.customer_id for p in outlet.sellers if signals.random() < 0.3}
    out = []
    for i, (ts, _, body, typology, counter) in enumerate(raw[:n_events]):
        fraud = typology in FRAUD
        event = {"event_id": f"card{seed}-{kind[:3]}-{i:06d}", "ts": ts.isoformat(timespec="seconds"),
                 "counter": counter, **body}
        warned = signals.random() < (0.08 if typology.startswith("recruited") else 0.002)
        out.append({"event": event, "label": int(fraud), "typology": typology,
                    "signals": {"identity": True, "warned": warned,
                                "restricted": body["customer_id"] in restricted or signals.random() < 0.0005}})
    return out


def summary(items: list[dict]) -> str:
    counts = Counter(item["typology"] for item in items)
    fraud = sum(item["label"] for item in items)
    lines = [f"{name:<18} {'fraud' if name in FRAUD else 'honest':<6} {counts.get(name, 0):>7}"
             for name in HONEST + FRAUD if counts.get(name)]
    lines.append(f"events {len(items)}, fraud {fraud} ({fraud / max(1, len(items)):.2%})")
    return "\n".join(lines)


def main(argv=None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    seed = int(args[0]) if args else 7
    n = int(args[1]) if len(args) > 1 else 30_000
    for kind in CARD_KINDS:
        print(f"{kind}, seed {seed}")
        print(summary(simulate_cards(seed, n, kind)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
