"""Champion against challenger: the model in force and its shadow, on the very same labelled events.

While a challenger runs in shadow (``centre push-model --shadow``) every gateway scores each event
with both and uploads both scores. ``counterguard centre compare`` takes the uploaded events that
carry the challenger's score, joins every label the centre has (centre/labels.py), and judges the
two at **equal alert budgets**: for each budget (0.5, 1 and 2 % of honest customers alerted), the
score cut each model would need to stay within it, and the share of fraud it catches there. Equal
budgets, not each model's own thresholds: a model that alerts more always "catches more", which
says nothing.

Every figure carries the number of labels behind it and a 95 % Wilson interval; with a handful of
fraud labels the intervals overlap and the report says the data cannot tell the two apart yet.
Per typology where imported cases name one.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from counterguard.centre.labels import labelled_events, labels_complete_before
from counterguard.centre.learning import BUDGETS, paired, paired_line, recall_at

FEW_FRAUD = 30  # below this, one more fraud caught moves a recall by more than 3 points
SHADOW_DAYS = 7  # a week of the branches' rhythm (salary days, weekends) before a challenger decides
JUDGED_BUDGET = "0.01"  # the alert budget the promotion gate compares at


class CompareError(ValueError):
    """Nothing to compare yet; the message says why."""


def compare(store, *, now: float, honest_after_days: float = 30, since_days: float | None = None,
            challenger: str | None = None) -> dict:
    since = None if since_days is None else now - since_days * 86400.0
    events, _ = labelled_events(store, now=now, honest_after_days=honest_after_days, since_epoch=since)
    # Only events old enough to be fully labelled: among younger ones only the model in force's own
    # alerts carry labels, so its honest customers there are all its false alarms (centre/learning.py).
    mature = labels_complete_before(now, honest_after_days)
    events = [e for e in events if e["ts_epoch"] <= mature]
    shadowed = [e for e in events if e.get("shadow_score") is not None]
    if not shadowed:
        raise CompareError(f"none of the {len(events)} labelled events carries a challenger's score: push one with "
                           "'counterguard centre push-model MODEL --shadow' and let the gateways score for a while "
                           "(an event counts once labelled, or once it is "
                           f"{honest_after_days:g} days old)")
    versions = Counter(e["shadow_version"] for e in shadowed)
    if challenger is None:
        challenger = versions.most_common(1)[0][0]
    mine = [e for e in shadowed if e["shadow_version"] == challenger]
    if not mine:
        raise CompareError(f"no labelled event carries challenger {challenger!r}; those that do: "
                           + ", ".join(f"{v} ({n})" for v, n in versions.most_common()))
    y = np.asarray([e["label"] for e in mine], np.int8)
    champion_scores = np.asarray([e["score"] for e in mine], np.float32)
    challenger_scores = np.asarray([e["shadow_score"] for e in mine], np.float32)

    def both(mask) -> dict:
        return {f"{b:g}": {"model_in_force": recall_at(champion_scores[mask], y[mask], b),
                           "challenger": recall_at(challenger_scores[mask], y[mask], b)} for b in BUDGETS}

    everything = np.ones(len(y), bool)
    typologies = sorted({e.get("typology") for e in mine if e.get("typology")})
    by_typology = {}
    for name in typologies:
        # One typology's fraud against all honest customers: the budget is the same honest population.
        mask = np.asarray([e["label"] == 0 or e.get("typology") == name for e in mine])
        by_typology[name] = both(mask)
    fraud = int(y.sum())
    return {
        "challenger": challenger,
        "models_in_force": dict(Counter(e["model_version"] for e in mine)),
        "events": len(mine), "fraud": fraud, "honest": int((y == 0).sum()),
        "label_sources": dict(Counter(e["label_source"] for e in mine)),
        "from": min(e["ts"] for e in mine), "to": max(e["ts"] for e in mine),
        "gateways": len({e["gateway_id"] for e in mine}),
        "at_budget": both(everything),
        # the same frauds caught by one and missed by the other, and whether that is clearly worse
        "paired": {f"{b:g}": paired(challenger_scores, champion_scores, y, b) for b in BUDGETS},
        "by_typology": by_typology,
        "enough_labels": fraud >= FEW_FRAUD,
    }


def _cell(figure: dict) -> str:
    if figure["recall"] is None:
        return "-"
    lo, hi = figure["interval_95"]
    return f"{figure['recall']:.1%} [{lo:.0%}-{hi:.0%}]"


def text(report: dict) -> str:
    lines = [f"challenger {report['challenger']} against the model in force "
             f"({', '.join(f'{v} on {n}' for v, n in report['models_in_force'].items())} events)",
             f"{report['events']} labelled events from {report['gateways']} gateway(s), {report['from']} to "
             f"{report['to']}: {report['fraud']} fraud, {report['honest']} honest (labels: "
             + ", ".join(f"{k} {n}" for k, n in sorted(report["label_sources"].items())) + ")",
             f"{'':<20} {'alert budget':<13} {'model in force':>22} {'challenger':>22} {'fraud labels':>13}"]
    rows = [("all", report["at_budget"])] + sorted(report["by_typology"].items())
    for name, figures in rows:
        for budget, pair in figures.items():
            lines.append(f"{name:<20} {float(budget):<13.1%} {_cell(pair['model_in_force']):>22} "
                         f"{_cell(pair['challenger']):>22} {pair['challenger']['fraud_labels']:>13}")
    lines.append(paired_line(report["paired"][JUDGED_BUDGET])
                 + " (the model in force's own alerts made the labels, so its figures lean its way)")
    if not report["enough_labels"]:
        lines.append(f"only {report['fraud']} fraud labels: the intervals are wide; wait for more outcomes or "
                     "import confirmed cases before promoting")
    return "\n".join(lines)


def promotion_problems(store, *, now: float, honest_after_days: float, challenger: str | None = None) -> list[str]:
    """Why a challenger may not yet become the model in force, or [] when its shadow was judged:
    at least SHADOW_DAYS of shadowed events, FEW_FRAUD fraud labels, and a recall at the 1 %
    budget not clearly worse than the model in force's on the same events (centre/learning.py ``paired``:
    the model in force's own alerts made the labels, so it is called worse only when the model in
    force catches clearly more of the same frauds)."""
    try:
        report = compare(store, now=now, honest_after_days=honest_after_days, challenger=challenger)
    except CompareError as exc:
        return [str(exc)]
    problems = []
    from datetime import datetime

    span = (datetime.fromisoformat(report["to"]) - datetime.fromisoformat(report["from"])).total_seconds() / 86400
    if span < SHADOW_DAYS:
        problems.append(f"its shadow covers {span:.1f} days of labelled events ({report['from']} to {report['to']}); "
                        f"judge it over at least {SHADOW_DAYS} days")
    if not report["enough_labels"]:
        problems.append(f"only {report['fraud']} fraud labels stand behind the comparison; at least {FEW_FRAUD} are "
                        "needed (wait for outcomes, or import confirmed cases with 'centre label')")
    pair, same = report["at_budget"][JUDGED_BUDGET], report["paired"][JUDGED_BUDGET]
    mine, theirs = pair["challenger"]["recall"], pair["model_in_force"]["recall"]
    if same["verdict"] == "worse":
        problems.append(f"at the 1 % alert budget it catches {mine:.1%} of fraud against {theirs:.1%} for the model "
                        f"in force on the same events: {same['in_force_only']} frauds only the model in force "
                        f"catches, {same['challenger_only']} only the challenger (z = {same['z']:.2f}, clearly worse)")
    return problems
