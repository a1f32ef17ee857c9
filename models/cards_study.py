"""SIM cards and accounts: the card rule book against a card model, per kind, on a world it never saw.

    python -m counterguard.models.cards_study [--events 30000] [--json out.json]   # needs the train extra

For each kind (``sim_activation`` at a carrier's outlet, ``account_opening`` at a bank's desk):

- the **rule book** the gateway runs today (core/cards.py ``decide_card``), at its own levels and
  ranked by level then by its share of signs;
- a **card model**: the money model's small network (models/train.py ``fit``) on the card inputs of
  core/features.py ``card_features``, trained on the card simulator (models/simulate_cards.py, both
  kinds together, the first 80 % of each kind's time span), float scores;

judged on the simulator's last 20 % and on the independent card world
(models/independent_cards.py, its own generator), at 0.5, 1 and 2 % of honest customers alerted,
with the fraud events behind each figure; and, on the independent outlets' last 20 % of time, a
card model trained on their own first 80 % with every label (what a carrier's or a bank's own
labelled card sales would teach). The person is the history's key, as at the gateway: the
same identity number's card events earlier in the day, at any counter.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from counterguard.core.cards import decide_card
from counterguard.core.decision import GREEN, LEVEL_RANK, RED
from counterguard.core.events import CARD_KINDS
from counterguard.core.features import ListHits, card_features
from counterguard.models.evaluate import pct, recall_at_legit_share
from counterguard.models.train import VisitBook, replay_items

KEY = b"counterguard-cards-study-key-000"  # any key: the lists and the history only compare hashes
BUDGETS = ("0.005", "0.01", "0.02")
SEED = 7
INDEPENDENT_SEEDS = (11, 12)


def replay(items: list[dict]):
    """(rows, rule-book levels, rule-book ranking, labels, epochs, typologies) for time-ordered card items."""
    rows, levels, ranks, labels, epochs, kinds = [], [], [], [], [], []
    book = VisitBook()
    for event, history, item in replay_items(items, KEY):
        signals = item.get("signals") or {}
        hits = ListHits(persons_checked=bool(signals.get("identity", True)), warned_person=bool(signals.get("warned")),
                        restricted_person=bool(signals.get("restricted")))
        verdict = decide_card(event, history, hits, book.see(event))
        rows.append(card_features(event, history, hits))
        levels.append(verdict.level)
        ranks.append(LEVEL_RANK[verdict.level] + verdict.score)
        labels.append(int(item["label"]))
        epochs.append(event.epoch)
        kinds.append(item.get("typology", ""))
    return (np.asarray(rows, np.float32), np.asarray(levels), np.asarray(ranks), np.asarray(labels, np.int8),
            np.asarray(epochs), np.asarray(kinds))


def at_budgets(scores: np.ndarray, labels: np.ndarray) -> dict:
    return {b: round(recall_at_legit_share(scores, labels, float(b)), 4) for b in BUDGETS}


def rulebook_row(levels, ranks, labels) -> dict:
    fraud, honest = labels == 1, labels == 0
    alerted, red = levels != GREEN, levels == RED
    return {"fraud_events": int(fraud.sum()), "at": at_budgets(ranks, labels),
            "fraud_alerted": round(float(alerted[fraud].mean()), 4),
            "honest_alerted": round(float(alerted[honest].mean()), 4),
            "red_precision": round(float(fraud[red].mean()), 4) if red.any() else None}


def study(events: int, epochs: int = 20, worlds: int = 0, progress=lambda line: None) -> dict:
    """The figures per kind and judged world. With ``worlds``, the card model learns from that many
    randomized outlets (``random_card_world``, their first 80 % of time each) instead of the
    reference outlet, whose last 20 % is still judged."""
    from counterguard.models.independent_cards import independent_cards
    from counterguard.models.simulate_cards import random_card_world, simulate_cards
    from counterguard.models.train import fit, standardised, standardiser, time_split

    sets, train_x, train_y, own_x, own_y = {}, [], [], [], []
    for kind in CARD_KINDS:
        progress(f"simulating {kind}")
        x, levels, ranks, y, when, _ = replay(simulate_cards(SEED, events, kind))
        train = time_split(when)
        if not worlds:
            train_x.append(x[train])
            train_y.append(y[train])
        for w in range(worlds):
            seed = SEED * 1000 + w
            wx, _, _, wy, wwhen, _ = replay(simulate_cards(seed, max(1000, events // worlds), kind,
                                                           random_card_world(seed)))
            part = time_split(wwhen)
            train_x.append(wx[part])
            train_y.append(wy[part])
        sets[(kind, "simulated, last 20 %")] = (x[~train], levels[~train], ranks[~train], y[~train])
        parts = [replay(independent_cards(s, events // len(INDEPENDENT_SEEDS), kind)) for s in INDEPENDENT_SEEDS]
        sets[(kind, "independent")] = tuple(np.concatenate([p[i] for p in parts]) for i in range(4))
        # The outlets' own earlier weeks, labelled: each independent outlet's first 80 % of time trains a
        # card model of their own (both kinds together), judged on their last 20 %.
        splits = [time_split(p[4]) for p in parts]
        own_x += [p[0][s] for p, s in zip(parts, splits)]
        own_y += [p[3][s] for p, s in zip(parts, splits)]
        sets[(kind, "independent, last 20 %")] = tuple(
            np.concatenate([p[i][~s] for p, s in zip(parts, splits)]) for i in range(4))
    x, y = np.concatenate(train_x), np.concatenate(train_y)
    mean, scale = standardiser(x)
    progress(f"training the card model on {len(y)} events ({int(y.sum())} fraud)")
    model = fit(standardised(x, mean, scale), y, SEED, epochs)
    ox, oy = np.concatenate(own_x), np.concatenate(own_y)
    own_mean, own_scale = standardiser(ox)
    progress(f"training a card model on the independent outlets' own first 80 %: {len(oy)} events "
             f"({int(oy.sum())} fraud)")
    own = fit(standardised(ox, own_mean, own_scale), oy, SEED, epochs)
    out = {}
    for (kind, where), (xs, levels, ranks, ys) in sets.items():
        scores = model.predict(standardised(xs, mean, scale), verbose=0, batch_size=4096).reshape(-1)
        out.setdefault(kind, {})[where] = {
            "rule book": rulebook_row(levels, ranks, ys),
            "card model": {"fraud_events": int(ys.sum()), "at": at_budgets(scores, ys)},
        }
        if where == "independent, last 20 %":
            mine = own.predict(standardised(xs, own_mean, own_scale), verbose=0, batch_size=4096).reshape(-1)
            out[kind][where]["card model, the outlets' own labels"] = {"fraud_events": int(ys.sum()),
                                                                      "at": at_budgets(mine, ys)}
    return out



def table(result: dict) -> str:
    lines = ["| kind | judged on | who | fraud (events) | at 0.5 % | at 1 % | at 2 % | rule book at its own levels |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for kind, by_set in result.items():
        for where, rows in by_set.items():
            for who, r in rows.items():
                own = (f"{pct(r['fraud_alerted'])} of fraud at {pct(r['honest_alerted'])} of honest, red precision "
                       f"{pct(r['red_precision'])}" if "fraud_alerted" in r else "")
                lines.append(f"| {kind} | {where} | {who} | {r['fraud_events']} | {pct(r['at']['0.005'])} | "
                             f"{pct(r['at']['0.01'])} | {pct(r['at']['0.02'])} | {own} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m counterguard.models.cards_study", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=30_000, help="card events per kind and world (default 30000)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs of the card model (default 20)")
    p.add_argument("--worlds", type=int, default=0,
                   help="train the card model across N randomized outlets instead of the reference one (default 0)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON to this file")
    args = p.parse_args(argv)
    if args.worlds < 0:
        p.error("--worlds must be 0 or more")
    if args.events < 2000:
        p.error("--events must be at least 2000 so each split holds some fraud")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        p.error("the card model needs TensorFlow: pip install 'counterguard[train]' and run again")
    result = study(args.events, args.epochs, args.worlds, progress=lambda line: print(line, file=sys.stderr))
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
