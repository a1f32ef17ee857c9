"""Canary and rollback: a challenger becomes the model in force on a few gateways first, and goes back
by itself when those gateways' alert rate or red precision leaves its band.

``counterguard centre promote --canary 10`` takes the challenger running in shadow (its model as
the centre signed it) and pushes it as the model in force to a deterministic 10 % of the gateways
(the same gateways for the same challenger however often it is run: ranked by sha256 of the
challenger's version and the gateway id). ``promote --all`` then pushes it to every gateway.

While a canary runs, the centre (``centre run`` / ``centre serve``, every ``check_every_s``)
watches each canary gateway's uploaded events decided by the challenger. When one gateway's alert
rate leaves ``[canary] alert_rate_min .. alert_rate_max`` over at least ``min_events`` events, or
the red precision of the challenger's red alerts with outcomes falls below ``red_precision_min``
over at least ``min_judged_reds``, the whole group goes back to the previous model: a signed
model manifest with ``"rollback": true``, which a gateway applies at once, even while red alerts
are open (a model that holds every customer must not wait for the branch to clear its alerts). It
is logged, recorded with its reason, and shown on the dashboard. ``counterguard centre rollback``
does the same by hand.

The previous model is the one last pushed to all gateways, or the bundled model if none was; a
gateway keeps the models it held on disk, and the manifest carries the model's bytes too (about
10 kB), so a gateway that was offline during the canary can still take it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

JUSTIFIED = ("confirmed_fraud", "customer_dissuaded", "police_called")


class CanaryError(ValueError):
    """A promotion or rollback cannot be made; the message says why."""


@dataclass
class Band:
    alert_rate_max: float = 0.05      # amber or red, of the challenger's verdicts at one gateway
    alert_rate_min: float = 0.0
    red_precision_min: float = 0.2
    min_events: int = 20              # a gateway's rate is judged over at least this many events
    min_judged_reds: int = 10         # red precision over at least this many reds with an outcome
    check_every_s: float = 10.0


def sample(gateway_ids, percent: float, salt: str) -> list[str]:
    """A deterministic ``percent`` of the gateways (at least one)."""
    if not 0 < percent <= 100:
        raise CanaryError(f"--canary takes a percentage above 0 and at most 100, got {percent:g}")
    ranked = sorted(gateway_ids, key=lambda g: hashlib.sha256(f"{salt}\0{g}".encode()).hexdigest())
    return sorted(ranked[:max(1, math.ceil(len(ranked) * percent / 100))])


def _bundled() -> tuple[bytes, dict]:
    from counterguard import models

    path = Path(models.__file__).resolve().parent / "counterguard-v1.tflite"
    return path.read_bytes(), json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))


def _model(store, kind: str, version: int) -> tuple[bytes, dict]:
    body = store.manifest_body(kind, version)
    if body is None or "tflite_b64" not in body:
        raise CanaryError(f"the centre holds no {kind} manifest v{version} with a model in it")
    return base64.b64decode(body["tflite_b64"]), body["card"]


def challenger(store, version: str | None = None) -> dict:
    """The latest shadow manifest with a model (or the one of ``version``)."""
    shadows = [m for m in store.manifests("shadow") if not m["summary"].get("retired")]
    if version is not None:
        shadows = [m for m in shadows if m["summary"].get("model_version") == version]
    if not shadows:
        raise CanaryError("no challenger to promote: push one first with 'counterguard centre push-model MODEL "
                          "--shadow'" + (f" (none of version {version})" if version else ""))
    return shadows[-1]


def champion(store) -> tuple[str, int | None, bytes, dict]:
    """(model version, manifest version or None, bytes, card) of the model in force fleet-wide."""
    everywhere = [m for m in store.manifests("model") if m["target"] == "all"]
    if everywhere:
        last = everywhere[-1]
        data, card = _model(store, "model", last["version"])
        return str(card.get("version")), last["version"], data, card
    data, card = _bundled()
    return str(card.get("version")), None, data, card


def promote(store, downlink, *, percent: float | None = None, everywhere: bool = False,
            version: str | None = None, now: float) -> list:
    """Make the challenger the model in force on a canary group (``percent``) or on every gateway."""
    shadow = challenger(store, version)
    data, card = _model(store, "shadow", shadow["version"])
    name = str(card.get("version"))
    if everywhere:
        pushed = [downlink.push_model_bytes("all", data, card, note=f"promoted from shadow v{shadow['version']}")]
        for canary in store.canaries(active_only=True):
            store.end_canary(canary["id"], state="promoted", reason="promoted to all gateways", at=now)
        log.info("centre: challenger %s promoted to every gateway", name)
        return pushed
    gateways = [g["gateway_id"] for g in store.gateways()]
    if not gateways:
        raise CanaryError("the centre has heard from no gateway yet: nothing to promote to")
    group = sample(gateways, percent, name)
    previous, previous_manifest, _, _ = champion(store)
    pushed = [downlink.push_model_bytes(f"gateway/{g}", data, card, note=f"canary of shadow v{shadow['version']}")
              for g in group]
    store.start_canary(challenger=name, challenger_manifest=shadow["version"], previous=previous,
                       previous_manifest=previous_manifest, gateways=group, percent=percent, started_at=now)
    log.info("centre: challenger %s is the model in force on %d canary gateway(s): %s", name, len(group),
             ", ".join(group))
    return pushed


def check(store, band: Band, *, now: float) -> list[tuple[dict, str]]:
    """Active canaries whose gateways left the band, each with the reason."""
    out = []
    for canary in store.canaries(active_only=True):
        reason = _outside(store, canary, band)
        if reason:
            out.append((canary, reason))
    return out


def _outside(store, canary: dict, band: Band) -> str | None:
    group = set(canary["gateways"])
    since = canary["started_at"] - 300.0  # terminal clocks may run a little behind the centre's
    rates = {}
    for e in store.events(since_epoch=since):
        if e["gateway_id"] in group and e["model_version"] == canary["challenger"]:
            n, alerts = rates.get(e["gateway_id"], (0, 0))
            rates[e["gateway_id"]] = (n + 1, alerts + (e["level"] != "green"))
    for gateway_id, (n, alerts) in sorted(rates.items()):
        rate = alerts / n
        if n >= band.min_events and not band.alert_rate_min <= rate <= band.alert_rate_max:
            return (f"{gateway_id}: alert rate {rate:.1%} over {n} events decided by {canary['challenger']}, "
                    f"outside {band.alert_rate_min:.1%}-{band.alert_rate_max:.1%}")
    judged = justified = 0
    outcomes = {(o["gateway_id"], o["alert_id"]): o["outcome"] for o in store.outcomes()}
    for alert in store.canary_alerts(sorted(group), canary["challenger"], since):
        outcome = outcomes.get((alert["gateway_id"], alert["alert_id"]))
        if outcome is not None and alert["level"] == "red":
            judged += 1
            justified += outcome in JUSTIFIED
    if judged >= band.min_judged_reds and justified / judged < band.red_precision_min:
        return (f"red precision {justified / judged:.0%} over {judged} judged reds of {canary['challenger']}, "
                f"below {band.red_precision_min:.0%}")
    return None


def rollback(store, downlink, canary: dict, *, reason: str, now: float) -> list:
    """Put the previous model back on the canary's gateways, at once; returns the manifests to publish."""
    if canary["previous_manifest"] is not None:
        data, card = _model(store, "model", canary["previous_manifest"])
    else:
        data, card = _bundled()
    pushed = [downlink.push_model_bytes(f"gateway/{g}", data, card, rollback=True, note=f"rollback: {reason}")
              for g in canary["gateways"]]
    store.end_canary(canary["id"], state="rolled_back", reason=reason, at=now)
    log.warning("centre: ROLLBACK of challenger %s on %s to %s: %s", canary["challenger"],
                ", ".join(canary["gateways"]), card.get("version"), reason)
    return pushed
