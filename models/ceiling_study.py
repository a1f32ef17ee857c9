"""What a world's own labels can teach: the ceiling for a model that never saw that world.

    python -m counterguard.models.ceiling_study [--money-seeds 4] [--card-seeds 4] [--json out.json]

The targets for the bundled models are measured on the independent worlds (models/independent.py,
models/independent_cards.py), which no model of the project learns from. This study asks how far
a model gets there when it *does* learn from that world: it trains on each branch's or outlet's own
first 80 % of time with every label and judges its last 20 %, at 0.5, 1 and 2 % of honest
customers alerted. A model trained on the simulator should not be expected to do better there than
a model trained on the world itself.

Two learners, both float (no int8):

- ``network``: the gateway model's own network (models/train.py ``fit``);
- ``gradient-boosted``: a reference the gateway cannot run (LightGBM, the ``study`` extra; TFLite
  has no trees), to tell what the inputs hold apart from what the small network draws out of them.
  Left out, and said so, when LightGBM is not installed.

The money world (independent branch seeds 21, 22, ...; 60,000 events each) is judged on three
sets of inputs: schema v1 alone; with the lists of persons (what the first verdict reads); and with
the customer's answers as if every customer were asked (more than the final verdict gets, where
only alerted customers are asked: an upper bound on it).

The card world (independent outlet seeds 11, 12, ...; 30,000 events of each kind each) is judged
on the card inputs of core/features.py, and with the person's earlier visits at the same outlet
added (``visit_rows``: what the card rule book reads, and a little more; no model takes them yet). Card figures are given per event
and per case: a card-selling person counts as caught when any of their events in the judged weeks
is alerted, and the budget is then the share of honest persons alerted.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict, deque
from pathlib import Path

import numpy as np

from counterguard.core.events import CARD_KINDS, parse_event
from counterguard.core.features import DAY, VISIT_DAYS, card_counts
from counterguard.models.evaluate import legit_cut, pct, recall_at_legit_share
from counterguard.models.train import VisitBook

BUDGETS = (0.005, 0.01, 0.02)
MONEY_SEEDS = (21, 22, 23, 24, 25, 26, 27, 28)
MONEY_EVENTS = 60_000  # per branch seed: about 200 branch days
CARD_SEEDS = (11, 12, 13, 14, 15, 16)
CARD_EVENTS = 30_000  # per outlet seed and kind
SEED = 7
VISIT_NAMES = ("visits_90d", "seen_before", "days_since_last", "cards_gained_elsewhere", "cards_asked_90d",
               "others_on_this_phone_30d", "phone_given", "other_persons_30min")
BOOSTED = dict(objective="binary", learning_rate=0.03, num_leaves=31, min_data_in_leaf=20, bagging_fraction=0.8,
               bagging_freq=1, feature_fraction=0.8, num_threads=2, seed=SEED, deterministic=True, verbose=-1)
BOOSTED_ROUNDS = 600


def boosted_available() -> bool:
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        return False
    return True


def visit_rows(events) -> np.ndarray:
    """The person's earlier card visits at this outlet, one row per event (``VISIT_NAMES``), from the
    events alone and in time order: the ``Visits`` the card rule book reads at the gateway
    (models/train.py ``VisitBook``, core/features.py ``summarise_visits``: visits in 90 days, days
    since the last, cards gained elsewhere since then, other persons who gave the same phone in 30
    days), and three more a gateway could keep: cards asked for in 90 days, whether a phone was
    given, other persons served in the last 30 minutes (a group brought in together)."""
    book = VisitBook()
    asked: dict[str, deque] = defaultdict(deque)
    recent: deque = deque()
    rows = []
    for e in events:
        now, who = e.epoch, e.account
        visits = book.see(e)
        mine = asked[who]
        while mine and now - mine[0][0] > VISIT_DAYS * DAY:
            mine.popleft()
        while recent and now - recent[0][0] > 1800:
            recent.popleft()
        since = 90.0 if visits.days_since_last is None else min(visits.days_since_last, 90.0)
        rows.append([math.log1p(visits.visits_90d), 1.0 if visits.visits_90d else 0.0, math.log1p(since),
                     math.log1p(visits.cards_gained_elsewhere), math.log1p(sum(n for t, n in mine if t < now)),
                     float(min(visits.others_on_phone_30d, 8)), 1.0 if e.customer_phone_hash else 0.0,
                     math.log1p(len({p for _, p in recent if p != who}))])
        mine.append((now, card_counts(e)[1]))
        recent.append((now, who))
    return np.asarray(rows, np.float32).reshape(len(rows), len(VISIT_NAMES))


def at_budgets(scores: np.ndarray, labels: np.ndarray) -> dict:
    return {str(b): round(recall_at_legit_share(scores, labels, b), 4) for b in BUDGETS}


def cases_at_budgets(scores: np.ndarray, labels: np.ndarray, persons: np.ndarray) -> dict:
    """Per person: caught when their highest score is over the cut that alerts at most the budget's
    share of honest persons (a person is honest when none of their events is fraud)."""
    order = np.argsort(persons, kind="stable")
    names, starts = np.unique(persons[order], return_index=True)
    best = np.maximum.reduceat(scores[order], starts)
    fraud = np.maximum.reduceat(labels[order].astype(np.int8), starts)
    out = {"cases": int(fraud.sum()), "honest_persons": int(len(names) - fraud.sum())}
    for b in BUDGETS:
        cut = legit_cut(best, fraud, b)
        out[str(b)] = round(float((best[fraud == 1] > cut).mean()), 4) if fraud.any() else 0.0
    return out


def learners(epochs: int, boosted: bool):
    """(name, train(x, y) -> score(x)) for each learner."""
    def network(x, y):
        from counterguard.models.train import fit, standardised, standardiser

        mean, scale = standardiser(x)
        model = fit(standardised(x, mean, scale), y, SEED, epochs)
        return lambda rows: model.predict(standardised(rows, mean, scale), verbose=0, batch_size=8192).reshape(-1)

    def gradient_boosted(x, y):
        import lightgbm

        model = lightgbm.train(BOOSTED, lightgbm.Dataset(x, y.astype(np.float32)), num_boost_round=BOOSTED_ROUNDS)
        return model.predict

    yield "network", network
    if boosted:
        yield "gradient-boosted", gradient_boosted


def _split(parts: list[tuple]) -> tuple:
    """Each world's own first 80 % of time trains and its last 20 % is judged; parts are
    (rows, labels, epochs[, persons]) per world."""
    from counterguard.models.train import time_split

    masks = [time_split(p[2]) for p in parts]
    train = [np.concatenate([p[i][m] for p, m in zip(parts, masks)]) for i in range(2)]
    judged = [np.concatenate([p[i][~m] for p, m in zip(parts, masks)]) for i in range(len(parts[0]))]
    return train, judged


def money_study(seeds, events: int, epochs: int, boosted: bool, progress=lambda line: None) -> list[dict]:
    from counterguard.models.independent import independent_branch
    from counterguard.models.train import feature_rows

    inputs = {"v1 only": [], "+ lists (first verdict)": [], "+ lists and answers, every customer asked": []}
    for seed in seeds:
        progress(f"independent branch {seed}: {events} events")
        items = independent_branch(seed, events)
        v1, _, labels, epochs_ = feature_rows(items, lists=False)
        first, final, _, _ = feature_rows(items)
        for name, rows in zip(inputs, (v1, first, final)):
            inputs[name].append((rows, labels, epochs_))
    out = []
    for name, parts in inputs.items():
        (tx, ty), (vx, vy, _) = _split(parts)
        for learner, train in learners(epochs, boosted):
            progress(f"money, {name}: {learner} on {len(ty)} events ({int(ty.sum())} fraud)")
            scores = train(tx, ty)(vx)
            out.append({"world": "independent branch", "inputs": name, "learner": learner,
                        "trained_events": int(len(ty)), "trained_fraud": int(ty.sum()),
                        "judged_fraud": int(vy.sum()), "at": at_budgets(scores, vy)})
    return out


def card_study(seeds, events: int, epochs: int, boosted: bool, progress=lambda line: None) -> list[dict]:
    from counterguard.models.cards_study import KEY, replay
    from counterguard.models.independent_cards import independent_cards

    out = []
    for kind in CARD_KINDS:
        plain, visits = [], []
        for seed in seeds:
            progress(f"independent {kind} outlet {seed}: {events} events")
            items = independent_cards(seed, events, kind)
            rows, _, _, labels, epochs_, _ = replay(items)
            parsed = [parse_event(item["event"], KEY) for item in items]
            persons = np.asarray([f"{seed}:{e.account}" for e in parsed])
            plain.append((rows, labels, epochs_, persons))
            visits.append((np.hstack([rows, visit_rows(parsed)]), labels, epochs_, persons))
        for name, parts in (("card inputs", plain), ("+ the person's earlier visits here", visits)):
            (tx, ty), (vx, vy, _, vp) = _split(parts)
            for learner, train in learners(epochs, boosted):
                progress(f"{kind}, {name}: {learner} on {len(ty)} events ({int(ty.sum())} fraud)")
                scores = train(tx, ty)(vx)
                out.append({"world": f"independent {kind}", "inputs": name, "learner": learner,
                            "trained_events": int(len(ty)), "trained_fraud": int(ty.sum()),
                            "judged_fraud": int(vy.sum()), "at": at_budgets(scores, vy),
                            "cases": cases_at_budgets(scores, vy, vp)})
    return out


def study(money_seeds=MONEY_SEEDS[:4], card_seeds=CARD_SEEDS[:4], money_events: int = MONEY_EVENTS,
          card_events: int = CARD_EVENTS, epochs: int = 20, boosted: bool | None = None,
          progress=lambda line: None) -> dict:
    boosted = boosted_available() if boosted is None else boosted
    rows = money_study(money_seeds, money_events, epochs, boosted, progress) if money_seeds else []
    rows += card_study(card_seeds, card_events, epochs, boosted, progress) if card_seeds else []
    return {"boosted": boosted, "money_seeds": list(money_seeds), "card_seeds": list(card_seeds),
            "money_events": money_events, "card_events": card_events, "rows": rows}


def table(result: dict) -> str:
    lines = ["| world | inputs | learner | trained on (fraud) | judged fraud | at 0.5 % | at 1 % | at 2 % "
             "| cases at 1 % (cases) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        at, cases = r["at"], r.get("cases")
        per_case = f"{pct(cases['0.01'])} ({cases['cases']})" if cases else ""
        lines.append(f"| {r['world']} | {r['inputs']} | {r['learner']} | {r['trained_events']:,} "
                     f"({r['trained_fraud']:,}) | {r['judged_fraud']:,} | {pct(at['0.005'])} | {pct(at['0.01'])} "
                     f"| {pct(at['0.02'])} | {per_case} |")
    if not result["boosted"]:
        lines.append("")
        lines.append("(gradient-boosted rows left out: LightGBM is not installed; pip install 'counterguard[study]')")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m counterguard.models.ceiling_study",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--money-seeds", type=int, default=4, choices=range(0, len(MONEY_SEEDS) + 1), metavar="N",
                   help=f"independent branches to learn from and judge, 0-{len(MONEY_SEEDS)} (default 4)")
    p.add_argument("--card-seeds", type=int, default=4, choices=range(0, len(CARD_SEEDS) + 1), metavar="N",
                   help=f"independent outlets of each card kind, 0-{len(CARD_SEEDS)} (default 4)")
    p.add_argument("--money-events", type=int, default=MONEY_EVENTS,
                   help=f"events per branch (default {MONEY_EVENTS})")
    p.add_argument("--card-events", type=int, default=CARD_EVENTS,
                   help=f"card events per outlet and kind (default {CARD_EVENTS})")
    p.add_argument("--epochs", type=int, default=20, help="the network's training epochs (default 20)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON to this file")
    args = p.parse_args(argv)
    if min(args.money_events, args.card_events) < 2000:
        p.error("--money-events and --card-events must be at least 2000 so each split holds some fraud")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        p.error("the network needs TensorFlow: pip install 'counterguard[train]' and run again")
    result = study(MONEY_SEEDS[:args.money_seeds], CARD_SEEDS[:args.card_seeds], args.money_events,
                   args.card_events, args.epochs, progress=lambda line: print(line, file=sys.stderr))
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
