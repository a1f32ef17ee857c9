"""Judge a fraud model honestly: on the later part of time, on a shifted branch, against the rule book.

``counterguard evaluate`` (models/cli.py) runs ``evaluate()`` and prints ``report_text()``:

- **own test split**: the simulator with the training seed, the last 20 % of time (``time_split``,
  never a random draw) - what the model saw the like of in training;
- **shifted set**: ``counterguard.models.simulate.SHIFTED`` with seeds the model never trained on - an older
  clientele, other amounts, half the victims coached to hide the signs, noisier teller flags;
- **independent branch**: ``counterguard.models.independent``, a second generator written apart from the
  training simulator (its own customers, distributions and shares), for what a re-parametrised copy
  of the training simulator cannot show;
- on each: recall at amber or red, share of legitimate events alerted, red precision, average
  precision, alerted share by typology - for the model (through the gateway's own features,
  ``FraudModel`` and ``decide``) and for the rule book (``counterguard.models.rulebook``);
- **leakage checks**, fitted on the own training split: an amount-only model and a model fitted on
  shuffled labels must do badly; if either does well, the simulator gives the answer away.

``evaluate_cases`` judges a model on a bank's own labelled events instead (``counterguard evaluate
--cases``; the file format is models/cases.py's).

Needs only numpy and the gateway's runtime (no TensorFlow); the plot needs matplotlib.
"""

from __future__ import annotations

import numpy as np

from counterguard.core.decision import AMBER, GREEN, RED, Thresholds, after_answers, decide
from counterguard.core.dialogue import said_scam_script
from counterguard.core.features import FEATURE_NAMES, ListHits, event_features, with_answers
from counterguard.gateway.scoring.model import FraudModel
from counterguard.models.rulebook import rulebook_after_answers, rulebook_first_level
from counterguard.models.simulate import SHIFTED, SHIFTED_SEEDS, simulate, simulate_worlds, world_seeds
from counterguard.models.train import (
    AMBER_LEGIT_SHARE,
    RED_LEGIT_SHARE,
    choose_thresholds,
    item_answers,
    item_hits,
    item_hold,
    replay_items,
    time_split,
    two_stage,
    typology_order,
)

# Targets on the shifted set: what the branch network asked of the model.
TARGET_RECALL = 0.95
TARGET_LEGIT_ALERTED = 0.01
TARGET_RED_PRECISION = 0.80
# A leakage model "does badly" if it catches at most this share of fraud when alerting the target
# share of legitimate events, and the shuffled one stays near chance.
LEAK_MAX_RECALL = 0.5
LEAK_SHUFFLED_MAX_AP_RATIO = 5.0  # average precision at most 5x the fraud share (chance is 1x)
# Alert budgets (share of legitimate events alerted) at which recall is also reported: what moving
# the amber threshold would buy.
BUDGETS = (0.005, 0.01, 0.02, 0.04)
INDEPENDENT_SEEDS = (11, 12, 13)
"""Seeds for the independent branch (its own generator, so any seeds would do; fixed for the record)."""
AMOUNT_BINS = 200  # 0.5 % of training events a bin: fine enough to act within a 1 % alert budget


