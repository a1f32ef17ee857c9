"""Drift: how far each gateway's latest inputs and alert rate are from what the model learnt on.

A model trained on last quarter's customers is judged on today's. When a branch's customers change
(a new housing estate, a factory closing, a scam wave that drives a kind of withdrawal), the
inputs move before the outcomes show anything. For every gateway and every model input, the
**population stability index** (PSI) compares the share of its latest events in each of ten bins
with the share of the reference events in the same bins:

    PSI = sum over bins of (window share - reference share) * ln(window share / reference share)

The bins are the reference's deciles (fewer where a feature takes fewer values, as a 0/1 flag
does); an empty bin counts as 0.01 % so the sum stays finite. The usual reading, used here:
below 0.1 stable, 0.1 to 0.25 worth watching, above 0.25 a shift that warrants a look (and a
retraining). The alert rate (amber or red) is compared the same way, as a ratio: more than twice
or less than half the reference rate is flagged.

The reference is, in order of preference, the training data of the model card given (``centre
train`` stores its bins in the card), or the whole fleet's events of the ``reference_days`` before
the window. A gateway with fewer than ``min_events`` events in the window is listed but not judged.

    report = drift(store, now=time.time(), window_days=1, reference_days=28)
    for g in report["gateways"]:
        print(g["gateway_id"], g["worst_feature"], g["worst_psi"], g["warnings"])
"""

from __future__ import annotations

import numpy as np

from counterguard.centre.labels import with_features

from counterguard.core.features import FEATURE_NAMES, FEATURES_VERSION, N_FEATURES

BINS = 10
PSI_WATCH = 0.1
PSI_WARN = 0.25
RATE_BAND = 2.0     # an alert rate beyond twice (or under half) the reference's is flagged
MIN_EVENTS = 50
EMPTY = 1e-4        # the share an empty bin counts as


class DriftError(ValueError):
    """Drift cannot be measured; the message says what is missing."""


def _edges(column: np.ndarray) -> np.ndarray:
    return np.unique(np.quantile(column, np.linspace(0, 1, BINS + 1)[1:-1]))


def _shares(column: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, column, side="right"), minlength=len(edges) + 1)
    return counts / max(1, len(column))


def psi(reference: np.ndarray, window: np.ndarray) -> float:
    r, w = np.maximum(reference, EMPTY), np.maximum(window, EMPTY)
    return float(((w - r) * np.log(w / r)).sum())


def reference_from_rows(x: np.ndarray, alerted: np.ndarray | None = None) -> dict:
    """Bins and shares of every feature over reference rows, as a model card keeps them."""
    edges = [_edges(x[:, j]) for j in range(x.shape[1])]
    return {"features_version": FEATURES_VERSION, "events": int(len(x)),
            "edges": [[float(v) for v in e] for e in edges],
            "shares": [[round(float(v), 6) for v in _shares(x[:, j], e)] for j, e in enumerate(edges)],
            "alert_rate": None if alerted is None else round(float(np.mean(alerted)), 6)}


def _matrix(events: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    usable = with_features(events)
    x = np.asarray([e["features"] for e in usable], np.float64).reshape(-1, N_FEATURES)
    alerted = np.asarray([e["level"] != "green" for e in usable], bool)
    return x, alerted


def drift(store, *, now: float, window_days: float = 1.0, reference_days: float = 28.0,
          reference: dict | None = None, min_events: int = MIN_EVENTS) -> dict:
    """Per gateway: PSI of every feature and the alert rate of the last ``window_days`` against the
    reference (a card's, or the fleet's ``reference_days`` before the window)."""
    start = now - window_days * 86400.0
    if reference is None:
        past, alerted = _matrix(store.events(since_epoch=start - reference_days * 86400.0, until_epoch=start))
        if len(past) < min_events:
            raise DriftError(f"only {len(past)} uploaded events with features in the {reference_days:g} days before "
                             f"the window: too few for a reference (need {min_events}); give a model card with "
                             "its training bins (--card) or wait for more uploads")
        reference = reference_from_rows(past, alerted)
        source = f"the fleet's {len(past):,} events of the {reference_days:g} days before the window"
    else:
        if reference.get("features_version") != FEATURES_VERSION:
            raise DriftError(f"the reference was made on features version {reference.get('features_version')}, "
                             f"not this release's {FEATURES_VERSION}")
        source = f"the model card's training data ({reference['events']:,} events)"
    edges = [np.asarray(e) for e in reference["edges"]]
    shares = [np.asarray(s) for s in reference["shares"]]
    ref_rate = reference.get("alert_rate")
    by_gateway: dict[str, list[dict]] = {}
    for e in store.events(since_epoch=start, until_epoch=now):
        by_gateway.setdefault(e["gateway_id"], []).append(e)
    gateways = []
    for gateway_id in sorted(by_gateway):
        x, alerted = _matrix(by_gateway[gateway_id])
        row = {"gateway_id": gateway_id, "events": int(len(x)), "judged": len(x) >= min_events,
               "alert_rate": round(float(alerted.mean()), 4) if len(x) else None,
               "reference_alert_rate": ref_rate, "psi": {}, "worst_feature": None, "worst_psi": None,
               "warnings": []}
        if row["judged"]:
            values = {name: round(psi(shares[j], _shares(x[:, j], edges[j])), 4) for j, name in enumerate(FEATURE_NAMES)}
            row["psi"] = values
            row["worst_feature"] = max(values, key=values.get)
            row["worst_psi"] = values[row["worst_feature"]]
            row["warnings"] = [f"{name} shifted (PSI {v:.2f})" for name, v in sorted(values.items(), key=lambda kv: -kv[1])
                               if v > PSI_WARN]
            rate = row["alert_rate"]
            if ref_rate and rate is not None and (rate > RATE_BAND * ref_rate or rate < ref_rate / RATE_BAND):
                row["warnings"].append(f"alert rate {rate:.1%} against {ref_rate:.1%} in the reference")
            elif not ref_rate and rate and rate > 0:
                row["warnings"].append(f"alert rate {rate:.1%} against none in the reference")
        gateways.append(row)
    return {"window_days": window_days, "reference": source, "psi_watch": PSI_WATCH, "psi_warn": PSI_WARN,
            "rate_band": RATE_BAND, "min_events": min_events, "gateways": gateways}


def text(report: dict) -> str:
    lines = [f"drift of the last {report['window_days']:g} day(s) against {report['reference']} "
             f"(PSI above {report['psi_warn']} is flagged)",
             f"{'gateway':<16} {'events':>7} {'alert rate':>10} {'worst input':<28} {'PSI':>6}  warnings"]
    for g in report["gateways"]:
        rate = "-" if g["alert_rate"] is None else f"{g['alert_rate']:.1%}"
        if not g["judged"]:
            lines.append(f"{g['gateway_id']:<16} {g['events']:>7} {rate:>10} {'(too few events to judge)':<28}")
            continue
        lines.append(f"{g['gateway_id']:<16} {g['events']:>7} {rate:>10} {g['worst_feature']:<28} "
                     f"{g['worst_psi']:>6.2f}  {'; '.join(g['warnings']) or '-'}")
    return "\n".join(lines)


def worst(report: dict) -> dict:
    """gateway_id -> {worst_feature, worst_psi, alert_rate, warnings}, for the fleet view."""
    return {g["gateway_id"]: {k: g[k] for k in ("worst_feature", "worst_psi", "alert_rate", "warnings", "judged")}
            for g in report["gateways"]}

