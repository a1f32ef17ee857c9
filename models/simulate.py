"""A seeded simulator of one branch's counter traffic, labelled with the fraud typology behind each event.

The first model is trained on this because real labelled counter events cannot leave the bank. It
produces schema-v1 event objects (docs/events.md) exactly as a teller terminal would send them, in
time order, from a population of customers who come back (so the 1 h / 24 h history features mean
something), with these typologies:

Legitimate (label 0)
    ``ordinary``            everyday withdrawals, salary-day cash, family transfers; all ages.
    ``business_cash``       shop and business owners taking out takings (large, many inbound transfers).
    ``house_purchase``      a deposit or full payment transferred out: large share of the balance.
    ``medical_bill``        hospital bills, often an elderly customer accompanied by family.
    ``elderly_family``      an elderly customer with a relative for a large gift, home or family need.
    ``own_investment``      customers moving their own savings to an investment or repaying a loan.
    ``trader_cash``         market and online traders on young accounts cashing out many small inbound
                            payments: the shape of a mule cash-out, for honest reasons.
    ``family_emergency``    an older customer on the phone with family about a real emergency: the
                            shape of a "safe account" victim, for honest reasons.

Fraud (label 1)
    ``safe_account``        elderly impersonation / "safe account" victims: large cash or transfer,
                            most of the balance, often on the phone, anxious or urgent.
    ``mule_cash_out``       "two cards" mule accounts: young, new account, many inbound transfers in
                            24 h, cashing nearly all out, often just under 50,000 yuan, repeat visits
                            at other counters.
    ``investment_scam``     investment and loan-fee scam victims transferring to "platforms".

Some mule accounts are already on the centre's stop-payment watchlist (``item["watchlisted"]``).

It is deliberately not separable: teller flags are noisy (some victims show no sign, some honest
customers are on the phone), some mules use rented accounts that are years old, some victims are
coached to give an ordinary purpose and stay calm, and legitimate large withdrawals share most of
the fraud signs. ``SHIFTED`` is a deliberately different branch (other amounts, age mix, more
coached victims, noisier flags) for judging a model on data it was not tuned on. Typologies are table entries (``TYPOLOGIES``) so a typology study can add
or reweight them without touching the rest.

Usage::

    from counterguard.models.simulate import simulate, SimConfig
    items = simulate(seed=7, n_events=60_000)
    items[0]  # {"event": {...schema v1...}, "label": 0, "typology": "ordinary"}
    branches = simulate_worlds(seed=7, worlds=60, n_events=300_000)  # 60 branches, each its own habits

``random_world(seed)`` draws one branch's habits (typology mix and fraud rate, amounts, teller-flag
and purpose habits, payee data, missing fields) from ``WORLD_RANGES``; a model trained across many
such branches (``python -m counterguard.models.train --worlds N``) cannot take one branch's habits
for signs of fraud.

Standard library only, so it runs in the training environment and on the gateway alike.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

CST = timezone(timedelta(hours=8))
LEGITIMATE = ("ordinary", "business_cash", "house_purchase", "medical_bill", "elderly_family", "own_investment",
              "trader_cash", "family_emergency")
FRAUD = ("safe_account", "mule_cash_out", "investment_scam")
TYPOLOGIES = LEGITIMATE + FRAUD


@dataclass(frozen=True)
class SimConfig:
    """Knobs of the simulated branch. Defaults give about 1.5 % fraud events."""

    start: date = date(2024, 3, 1)
    """First simulated branch day (the branch opens every day, 09:00-17:00, +08:00)."""
    events_per_day: float = 300.0
    """Mean events per branch day (Poisson); the number of days follows from ``n_events``."""
    counters: int = 4
    """Teller counters at the branch (event ``counter`` 1..counters)."""
    customers: int = 5000
    """Size of the returning customer population (mule accounts come on top)."""
    business_share: float = 0.04
    """Share of customers who are shop or business owners."""
    elderly_share: float = 0.30
    """Share of customers aged 60 or over (counter customers skew old)."""
    young_share: float = 0.20
    """Share of customers aged 18-29."""
    amount_scale: float = 1.0
    """Multiplier on balances and freely chosen amounts (not on draws pinned to the 50,000-yuan line)."""
    salary_days: tuple = (10, 25)
    """Days of the month when salaries arrive: more cash and family transfers then."""
    mix: dict = field(default_factory=lambda: {
        "ordinary": 0.920,
        "business_cash": 0.012,
        "house_purchase": 0.006,
        "medical_bill": 0.012,
        "elderly_family": 0.012,
        "own_investment": 0.015,
        "trader_cash": 0.004,
        "family_emergency": 0.004,
        "safe_account": 0.0062,
        "mule_cash_out": 0.0034,  # each mule visits 1-3 times, so mule events are about 0.6 %
        "investment_scam": 0.0040,
    })
    """Probability that a customer arrival belongs to each typology."""
    flag_noise: float = 1.0
    """Multiplier on how often honest customers show the teller's warning signs."""
    victim_silence: float = 0.2
    """Share of fraud victims who show no teller flag at all."""
    old_mule_share: float = 0.25
    """Share of mule accounts that are old, bought or rented accounts instead of new ones."""
    coached_share: float = 0.2
    """Share of scam victims coached to give an ordinary purpose and hide the signs (no purpose
    mismatch, rarely on the phone at the counter)."""
    watchlisted_mule_share: float = 0.3
    """Share of mule accounts the centre already has on its stop-payment watchlist."""
    missing: float = 0.05
    """Chance that each optional field (age, account age, balance, inbound, new payee) is not reported."""
    payee_age_known: float = 0.6
    """Share of transfers whose receiving account's age the terminal reports (payees at the same bank,
    or at banks sharing account data); the rest leave ``payee_account_age_days`` out."""
    honest_new_payee: float = 1.0
    """Multiplier on how often honest customers pay a new payee, and a young account among them."""
    flag_attention: float = 1.0
    """Multiplier on every teller flag, honest customers' and victims' alike: how readily this branch's
    tellers tick the boxes."""
    purpose_unrecorded: float = 0.0
    """Share of events whose purpose the teller leaves out (a busy counter, a terminal that does not ask)."""
    purpose_vague: float = 0.0
    """Share of recorded purposes entered as ``other`` instead of the customer's own words."""
    under_line_share: float = 0.45
    """Share of mule cash-outs kept just under the 50,000-yuan line."""
    amount_by_typology: dict = field(default_factory=dict)
    """Per-typology multiplier on freely chosen amounts, on top of ``amount_scale`` (1 where absent)."""
    identity_share: float = 0.8
    """Share of events whose terminal sends the customer's identity (schema v2), so the lists of persons
    can be checked at all."""
    warned_coverage: float = 0.4
    """Share of scam victims the police have warned (on the warned-persons list) before they come in."""
    warned_honest: float = 0.004
    """Share of honest customers on the warned-persons list: warned after a call they hung up on."""
    restricted_mule_share: float = 0.25
    """Share of mule account holders already under "both cards restricted"."""
    payee_listed_share: float = 0.2
    """Share of fraud transfers whose payee account is already on the stop-payment list."""
    coached_lie: float = 0.5
    """Chance that a coached victim hides each scam sign when asked the caring questions."""
    mule_lie: float = 0.7
    """Chance that a mule account holder hides each sign when asked."""
    coached_decline: float = 0.15
    """Chance that a coached victim declines each question."""
    honest_decline: float = 0.02
    """Chance that an honest customer declines each question."""

    def __post_init__(self):
        unknown = set(self.mix) - set(TYPOLOGIES)
        if unknown:
            raise ValueError(f"SimConfig.mix has unknown typologies {sorted(unknown)}; known: {', '.join(TYPOLOGIES)}")
        if not self.mix or sum(self.mix.values()) <= 0 or min(self.mix.values()) < 0:
            raise ValueError("SimConfig.mix needs non-negative weights with a positive sum")
        if not 1 <= self.counters <= 64:
            raise ValueError(f"SimConfig.counters must be 1..64, got {self.counters}")
        if self.events_per_day <= 0 or self.customers < 10:
            raise ValueError("SimConfig needs events_per_day > 0 and at least 10 customers")
        if self.honest_new_payee < 0:
            raise ValueError(f"SimConfig.honest_new_payee must not be negative, got {self.honest_new_payee}")
        if self.amount_scale <= 0:
            raise ValueError(f"SimConfig.amount_scale must be positive, got {self.amount_scale}")
        unknown = set(self.amount_by_typology) - set(TYPOLOGIES)
        if unknown:
            raise ValueError(f"SimConfig.amount_by_typology has unknown typologies {sorted(unknown)}")
        if self.flag_attention < 0 or min(self.amount_by_typology.values(), default=1.0) <= 0:
            raise ValueError("SimConfig.flag_attention must not be negative and amount_by_typology must be positive")
        for name in ("business_share", "elderly_share", "young_share", "victim_silence", "old_mule_share",
                     "missing", "coached_share", "watchlisted_mule_share", "payee_age_known",
                     "purpose_unrecorded", "purpose_vague", "under_line_share", "identity_share",
                     "warned_coverage", "warned_honest", "restricted_mule_share", "payee_listed_share",
                     "coached_lie", "mule_lie", "coached_decline", "honest_decline"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SimConfig.{name} must be a share between 0 and 1, got {getattr(self, name)}")
        if self.elderly_share + self.young_share > 1.0:
            raise ValueError("SimConfig.elderly_share + young_share must not exceed 1")


@dataclass
class _Customer:
    account: str
    age: int
    opened: date
    balance: float
    business: bool = False


class _Branch:
    """The simulation state: customers, mule accounts, the day's visits."""

    def __init__(self, rng: random.Random, cfg: SimConfig):
        self.rng = rng
        self.cfg = cfg
        self.serial = 0
        self.customers = [self._customer() for _ in range(cfg.customers)]
        self.elderly = [c for c in self.customers if c.age >= 60]
        self.working_age = [c for c in self.customers if 25 <= c.age <= 65]
        self.business = [c for c in self.customers if c.business]
        self.watchlisted: set[str] = set()
        self.amount_factor = 1.0  # the current typology's amount_by_typology
        self.coached_now = False  # the current arrival's victim was coached

    # --- population -------------------------------------------------------------------------------
    def new_account(self) -> str:
        self.serial += 1
        return f"6222{self.rng.randrange(10 ** 8):08d}{self.serial:07d}"

    def _customer(self) -> _Customer:
        rng, cfg = self.rng, self.cfg
        r = rng.random()
        if r < cfg.elderly_share:
            age = rng.randint(60, 90)
        elif r < cfg.elderly_share + cfg.young_share:
            age = rng.randint(18, 29)
        else:
            age = rng.randint(30, 59)
        business = 28 <= age <= 65 and rng.random() < cfg.business_share / 0.6
        years = rng.uniform(0.3, max(0.5, min(age - 16, 30)))
        opened = cfg.start - timedelta(days=int(years * 365))
        median = 80_000 if age >= 60 else 25_000 if age < 30 else 50_000
        balance = median * cfg.amount_scale * math.exp(rng.gauss(0, 1.0))
        if business:
            balance = 400_000 * cfg.amount_scale * math.exp(rng.gauss(0, 0.8))
        return _Customer(self.new_account(), age, opened, round(balance, 2), business)

    # --- helpers ------------------------------------------------------------------------------------
    def flags(self, **p: float) -> list[str]:
        attention = self.cfg.flag_attention
        return [name for name, chance in p.items() if self.rng.random() < chance * attention]

    def honest_flags(self, elderly: bool) -> list[str]:
        n = self.cfg.flag_noise
        return self.flags(customer_on_phone=0.05 * n, accompanied=(0.15 if elderly else 0.02) * n,
                          anxious=0.02 * n, urgent=0.04 * n, declared_purpose_mismatch=0.01 * n)

    def victim_flags(self, **p: float) -> list[str]:
        return [] if self.rng.random() < self.cfg.victim_silence else self.flags(**p)

    def coached(self) -> bool:
        """Scammers rehearse the counter with their victims: an ordinary purpose, no phone call."""
        coached = self.rng.random() < self.cfg.coached_share
        self.coached_now = self.coached_now or coached  # kept on the items for the signals and the study
        return coached

    def honest_payee(self, new: float, young: float = 0.08) -> tuple[bool, int]:
        """(first transfer to this payee?, payee account age in days) for an honest transfer.

        Honest payees are mostly long-standing accounts (relatives, hospitals, developers, funds),
        but people do pay new people, and a relative may have just opened an account.
        """
        rng, n = self.rng, self.cfg.honest_new_payee
        is_new = rng.random() < min(1.0, new * n)
        if rng.random() < min(1.0, young * n):
            return is_new, rng.randint(3, 180)
        return is_new, int(365 * math.exp(rng.uniform(0.0, math.log(30))))

    def fraud_payee(self, new: float = 0.95) -> tuple[bool, int]:
        """The fraudster's receiving account: a mule's, mostly freshly opened, some rented and years old."""
        rng = self.rng
        is_new = rng.random() < new
        if rng.random() < self.cfg.old_mule_share:
            return is_new, rng.randint(400, 4000)
        return is_new, rng.randint(2, 120)

    def pick(self, table: dict):
        r = self.rng.random() * sum(table.values())
        for key, weight in table.items():
            r -= weight
            if r < 0:
                return key
        return key

    def money(self, lo: float, hi: float, step: float = 100.0) -> float:
        """A log-uniform amount (times ``amount_scale``) rounded the way people ask for cash."""
        value = math.exp(self.rng.uniform(math.log(lo), math.log(hi))) * self.cfg.amount_scale * self.amount_factor
        return float(max(step, round(value / step) * step))

    def under_line(self) -> float:
        """An amount kept just under the 50,000-yuan line; the line does not move with amount_scale."""
        return float(round(self.rng.uniform(45_000, 49_900), -2))

    def body(self, c: _Customer | None, day: date, kind: str, amount: float, *, account: str | None = None,
             age: int | None = None, account_age: int | None = None, balance: float | None = None,
             inbound: tuple[float, int] | None = None, flags=(), purpose: str | None = None,
             payee: tuple[bool, int] | None = None) -> dict:
        """A schema-v1 event, with optional fields dropped at the configured rate."""
        rng, miss = self.rng, self.cfg.missing
        if c is not None:
            account = account or c.account
            age = c.age if age is None else age
            account_age = (day - c.opened).days if account_age is None else account_age
            balance = c.balance * math.exp(rng.gauss(0, 0.15)) if balance is None else balance
        balance = round(max(balance, amount), 2)
        if inbound is None:
            inbound = (0.0, 0) if rng.random() < 0.8 else (self.money(500, 20_000), rng.randint(1, 3))
        event = {"kind": kind, "account": account, "amount": float(amount)}
        if rng.random() >= miss:
            event["customer_age"] = int(age)
        if rng.random() >= miss:
            event["account_age_days"] = max(0, int(account_age))
        if rng.random() >= miss:
            event["balance_before"] = balance
        if rng.random() >= miss * 3:  # older terminals often do not report inbound transfers
            event["inbound_24h"] = round(inbound[0], 2)
            event["inbound_count_24h"] = int(inbound[1])
        if kind == "transfer_out":
            new, payee_age = payee if payee is not None else self.honest_payee(0.1)
            if rng.random() >= miss:
                event["payee_new"] = bool(new)
            if rng.random() < self.cfg.payee_age_known:
                event["payee_account_age_days"] = int(payee_age)
        if flags:
            event["teller_flags"] = sorted(set(flags))
        if purpose is not None and self.cfg.purpose_unrecorded and rng.random() < self.cfg.purpose_unrecorded:
            purpose = None
        if purpose is not None and self.cfg.purpose_vague and rng.random() < self.cfg.purpose_vague:
            purpose = "other"
        if purpose is not None:
            event["purpose"] = purpose
        return event

    # --- legitimate typologies ----------------------------------------------------------------------
    def ordinary(self, day: date) -> list[dict]:
        rng = self.rng
        c = rng.choice(self.customers)
        salary = day.day in self.cfg.salary_days
        elderly = c.age >= 60
        if rng.random() < (0.30 if salary else 0.18):
            amount = self.money(300, 12_000)
            purpose = self.pick({"transfer_to_relative": 0.55, "education": 0.1, "home": 0.1, "gift": 0.1,
                                 "other": 0.1, "loan_repayment": 0.05})
            kind = "transfer_out"
        else:
            amount = self.money(100, 6_000) if rng.random() < 0.9 else self.money(5_000, 30_000)
            if salary:
                amount = min(amount * 1.5, 60_000)
            purpose = self.pick({"daily": 0.45, "shopping": 0.15, "medical": 0.07, "education": 0.05,
                                 "travel": 0.05, "gift": 0.05, "other": 0.08, None: 0.10})
            kind = "cash_withdrawal"
        balance = c.balance * math.exp(rng.gauss(0, 0.15))
        return [self.body(c, day, kind, round(amount, -2) or 100.0, balance=balance,
                          flags=self.honest_flags(elderly), purpose=purpose)]

    def business_cash(self, day: date) -> list[dict]:
        rng = self.rng
        c = rng.choice(self.business) if self.business else rng.choice(self.customers)
        takings = self.money(20_000, 250_000)
        count = rng.randint(8, 80)
        # Some owners keep under the 50,000-yuan line to avoid the paperwork, like mules do.
        amount = self.under_line() if rng.random() < 0.2 else min(takings * rng.uniform(0.3, 1.0), 200_000)
        out = [self.body(c, day, "cash_withdrawal", round(amount, -2), inbound=(takings, count),
                         flags=self.honest_flags(False) + self.flags(urgent=0.1, customer_on_phone=0.1),
                         purpose=self.pick({"business": 0.8, "other": 0.1, None: 0.1}))]
        if rng.random() < 0.15:  # back for more later the same day
            out.append(self.body(c, day, "cash_withdrawal", self.money(5_000, 49_000), inbound=(takings, count),
                                 purpose="business"))
        return out

    def house_purchase(self, day: date) -> list[dict]:
        c = self.rng.choice(self.working_age)
        amount = self.money(80_000, 900_000, 1000)
        balance = amount / self.rng.uniform(0.55, 1.0)
        # the seller's or developer's account: new to the buyer, sometimes an escrow account opened for the sale
        return [self.body(c, day, "transfer_out", amount, balance=balance, payee=self.honest_payee(0.85, 0.12),
                          flags=self.honest_flags(False) + self.flags(urgent=0.2, anxious=0.05, customer_on_phone=0.1),
                          purpose=self.pick({"home": 0.85, "other": 0.1, None: 0.05}))]

    def medical_bill(self, day: date) -> list[dict]:
        rng = self.rng
        c = rng.choice(self.elderly if rng.random() < 0.6 else self.customers)
        amount = self.money(8_000, 100_000)
        balance = amount / rng.uniform(0.2, 1.0)
        elderly = c.age >= 60
        flags = self.honest_flags(elderly) + self.flags(accompanied=0.5 if elderly else 0.2, anxious=0.2,
                                                         urgent=0.25, customer_on_phone=0.1)
        kind = "cash_withdrawal" if rng.random() < 0.6 else "transfer_out"
        return [self.body(c, day, kind, amount, balance=balance, flags=flags, payee=self.honest_payee(0.6, 0.03),
                          purpose=self.pick({"medical": 0.85, "other": 0.1, None: 0.05}))]

    def elderly_family(self, day: date) -> list[dict]:
        rng = self.rng
        c = rng.choice(self.elderly)
        amount = self.money(20_000, 150_000)
        balance = amount / rng.uniform(0.3, 0.95)
        flags = self.flags(accompanied=0.8, customer_on_phone=0.1, urgent=0.05)
        kind = "cash_withdrawal" if rng.random() < 0.6 else "transfer_out"
        return [self.body(c, day, kind, amount, balance=balance, flags=flags, payee=self.honest_payee(0.3, 0.1),
                          purpose=self.pick({"home": 0.3, "gift": 0.2, "transfer_to_relative": 0.3,
                                             "education": 0.1, None: 0.1}))]

    def own_investment(self, day: date) -> list[dict]:
        rng = self.rng
        c = rng.choice(self.working_age + self.elderly[: len(self.elderly) // 3])
        purpose = self.pick({"investment": 0.6, "loan_repayment": 0.4})
        amount = self.money(10_000, 300_000) if purpose == "investment" else self.money(2_000, 40_000)
        balance = amount / rng.uniform(0.1, 0.7)
        # a new fund or wealth product is a new payee, but a long-standing institution's account
        payee = self.honest_payee(0.45 if purpose == "investment" else 0.15, 0.03)
        return [self.body(c, day, "transfer_out", amount, balance=balance, payee=payee,
                          flags=self.honest_flags(c.age >= 60), purpose=purpose)]

    def trader_cash(self, day: date) -> list[dict]:
        """A stallholder or online seller on a young account: dozens of small payments in, cash out."""
        rng = self.rng
        c = rng.choice(self.working_age)
        account_age = rng.randint(20, 360)
        count = rng.randint(10, 120)
        inbound = count * self.money(150, 900, 10)
        amount = self.under_line() if inbound > 50_000 and rng.random() < 0.3 else round(inbound * rng.uniform(0.6, 1.0), -2)
        amount = max(amount, 1_000.0)
        flags = self.honest_flags(False) + self.flags(customer_on_phone=0.15, urgent=0.15)
        return [self.body(c, day, "cash_withdrawal", amount, age=min(c.age, 55), account_age=account_age,
                          balance=inbound * rng.uniform(1.0, 1.3), inbound=(inbound, count), flags=flags,
                          purpose=self.pick({"business": 0.6, "daily": 0.15, "other": 0.1, None: 0.15}))]

    def family_emergency(self, day: date) -> list[dict]:
        """An older customer on the phone with a son or daughter about a real accident or illness."""
        rng = self.rng
        c = rng.choice(self.elderly)
        balance = c.balance * math.exp(rng.gauss(0, 0.1))
        amount = max(5_000.0, round(balance * rng.uniform(0.2, 0.9), -2))
        flags = self.flags(customer_on_phone=0.75, urgent=0.5, anxious=0.35, accompanied=0.2,
                           declared_purpose_mismatch=0.03)
        kind = "cash_withdrawal" if rng.random() < 0.5 else "transfer_out"
        # a hospital, or a relative's friend's account: often new, seldom a young account
        return [self.body(c, day, kind, amount, balance=balance, flags=flags, payee=self.honest_payee(0.5, 0.15),
                          purpose=self.pick({"medical": 0.45, "transfer_to_relative": 0.35, "other": 0.1, None: 0.1}))]

    # --- fraud typologies ---------------------------------------------------------------------------
    def safe_account(self, day: date) -> list[dict]:
        rng = self.rng
        c = rng.choice(self.elderly)
        balance = c.balance * math.exp(rng.gauss(0, 0.1))
        share = rng.uniform(0.5, 1.0) if rng.random() < 0.75 else rng.uniform(0.2, 0.5)
        amount = max(10_000.0, round(balance * share, -2))
        kind = "cash_withdrawal" if rng.random() < 0.6 else "transfer_out"
        if self.coached():  # told to say it is for the family or the house, and to hang up first
            purpose = self.pick({"home": 0.35, "transfer_to_relative": 0.3, "medical": 0.2, "daily": 0.15})
            flags = self.victim_flags(anxious=0.15, urgent=0.2)
        else:
            purpose = self.pick({"home": 0.2, "medical": 0.15, "transfer_to_relative": 0.15, "other": 0.2,
                                 "daily": 0.1, "gift": 0.05, None: 0.15})
            flags = self.victim_flags(customer_on_phone=0.5, anxious=0.35, urgent=0.45,
                                      declared_purpose_mismatch=0.3, accompanied=0.05)
        # the "safe account" is a mule's; a second transfer the same day goes to the same one
        payee = self.fraud_payee(0.95)
        out = [self.body(c, day, kind, amount, balance=balance, flags=flags, purpose=purpose, payee=payee)]
        if rng.random() < 0.15 and balance - amount > 5_000:  # comes back for the rest
            rest = round(balance - amount, -2)
            again = (payee[0] and kind != "transfer_out", payee[1])
            out.append(self.body(c, day, "transfer_out", rest, balance=balance - amount, flags=flags, purpose=purpose,
                                 payee=again))
        return out

    def mule_cash_out(self, day: date) -> list[dict]:
        rng = self.rng
        old = rng.random() < self.cfg.old_mule_share
        account = self.new_account()
        if rng.random() < self.cfg.watchlisted_mule_share:
            self.watchlisted.add(account)
        age = rng.randint(18, 30) if rng.random() < 0.8 else rng.randint(31, 50)
        account_age = rng.randint(400, 4000) if old else rng.randint(3, 120)
        out = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            inbound = self.money(15_000, 200_000)
            count = rng.randint(4, 40)
            if rng.random() < self.cfg.under_line_share:
                amount = self.under_line()
                inbound = max(inbound, amount / rng.uniform(0.85, 1.0))
            else:
                amount = round(inbound * rng.uniform(0.85, 1.0), -2)
            kind = "cash_withdrawal" if rng.random() < 0.8 else "transfer_out"
            flags = self.flags(customer_on_phone=0.2, urgent=0.15, accompanied=0.15, anxious=0.05)
            out.append(self.body(None, day, kind, amount, account=account, age=age, account_age=account_age,
                                 balance=inbound * rng.uniform(1.0, 1.05), inbound=(inbound, count), flags=flags,
                                 payee=self.fraud_payee(0.7),
                                 purpose=self.pick({"daily": 0.3, "business": 0.25, "other": 0.2, None: 0.25})))
        return out

    def investment_scam(self, day: date) -> list[dict]:
        rng = self.rng
        c = rng.choice(self.working_age)
        amount = self.money(5_000, 150_000)
        balance = amount / rng.uniform(0.3, 1.0)
        kind = "transfer_out" if rng.random() < 0.85 else "cash_withdrawal"
        if self.coached():  # "say it is for your son's school fees"
            purpose = self.pick({"transfer_to_relative": 0.4, "education": 0.2, "home": 0.2, "other": 0.2})
            flags = self.victim_flags(urgent=0.15, anxious=0.1)
        else:
            purpose = self.pick({"investment": 0.5, "loan_repayment": 0.3, "other": 0.1, None: 0.1})
            flags = self.victim_flags(customer_on_phone=0.3, urgent=0.3, anxious=0.2, declared_purpose_mismatch=0.15)
        # victims are often made to pay again to the same "platform" account (fees, taxes, unlocking)
        return [self.body(c, day, kind, amount, balance=balance, flags=flags, purpose=purpose,
                          payee=self.fraud_payee(0.7))]


def simulate(seed: int, n_events: int, *, config: SimConfig | None = None) -> list[dict]:
    """``n_events`` labelled events in time order:
    ``{"event": dict, "label": 0|1, "typology": str, "watchlisted": bool}``.

    The same seed and config always give the same list.
    """
    if isinstance(n_events, bool) or not isinstance(n_events, int) or n_events < 1:
        raise ValueError(f"n_events must be a positive whole number, got {n_events!r}")
    cfg = config or SimConfig()
    rng = random.Random(seed)
    branch = _Branch(rng, cfg)
    makers = {name: getattr(branch, name) for name in TYPOLOGIES}
    opening = 9 * 3600
    items: list[tuple[datetime, int, dict, str]] = []
    day = cfg.start
    while len(items) < n_events:
        arrivals = _poisson(rng, cfg.events_per_day)
        for _ in range(arrivals):
            typology = branch.pick(cfg.mix)
            branch.amount_factor = cfg.amount_by_typology.get(typology, 1.0)
            branch.coached_now = False
            first = opening + rng.uniform(0, 8 * 3600 - 600)
            visit_at = first
            for n, event in enumerate(makers[typology](day)):
                event["coached"] = branch.coached_now
                if n:  # a later visit the same day, at another counter more often than not
                    visit_at = min(visit_at + rng.uniform(600, 3 * 3600), opening + 8 * 3600 - 1)
                ts = datetime(day.year, day.month, day.day, tzinfo=CST) + timedelta(seconds=int(visit_at))
                event["counter"] = rng.randint(1, cfg.counters)
                items.append((ts, len(items), event, typology))
        day += timedelta(days=1)
    items.sort(key=lambda item: (item[0], item[1]))
    out = []
    for i, (ts, _, event, typology) in enumerate(items[:n_events]):
        body = {"event_id": f"sim{seed}-{i:07d}", "ts": ts.isoformat(timespec="seconds"), "counter": event.pop("counter")}
        coached = event.pop("coached")
        body.update(event)
        out.append({"event": body, "label": 1 if typology in FRAUD else 0, "typology": typology,
                    "watchlisted": body["account"] in branch.watchlisted, "coached": coached and typology in FRAUD})
    counter_signals(out, seed, cfg)
    return out


# --- what the counter knows beyond the transaction ---------------------------------------------------
# P(yes) of each caring-question signal when the customer answers truthfully (core/dialogue.py SIGNALS;
# knows_payee_in_person is asked on transfers only). Honest customers say "yes" for honest reasons: a
# son on the phone about a real accident, a parent paying for a child, a fund that promises returns,
# a hospital or developer nobody has met.
TRUTHFUL_YES = {
    # typology:           caller, knows payee, returns, crime, secret, for someone
    "ordinary":           (0.02, 0.85, 0.01, 0.00, 0.00, 0.08),
    "business_cash":      (0.05, 0.90, 0.02, 0.00, 0.00, 0.10),
    "house_purchase":     (0.05, 0.35, 0.02, 0.00, 0.01, 0.10),
    "medical_bill":       (0.10, 0.30, 0.00, 0.00, 0.00, 0.35),
    "elderly_family":     (0.10, 0.90, 0.01, 0.00, 0.01, 0.50),
    "own_investment":     (0.05, 0.30, 0.35, 0.00, 0.00, 0.05),
    "trader_cash":        (0.05, 0.80, 0.02, 0.00, 0.00, 0.10),
    "family_emergency":   (0.70, 0.50, 0.00, 0.00, 0.03, 0.40),
    "safe_account":       (0.90, 0.05, 0.10, 0.80, 0.75, 0.10),
    "investment_scam":    (0.60, 0.10, 0.90, 0.02, 0.40, 0.05),
    "mule_cash_out":      (0.30, 0.10, 0.30, 0.00, 0.50, 0.60),
}
SIGNAL_ORDER = ("told_to_by_caller", "knows_payee_in_person", "promised_returns", "told_account_in_crime",
                "told_to_keep_secret", "buying_for_someone")
# A scam sign is "yes", except knowing the payee in person, where it is "no".
_REASSURING = {"knows_payee_in_person": "yes"}


def _answers(rng: random.Random, typology: str, transfer: bool, *, lie: float, decline: float) -> dict:
    """What one customer would answer if asked: truthful draws, then lies (a scam sign hidden) and refusals."""
    out = {}
    for signal, p_yes in zip(SIGNAL_ORDER, TRUTHFUL_YES[typology]):
        if signal == "knows_payee_in_person" and not transfer:
            continue
        answer = "yes" if rng.random() < p_yes else "no"
        reassuring = _REASSURING.get(signal, "no")
        if answer != reassuring and rng.random() < lie:
            answer = reassuring
        if rng.random() < decline:
            answer = "declined"
        out[signal] = answer
    return out


def counter_signals(items: list[dict], seed: int, cfg: SimConfig) -> None:
    """Add ``item["signals"]`` to each item: what the lists of persons and the caring dialogue would say.

    ``{"identity": bool, "warned": bool, "restricted": bool, "payee_listed": bool, "answers": {...}}``:
    whether the terminal sent the customer's identity (without it no list of persons can be checked),
    whether the customer is on the police's warned-persons list or under "both cards restricted",
    whether a transfer's payee account is on the stop-payment list, and the answers the customer
    would give if the teller asked the caring questions (the evaluation decides who is asked). The
    draws use their own generator, so the events themselves are the same with or without signals.
    """
    rng = random.Random(seed * 1_000_003 + 424_242)
    warned: dict[tuple, bool] = {}
    restricted: dict[str, bool] = {}
    for item in items:
        event, typology = item["event"], item["typology"]
        account, fraud = event["account"], item["label"] == 1
        transfer = event["kind"] == "transfer_out"
        identity = rng.random() < cfg.identity_share
        role = "victim" if typology in ("safe_account", "investment_scam") else "mule" if typology == "mule_cash_out" else "honest"
        if (account, role) not in warned:  # one list entry a person and role, for all that person's visits
            warned[(account, role)] = rng.random() < (cfg.warned_coverage if role == "victim" else
                                                      cfg.warned_honest if role == "honest" else 0.0)
        if account not in restricted:
            restricted[account] = rng.random() < (cfg.restricted_mule_share if role == "mule" else 0.0)
        coached = item.get("coached", False)
        lie = cfg.coached_lie if coached else cfg.mule_lie if role == "mule" else 0.1 if fraud else 0.0
        decline = (cfg.coached_decline if coached else 0.2 if role == "mule" else 0.05 if fraud else
                   cfg.honest_decline)
        item["signals"] = {
            "identity": identity,
            "warned": identity and warned[(account, role)],
            "restricted": identity and restricted[account],
            "payee_listed": transfer and rng.random() < (cfg.payee_listed_share if fraud else 0.0005),
            "answers": _answers(rng, typology, transfer, lie=lie, decline=decline),
        }


# A branch unlike the training one, for judging a model on data it was not tuned on: an older
# clientele, a third more money, half the victims coached, more silent victims, more rented mule
# accounts, noisier teller flags, more honest look-alikes, and another season.
SHIFTED = SimConfig(
    start=date(2025, 10, 6), events_per_day=260.0, customers=6000, elderly_share=0.40, young_share=0.15,
    amount_scale=1.35, flag_noise=1.5, victim_silence=0.3, old_mule_share=0.4, coached_share=0.5,
    missing=0.08, watchlisted_mule_share=0.2, payee_age_known=0.45, honest_new_payee=1.4,
    mix={"ordinary": 0.905, "business_cash": 0.012, "house_purchase": 0.008, "medical_bill": 0.015,
         "elderly_family": 0.015, "own_investment": 0.012, "trader_cash": 0.006, "family_emergency": 0.006,
         "safe_account": 0.0075, "mule_cash_out": 0.0030, "investment_scam": 0.0035})
SHIFTED_SEEDS = (1009, 2027, 4093)
"""Seeds for the shifted set; the training seed (7) is not among them."""


# --- many branches instead of one ---------------------------------------------------------------------
# A model that learns one simulated branch learns that branch's habits too: its amounts, how often its
# tellers tick a box, how often its customers name a purpose, how much of its traffic is fraud. A real
# branch has habits of its own. Training across many branches, each drawing its own habits from the
# ranges below, leaves the model only what holds in all of them. The ranges are assumptions, wide on
# purpose, around the reference branch (``SimConfig()``) and ``SHIFTED``.
WORLD_RANGES = {
    "events_per_day": (150.0, 400.0),
    "counters": (2, 6),
    "customers": (2000, 8000),
    "business_share": (0.02, 0.08),
    "elderly_share": (0.15, 0.50),
    "young_share": (0.10, 0.30),
    "amount_scale": (0.5, 2.0),            # log-uniform
    "amount_by_typology": (0.5, 2.0),      # log-uniform, each typology on its own
    "lookalike_weight": (1 / 3, 3.0),      # log-uniform, each honest look-alike on its own
    "fraud_weight": (1 / 3, 3.0),          # log-uniform, each fraud typology on its own
    "fraud_rate": (0.4, 2.5),              # log-uniform multiplier on all fraud at once
    "flag_noise": (0.5, 2.5),              # log-uniform
    "flag_attention": (0.4, 1.3),
    "victim_silence": (0.1, 0.5),
    "old_mule_share": (0.1, 0.6),
    "coached_share": (0.1, 0.6),
    "watchlisted_mule_share": (0.0, 0.4),
    "missing": (0.0, 0.2),
    "payee_age_known": (0.2, 0.9),
    "honest_new_payee": (0.6, 2.0),        # log-uniform
    "purpose_unrecorded": (0.0, 0.4),
    "purpose_vague": (0.0, 0.3),
    "under_line_share": (0.15, 0.7),
    "identity_share": (0.3, 1.0),
    "warned_coverage": (0.1, 0.7),
    "warned_honest": (0.001, 0.02),        # log-uniform
    "restricted_mule_share": (0.0, 0.5),
    "payee_listed_share": (0.0, 0.4),
    "coached_lie": (0.2, 0.8),
    "mule_lie": (0.4, 0.9),
    "coached_decline": (0.05, 0.3),
    "honest_decline": (0.0, 0.08),
}
LOOKALIKES = tuple(name for name in LEGITIMATE if name != "ordinary")


def random_world(seed: int) -> SimConfig:
    """One branch with its own habits drawn from ``WORLD_RANGES``; the same seed gives the same branch."""
    rng = random.Random(seed)
    r = WORLD_RANGES

    def uniform(name):
        return rng.uniform(*r[name])

    def log_uniform(name):
        lo, hi = r[name]
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))

    reference = SimConfig()
    fraud_rate = log_uniform("fraud_rate")
    mix = {"ordinary": reference.mix["ordinary"]}
    mix.update({name: reference.mix[name] * log_uniform("lookalike_weight") for name in LOOKALIKES})
    mix.update({name: reference.mix[name] * log_uniform("fraud_weight") * fraud_rate for name in FRAUD})
    elderly = uniform("elderly_share")
    salary = tuple(sorted(rng.sample(range(1, 29), rng.randint(1, 3))))
    return SimConfig(
        start=date(2023, 1, 2) + timedelta(days=rng.randrange(3 * 365)),
        events_per_day=uniform("events_per_day"),
        counters=rng.randint(*r["counters"]),
        customers=rng.randint(*r["customers"]),
        business_share=uniform("business_share"),
        elderly_share=elderly,
        young_share=min(uniform("young_share"), 1.0 - elderly),
        amount_scale=log_uniform("amount_scale"),
        salary_days=salary,
        mix=mix,
        flag_noise=log_uniform("flag_noise"),
        victim_silence=uniform("victim_silence"),
        old_mule_share=uniform("old_mule_share"),
        coached_share=uniform("coached_share"),
        watchlisted_mule_share=uniform("watchlisted_mule_share"),
        missing=uniform("missing"),
        payee_age_known=uniform("payee_age_known"),
        honest_new_payee=log_uniform("honest_new_payee"),
        flag_attention=uniform("flag_attention"),
        purpose_unrecorded=uniform("purpose_unrecorded"),
        purpose_vague=uniform("purpose_vague"),
        under_line_share=uniform("under_line_share"),
        amount_by_typology={name: log_uniform("amount_by_typology") for name in TYPOLOGIES},
        # Drawn after the others, so each world's earlier habits stay what they were.
        identity_share=uniform("identity_share"),
        warned_coverage=uniform("warned_coverage"),
        warned_honest=log_uniform("warned_honest"),
        restricted_mule_share=uniform("restricted_mule_share"),
        payee_listed_share=uniform("payee_listed_share"),
        coached_lie=uniform("coached_lie"),
        mule_lie=uniform("mule_lie"),
        coached_decline=uniform("coached_decline"),
        honest_decline=uniform("honest_decline"),
    )


def world_seeds(seed: int, worlds: int) -> list[int]:
    """The seeds of ``worlds`` branches drawn for training seed ``seed`` (none of them a ``SHIFTED_SEEDS``)."""
    candidates = (seed * 10_000 + 100 + w for w in range(worlds + len(SHIFTED_SEEDS)))
    return [s for s in candidates if s not in SHIFTED_SEEDS][:worlds]


def simulate_worlds(seed: int, worlds: int, n_events: int) -> list[tuple[str, list[dict]]]:
    """``(name, items)`` for ``worlds`` randomized branches sharing ``n_events`` between them.

    Each branch is its own population and its own time line (replay each on its own: accounts and
    histories do not cross branches); event ids carry the branch's seed, so they stay unique.
    """
    if worlds < 1 or n_events < worlds:
        raise ValueError(f"need at least one world and one event per world, got {worlds} worlds, {n_events} events")
    per_world = n_events // worlds
    return [(f"world {w}", simulate(w, per_world, config=random_world(w))) for w in world_seeds(seed, worlds)]


def _poisson(rng: random.Random, mean: float) -> int:
    # Normal approximation: the daily mean is in the hundreds.
    return max(1, int(round(rng.gauss(mean, math.sqrt(mean)))))


def main(argv=None) -> int:
    import argparse
    import collections

    p = argparse.ArgumentParser(prog="python -m counterguard.models.simulate",
                                description="Summarise a simulated branch, or --worlds N randomized branches.")
    p.add_argument("seed", type=int, nargs="?", default=7)
    p.add_argument("events", type=int, nargs="?", default=20_000)
    p.add_argument("--worlds", type=int, default=0,
                   help="draw N branches with their own habits (default: the reference branch)")
    args = p.parse_args(argv)
    sets = (simulate_worlds(args.seed, args.worlds, args.events) if args.worlds
            else [("reference branch", simulate(args.seed, args.events))])
    for name, sample in sets:
        counts = collections.Counter(item["typology"] for item in sample)
        print(f"{name}: {len(sample)} events, fraud {sum(i['label'] for i in sample) / len(sample):.2%}: "
              + ", ".join(f"{n} {counts[n]}" for n in TYPOLOGIES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