class Scored:
    """One data set scored both ways: arrays aligned with its events.

    As the gateway does it: the first verdict from the event, its history and the lists of persons
    (``lists``); then, for an event alerted at amber or red, the customer's answers to the caring
    questions (``answers``) re-score it and ``after_answers`` gives the final verdict. ``scores`` ranks
    events by the final verdict (``two_stage``: alerted at a threshold exactly when the first score
    and the re-score both reach it; a first red stands, and so does an alert whose customer said yes to
    a scam's script; a hold ranks above any score), ``first_scores`` by the first.
    Without ``lists`` or ``answers`` the model sees those signals as absent, as at a counter whose
    terminal does not send them.
    """

    KEYS = ("rows", "scores", "first_scores", "levels", "first_levels", "rule_levels", "rule_first_levels",
            "labels", "typologies", "coached", "epochs")

    def __init__(self, name: str, items: list[dict], model: FraudModel, thresholds: Thresholds, *,
                 lists: bool = True, answers: bool = True):
        out = {key: [] for key in self.KEYS if key not in ("scores", "first_scores")}
        firsts, finals, holds, scripted = [], [], [], []
        for event, history, item in replay_items(items):
            hits = item_hits(item) if lists else None
            hold = item_hold(item, lists)
            warned = hits is not None and hits.warned_person
            given = item_answers(item) if answers else None
            row = event_features(event, history, hits)
            first = model.score(row)
            final = model.score(with_answers(row, given)) if given else first
            gateway_hits = ListHits(watchlist=hold, warned_person=warned, persons_checked=hits is not None)
            first_verdict = verdict = decide(event, first, history, gateway_hits, thresholds)
            if verdict.level != GREEN and given:
                verdict = after_answers(verdict, given, event=event, score=final, history=history,
                                        lists=gateway_hits, thresholds=thresholds)
            rule_first = rulebook_first_level(event, hold, warned)
            out["rows"].append(row)
            firsts.append(first)
            finals.append(final)
            holds.append(hold)
            scripted.append(said_scam_script(given or {}))
            out["levels"].append(verdict.level)
            out["first_levels"].append(first_verdict.level)
            out["rule_levels"].append(rulebook_after_answers(rule_first, given))
            out["rule_first_levels"].append(rule_first)
            out["labels"].append(int(item["label"]))
            out["typologies"].append(item.get("typology") or "")
            out["coached"].append(bool(item.get("coached")))
            out["epochs"].append(event.epoch)
        firsts, holds = np.asarray(firsts, np.float64), np.asarray(holds, bool)
        # The gateway ranks a hold above any score: it is red whatever the model says.
        out["scores"] = np.where(holds, 1.0, two_stage(firsts, np.asarray(finals, np.float64), thresholds.red,
                                                       np.asarray(scripted, bool)))
        out["first_scores"] = np.where(holds, 1.0, firsts)
        self.name = name
        for key, values in out.items():
            setattr(self, key, np.asarray(values, np.float64 if key in ("rows", "epochs") else None))
        self.labels = self.labels.astype(np.int8)

    def subset(self, mask: np.ndarray, name: str) -> "Scored":
        part = object.__new__(Scored)
        part.name = name
        for key in self.KEYS:
            setattr(part, key, getattr(self, key)[mask])
        return part

    @classmethod
    def concat(cls, parts: list["Scored"], name: str) -> "Scored":
        whole = object.__new__(cls)
        whole.name = name
        for key in cls.KEYS:
            setattr(whole, key, np.concatenate([getattr(p, key) for p in parts]))
        return whole


# --- metrics ---------------------------------------------------------------------------------------

def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall steps, ties counted together (a level-valued rule book ties a lot)."""
    fraud = labels == 1
    if not fraud.any():
        return 0.0
    order = np.argsort(-scores, kind="stable")
    s, hit = scores[order], fraud[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    caught = np.cumsum(hit)[last_of_tie]
    alerted = (np.arange(1, len(s) + 1))[last_of_tie]
    precision = caught / alerted
    recall_step = np.diff(np.r_[0, caught]) / fraud.sum()
    return float((precision * recall_step).sum())


def level_metrics(levels: np.ndarray, labels: np.ndarray, typologies: np.ndarray, ranking: np.ndarray) -> dict:
    fraud, legit = labels == 1, labels == 0
    alerted, red = levels != GREEN, levels == RED
    share = lambda mask, within: round(float(mask[within].mean()), 4) if within.any() else None  # noqa: E731
    kinds = typology_order(typologies)
    return {
        "events": int(len(labels)),
        "fraud_events": int(fraud.sum()),
        "recall_alerted": share(alerted, fraud),
        "recall_red": share(red, fraud),
        "legit_alerted_share": share(alerted, legit),
        "legit_red_share": share(red, legit),
        "red_precision": share(fraud, red),
        "average_precision": round(average_precision(ranking, labels), 4),
        "alerted_share_by_typology": {name: share(alerted, typologies == name) for name in kinds},
        "fraud_typologies": [name for name in kinds if fraud[typologies == name].any()],
        "recall_at_legit_share": {f"{b:g}": round(recall_at_legit_share(ranking, labels, b), 4) for b in BUDGETS},
        "events_by_typology": {name: int((typologies == name).sum()) for name in kinds},
        "alerted_share_by_typology_at_legit_share": {
            f"{b:g}": {name: share(ranking > cut, typologies == name) for name in kinds}
            for b, cut in ((b, legit_cut(ranking, labels, b)) for b in BUDGETS)},
    }


def coached_metrics(levels: np.ndarray, data: Scored, ranking: np.ndarray) -> dict:
    """How the victims coached to hide the signs fare: the hard part of every typology, shown apart."""
    victims = data.coached & (data.labels == 1)
    n = int(victims.sum())
    return {"events": n,
            "recall_alerted": round(float((levels[victims] != GREEN).mean()), 4) if n else None,
            "recall_at_legit_share": {f"{b:g}": round(float((ranking[victims] > legit_cut(ranking, data.labels, b)).mean()), 4)
                                      if n else None for b in BUDGETS}}


def model_metrics(data: Scored) -> dict:
    m = level_metrics(data.levels, data.labels, data.typologies, data.scores)
    m["coached_victims"] = coached_metrics(data.levels, data, data.scores)
    # The first verdict alone, before any answers: what a counter without the dialogue gets.
    first = level_metrics(data.first_levels, data.labels, data.typologies, data.first_scores)
    m["first_verdict"] = {k: first[k] for k in ("recall_alerted", "recall_red", "legit_alerted_share",
                                                "legit_red_share", "red_precision", "average_precision",
                                                "recall_at_legit_share")}
    return m


def level_ranking(levels: np.ndarray) -> np.ndarray:
    return np.select([levels == RED, levels == AMBER], [2.0, 1.0], 0.0)


def rulebook_metrics(data: Scored) -> dict:
    rank = level_ranking(data.rule_levels)
    m = level_metrics(data.rule_levels, data.labels, data.typologies, rank)
    m["coached_victims"] = coached_metrics(data.rule_levels, data, rank)
    return m


def legit_cut(scores: np.ndarray, labels: np.ndarray, legit_share: float) -> float:
    """The score an event must exceed to be alerted when at most ``legit_share`` of legitimate events may be."""
    legit = np.sort(scores[labels == 0])[::-1]
    allowed = int(np.floor(legit_share * len(legit)))
    # Cut strictly above the (allowed+1)-th highest legitimate score: ties must not sneak in.
    return float(legit[allowed]) if allowed < len(legit) else -np.inf


def recall_at_legit_share(scores: np.ndarray, labels: np.ndarray, legit_share: float) -> float:
    """Share of fraud caught by the score cut that alerts at most ``legit_share`` of legitimate events."""
    cut = legit_cut(scores, labels, legit_share)
    return float((scores[labels == 1] > cut).mean()) if (labels == 1).any() else 0.0


# --- leakage checks --------------------------------------------------------------------------------

class AmountOnly:
    """Fraud rate by amount: its size (quantile bins of the training amounts) and its roundness (whole
    thousands, whole hundreds, other). Any quirk of the amount alone that gives fraud away, it learns."""

    def __init__(self, amounts: np.ndarray, labels: np.ndarray):
        self.edges = np.unique(np.quantile(amounts, np.linspace(0, 1, AMOUNT_BINS + 1)[1:-1]))
        cells = self._cells(amounts)
        size = (len(self.edges) + 1) * 3
        counts = np.bincount(cells, minlength=size)
        hits = np.bincount(cells, weights=labels, minlength=size)
        self.rate = (hits + labels.mean()) / (counts + 1)  # one pseudo-event at the base rate per cell

    def _cells(self, amounts: np.ndarray) -> np.ndarray:
        cents = np.rint(np.asarray(amounts) * 100).astype(np.int64)
        roundness = np.where(cents % 100_000 == 0, 0, np.where(cents % 10_000 == 0, 1, 2))
        return np.searchsorted(self.edges, amounts, side="right") * 3 + roundness

    def score(self, amounts: np.ndarray) -> np.ndarray:
        return self.rate[self._cells(amounts)]


class Logistic:
    """Plain logistic regression on standardised features, fitted by full-batch gradient descent."""

    def __init__(self, x: np.ndarray, y: np.ndarray, steps: int = 300, rate: float = 0.5):
        self.mean, self.scale = x.mean(axis=0), x.std(axis=0)
        self.scale[self.scale < 1e-9] = 1.0
        z = (x - self.mean) / self.scale
        self.w, self.b = np.zeros(x.shape[1]), 0.0
        for _ in range(steps):
            p = 1 / (1 + np.exp(-(z @ self.w + self.b)))
            self.w -= rate * z.T @ (p - y) / len(y)
            self.b -= rate * float((p - y).mean())

    def score(self, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(((x - self.mean) / self.scale) @ self.w + self.b)))


def leakage_checks(train: Scored, tests: list[Scored], legit_share: float, seed: int) -> dict:
    """Amount-only and shuffled-label models fitted on ``train``, judged on each of ``tests``."""
    amount = FEATURE_NAMES.index("log_amount")
    yuan = lambda data: np.expm1(data.rows[:, amount])  # noqa: E731  (log_amount is log1p of the amount)
    y = train.labels.astype(np.float64)
    amount_model = AmountOnly(yuan(train), y)
    shuffled = Logistic(train.rows, np.random.default_rng(seed).permutation(y))
    out = {"legit_alerted_share": legit_share, "max_recall": LEAK_MAX_RECALL,
           "max_shuffled_ap_ratio": LEAK_SHUFFLED_MAX_AP_RATIO, "sets": {}}
    ok = True
    for data in tests:
        base = float(data.labels.mean())
        a = amount_model.score(yuan(data))
        s = shuffled.score(data.rows)
        result = {
            "fraud_share": round(base, 4),
            "amount_only": {"recall": round(recall_at_legit_share(a, data.labels, legit_share), 4),
                            "average_precision": round(average_precision(a, data.labels), 4)},
            "shuffled_labels": {"recall": round(recall_at_legit_share(s, data.labels, legit_share), 4),
                                "average_precision": round(average_precision(s, data.labels), 4)},
        }
        result["passed"] = (result["amount_only"]["recall"] <= LEAK_MAX_RECALL
                            and result["shuffled_labels"]["recall"] <= LEAK_MAX_RECALL
                            and result["shuffled_labels"]["average_precision"] <= LEAK_SHUFFLED_MAX_AP_RATIO * base)
        ok &= result["passed"]
        out["sets"][data.name] = result
    out["passed"] = ok
    return out


# --- the whole evaluation --------------------------------------------------------------------------

def shifted_set(model: FraudModel, thresholds: Thresholds, events: int, seeds=SHIFTED_SEEDS) -> Scored:
    """The shifted branches, each replayed on its own (its own accounts and histories)."""
    per_seed = max(1, events // len(seeds))
    parts = [Scored(f"shifted seed {s}", simulate(s, per_seed, config=SHIFTED), model, thresholds) for s in seeds]
    return Scored.concat(parts, "shifted")


def independent_set(model: FraudModel, thresholds: Thresholds, events: int, seeds=INDEPENDENT_SEEDS) -> Scored:
    """The independent generator's branches, each replayed on its own."""
    from counterguard.models.independent import independent_branch

    per_seed = max(1, events // len(seeds))
    parts = [Scored(f"independent seed {s}", independent_branch(s, per_seed), model, thresholds)
             for s in seeds]
    return Scored.concat(parts, "independent")


def targets(metrics: dict) -> dict:
    """The branch network's three targets against one set's model metrics."""
    m = metrics
    return {
        "recall_alerted": {"target": TARGET_RECALL, "measured": m["recall_alerted"],
                           "met": (m["recall_alerted"] or 0) >= TARGET_RECALL},
        "legit_alerted_share": {"target": TARGET_LEGIT_ALERTED, "measured": m["legit_alerted_share"],
                                "met": m["legit_alerted_share"] is not None
                                and m["legit_alerted_share"] <= TARGET_LEGIT_ALERTED},
        "red_precision": {"target": TARGET_RED_PRECISION, "measured": m["red_precision"],
                          "met": (m["red_precision"] or 0) >= TARGET_RED_PRECISION},
    }


def evaluate(model: FraudModel, *, thresholds: Thresholds | None = None, seed: int | None = None,
             events: int | None = None, shifted_events: int = 60_000, shifted_seeds=SHIFTED_SEEDS,
             independent_events: int = 60_000, independent_seeds=INDEPENDENT_SEEDS,
             worlds: int | None = None, progress=None) -> tuple[dict, dict]:
    """(report, scored sets). The report is JSON-ready; the scored sets feed the plot. ``progress``
    (a callable taking one line) hears what each stage is doing: a full run takes a while.

    ``seed`` and ``events`` default to the model's own (its manifest): only then is the own test
    split exactly the part of time the model never trained on. ``worlds`` likewise defaults to the
    number of randomized branches the model learnt from (0: the reference branch); each branch is
    then replayed and split by time on its own, and the own test split is their later parts together.
    """
    trained = (model.manifest.get("seed"), model.manifest.get("events"))
    worlds = int(model.manifest.get("worlds", 0)) if worlds is None else worlds
    seed = trained[0] if seed is None else seed
    events = trained[1] if events is None else events
    if seed is None or events is None:
        raise ValueError("the model's manifest does not say which seed and how many events it was trained on; "
                         "give --seed and --events")
    if not events:
        raise ValueError("this model was trained on labelled cases alone, so it has no simulated test split: "
                         "judge it with --cases on later labelled events, or give --seed and --events")
    if seed in shifted_seeds or (worlds and set(world_seeds(seed, worlds)) & set(shifted_seeds)):
        raise ValueError(f"seed {seed} is also a shifted-set seed; the shifted set must be independent of training")
    say = progress or (lambda line: None)
    thresholds = thresholds or model.thresholds
    if worlds:
        say(f"simulating and scoring the own branches (seed {seed}, {worlds} worlds, {events} events)")
        parts = [Scored(name, items, model, thresholds) for name, items in simulate_worlds(seed, worlds, events)]
        masks = [time_split(part.epochs) for part in parts]
        train = Scored.concat([p.subset(m, p.name) for p, m in zip(parts, masks)], "own training split")
        test = Scored.concat([p.subset(~m, p.name) for p, m in zip(parts, masks)], "own test split")
    else:
        say(f"simulating and scoring the own branch (seed {seed}, {events} events)")
        own = Scored("own", simulate(seed, events), model, thresholds)
        train_mask = time_split(own.epochs)
        train, test = own.subset(train_mask, "own training split"), own.subset(~train_mask, "own test split")
    say(f"simulating and scoring the shifted set ({len(shifted_seeds)} branches, {shifted_events} events)")
    shifted = shifted_set(model, thresholds, shifted_events, shifted_seeds)
    say(f"generating and scoring the independent branch ({len(independent_seeds)} branches, "
        f"{independent_events} events)")
    other = independent_set(model, thresholds, independent_events, independent_seeds)
    say("measuring the model and the rule book, and running the leakage checks")
    sets = {"own_test": test, "shifted": shifted, "independent": other}
    report = {
        "model": {"name": model.name, "version": model.version, "sha256": model.sha256,
                  "thresholds": {"amber": thresholds.amber, "red": thresholds.red}},
        "data": {"seed": seed, "events": events, "worlds": worlds,
                 "test_split": ("last 20% of each simulated world's time span" if worlds
                                else "last 20% of the simulated time span"),
                 # Another length of the training seed's run moves the cut: days the model trained on
                 # would then be scored as if unseen.
                 "own_test_held_out": (seed != trained[0] or events == trained[1])
                 and (seed != trained[0] or worlds == int(model.manifest.get("worlds", 0))),
                 "shifted_seeds": list(shifted_seeds), "shifted_events": len(shifted.labels),
                 "independent_seeds": list(independent_seeds), "independent_events": len(other.labels)},
        "model_metrics": {key: model_metrics(data) for key, data in sets.items()},
        "rulebook_metrics": {key: rulebook_metrics(data) for key, data in sets.items()},
    }
    # Judged at the alert budget the branches asked for, the operating point that matters.
    own_test = test.subset(np.ones(len(test.labels), bool), "own_test")  # the report's key for it
    report["leakage"] = leakage_checks(train, [own_test, shifted, other], TARGET_LEGIT_ALERTED, seed)
    # The targets are asked of data the model was not tuned on: both the shifted and the independent branch.
    report["targets"] = {key: targets(report["model_metrics"][key]) for key in ("shifted", "independent")}
    return report, sets


# --- a bank's own labelled events ------------------------------------------------------------------

def evaluate_cases(model: FraudModel, items: list[dict], *, thresholds: Thresholds | None = None,
                   source: str = "cases") -> tuple[dict, dict]:
    """(report, scored sets) for labelled events, judged as ``evaluate`` judges a simulated set."""
    thresholds = thresholds or model.thresholds
    data = Scored("cases", items, model, thresholds)
    metrics = model_metrics(data)
    report = {
        "model": {"name": model.name, "version": model.version, "sha256": model.sha256,
                  "thresholds": {"amber": thresholds.amber, "red": thresholds.red}},
        "data": {"cases": source, "events": len(data.labels), "fraud_events": int(data.labels.sum())},
        "model_metrics": {"cases": metrics},
        "rulebook_metrics": {"cases": rulebook_metrics(data)},
        "targets": {"cases": targets(metrics)},
    }
    # The thresholds that would hold this file's honest customers to the branch's alert budget, as
    # training sets them; stop-payment hits are red whatever the score, so they take no part.
    free = data.scores < 1.0  # Scored ranks a stop-payment hit at 1.0, above any score the model gives
    if (data.labels[free] == 0).any():
        amber, red = choose_thresholds(data.scores[free], data.labels[free])
        report["suggested_thresholds"] = {"amber": amber, "red": red, "amber_legit_share": AMBER_LEGIT_SHARE,
                                          "red_legit_share": RED_LEGIT_SHARE}
    return report, {"cases": data}


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


SET_TITLES = {"own_test": "own test split (last 20 % of time)", "shifted": "shifted set",
              "independent": "independent branch", "cases": "labelled cases"}
FEW_FRAUD = 30  # below this, a share of fraud caught moves by 3 points or more with one event


def report_text(report: dict) -> str:
    """The report as a teller-manager would read it: a table per set, then the leakage verdict."""
    lines = [f"model {report['model']['name']} {report['model']['version']} "
             f"(amber {report['model']['thresholds']['amber']:.4f}, red {report['model']['thresholds']['red']:.4f})"]
    data = report["data"]
    if not data.get("own_test_held_out", True):
        lines.append(f"warning: seed {data['seed']} with {data['events']} events is not how this "
                     "model was trained, so the own test split may hold days it trained on")
    rows = (("fraud alerted (amber or red)", "recall_alerted"), ("fraud held red", "recall_red"),
            ("legitimate alerted", "legit_alerted_share"), ("legitimate held red", "legit_red_share"),
            ("red precision", "red_precision"))
    for key, m in report["model_metrics"].items():
        r = report["rulebook_metrics"][key]
        title = SET_TITLES.get(key, key)
        if key in ("shifted", "independent"):
            title += " (seeds " + ", ".join(map(str, data[f"{key}_seeds"])) + ")"
        elif key == "cases":
            title += f" ({data['cases']})"
        lines += ["", f"{title}: {m['events']} events, {m['fraud_events']} fraud",
                  f"  {'':32}{'model':>10}{'rule book':>12}"]
        lines += [f"  {label:32}{pct(m[k]):>10}{pct(r[k]):>12}" for label, k in rows]
        lines.append(f"  {'average precision':32}{m['average_precision']:>10.3f}{r['average_precision']:>12.3f}")
        lines.append("  model's fraud alerted if amber alerted a given share of legitimate events: "
                     + ", ".join(f"{pct(float(b))} -> {pct(v)}" for b, v in m["recall_at_legit_share"].items()))
        if "first_verdict" in m:
            f = m["first_verdict"]
            lines.append(f"  first verdict alone (before any answers): fraud alerted {pct(f['recall_alerted'])}, "
                         f"legitimate alerted {pct(f['legit_alerted_share'])}, red precision {pct(f['red_precision'])}; "
                         "at a share of legitimate events: "
                         + ", ".join(f"{pct(float(b))} -> {pct(v)}" for b, v in f["recall_at_legit_share"].items()))
        c = m.get("coached_victims")
        if c and c["events"]:
            lines.append(f"  coached victims ({c['events']} events): model {pct(c['recall_alerted'])}, rule book "
                         f"{pct(r['coached_victims']['recall_alerted'])}")
        if m["fraud_events"] < FEW_FRAUD:
            lines.append(f"  warning: only {m['fraud_events']} fraud events; each one moves the fraud shares by "
                         f"{pct(1 / max(m['fraud_events'], 1))}")
        if m["alerted_share_by_typology"]:
            budgets = [b for b in m.get("alerted_share_by_typology_at_legit_share", {}) if float(b) <= 0.02]
            lines.append(f"  alerted share by typology:{'':7}{'events':>8}{'model':>10}{'rule book':>12}"
                         + "".join(f"{'model@' + pct(float(b)).replace(' ', ''):>13}" for b in budgets))
            for name, share in m["alerted_share_by_typology"].items():
                kind = "fraud" if name in m["fraud_typologies"] else "legit"
                at = [m["alerted_share_by_typology_at_legit_share"][b].get(name) for b in budgets]
                lines.append(f"    {name:18} {kind:6}{m.get('events_by_typology', {}).get(name, ''):>14}"
                             f"{pct(share):>10}{pct(r['alerted_share_by_typology'].get(name)):>12}"
                             + "".join(f"{pct(v):>13}" for v in at))
    leak = report.get("leakage")
    if leak:
        lines += ["", f"leakage checks (fitted on the own training split, judged at "
                      f"{pct(leak['legit_alerted_share'])} of legitimate events alerted):"]
        for name, res in leak["sets"].items():
            lines.append(f"  {name}: amount-only catches {pct(res['amount_only']['recall'])} "
                         f"(AP {res['amount_only']['average_precision']:.3f}), shuffled labels catch "
                         f"{pct(res['shuffled_labels']['recall'])} (AP {res['shuffled_labels']['average_precision']:.3f}, "
                         f"fraud share {pct(res['fraud_share'])}) -> {'ok' if res['passed'] else 'LEAK'}")
    if "suggested_thresholds" in report:
        t = report["suggested_thresholds"]
        lines += ["", f"thresholds that alert at most {pct(t['amber_legit_share'])} (amber) and "
                      f"{pct(t['red_legit_share'])} (red) of these legitimate events: "
                      f"--amber {t['amber']!r} --red {t['red']!r}"]
    for key, checks in report["targets"].items():
        lines += ["", f"targets on the {SET_TITLES.get(key, key)}:"]
        for name, t in checks.items():
            lines.append(f"  {name:22} target {pct(t['target'])}, measured {pct(t['measured'])}: "
                         f"{'met' if t['met'] else 'NOT MET'}")
    met, total = targets_met(report)
    lines += ["", f"{met} of {total} targets met"]
    return "\n".join(lines) + "\n"


def targets_met(report: dict) -> tuple[int, int]:
    """(met, all) over every set's targets: the evaluation's verdict in two numbers."""
    checks = [t for per_set in report["targets"].values() for t in per_set.values()]
    return sum(1 for t in checks if t["met"]), len(checks)


def plot(sets: dict, report: dict, path) -> None:
    """Precision and recall against the share of all events alerted, model curve and rule-book point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "counterguard"  # stable ids: the committed file only changes with the data
    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 4.2), sharey=True)
    for ax, (key, data) in zip(np.atleast_1d(axes), sets.items()):
        order = np.argsort(-data.scores, kind="stable")
        hit = data.labels[order] == 1
        n = np.arange(1, len(hit) + 1)
        last = np.r_[data.scores[order][1:] != data.scores[order][:-1], True]
        rate, recall, precision = n[last] / len(hit), np.cumsum(hit)[last] / hit.sum(), np.cumsum(hit)[last] / n[last]
        ax.plot(rate, recall, color="tab:blue", label="model recall")
        ax.plot(rate, precision, color="tab:orange", label="model precision")
        for levels, marker, who in ((data.levels, "o", "model"), (data.rule_levels, "s", "rule book")):
            for lv, colour in ((AMBER, "goldenrod"), (RED, "firebrick")):
                alerted = levels != GREEN if lv == AMBER else levels == RED
                r = float(alerted[data.labels == 1].mean())
                p = float((data.labels[alerted] == 1).mean()) if alerted.any() else 0.0
                x = float(alerted.mean())
                label = f"{who} {'amber+red' if lv == AMBER else 'red'}"
                ax.scatter([x], [r], marker=marker, color=colour, edgecolor="black", zorder=3, label=label + " recall")
                ax.scatter([x], [p], marker=marker, facecolor="white", edgecolor=colour, zorder=3,
                           label=label + " precision")
        ax.set_xscale("log")
        ax.set_xlim(1e-3, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("share of all events alerted")
        ax.set_title(f"{data.name}: {len(hit)} events, {int(hit.sum())} fraud")
        ax.grid(True, which="both", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("recall / precision")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{report['model']['name']} {report['model']['version']}: precision and recall against alert rate")
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None} if str(path).endswith(".svg") else None)
    plt.close(fig)
