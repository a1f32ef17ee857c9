"""Drift per gateway and per model input: a shifted feature and a jumped alert rate are flagged, an
unshifted gateway is not; the centre's fleet view and dashboard API carry it (real centre store,
real CLI, real dashboard over HTTP)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone

import numpy as np
import pytest

from counterguard.centre import drift
from counterguard.centre.schema import Record
from counterguard.centre.store import open_store
from counterguard.centre.web import Dashboard
from counterguard.core.features import FEATURE_NAMES, FEATURES_VERSION, N_FEATURES

NOW = time.time()
AMOUNT = FEATURE_NAMES.index("log_amount")
AGE = FEATURE_NAMES.index("customer_age")


def rows(rng, n: int, *, start: float, span_s: float, shift: float = 0.0, alert_share: float = 0.01, prefix: str):
    x = rng.normal(0.0, 1.0, (n, N_FEATURES))
    x[:, FEATURE_NAMES.index("large_cash")] = rng.random(n) < 0.05  # a 0/1 flag: two bins, not ten
    x[:, AMOUNT] += shift
    when = start + rng.random(n) * span_s
    alerted = rng.random(n) < alert_share
    return [{"event_id": f"{prefix}-{i}", "counter": 1, "kind": "cash_withdrawal", "amount": 100.0,
             "ts": datetime.fromtimestamp(when[i], timezone.utc).isoformat(), "account_hash": None,
             "level": "amber" if alerted[i] else "green", "score": 0.1, "reasons": [], "model_version": "2.0.0",
             "watchlist_version": 1, "features": [round(float(v), 5) for v in x[i]], "shadow_score": None,
             "shadow_version": None, "decided_at": "2026-12-01T00:00:00Z"} for i in range(n)]


def upload(store, gateway_id: str, events: list[dict]) -> None:
    store.ingest([Record("events", "610100", "b0231", gateway_id,
                         {"type": "events", "gateway_id": gateway_id, "seq": 1, "features_version": FEATURES_VERSION,
                          "events": events})])


@pytest.fixture
def fleet(tmp_path):
    rng = np.random.default_rng(3)
    day = 86400.0
    with open_store(tmp_path / "centre.db") as store:
        for gw in ("gw-steady", "gw-moved"):  # four weeks alike
            upload(store, gw, rows(rng, 3000, start=NOW - 29 * day, span_s=28 * day, prefix=f"{gw}-past"))
        upload(store, "gw-steady", rows(rng, 400, start=NOW - day, span_s=day - 60, prefix="steady-today"))
        # Today at the other branch: far larger amounts, and five times the alerts.
        upload(store, "gw-moved", rows(rng, 400, start=NOW - day, span_s=day - 60, shift=1.5, alert_share=0.05,
                                       prefix="moved-today"))
        upload(store, "gw-quiet", rows(rng, 12, start=NOW - day, span_s=day - 60, prefix="quiet-today"))
    return tmp_path / "centre.db"


def test_a_shifted_input_and_a_jumped_alert_rate_are_flagged_and_a_steady_gateway_is_not(fleet):
    with open_store(fleet) as store:
        report = drift.drift(store, now=NOW)
    by = {g["gateway_id"]: g for g in report["gateways"]}
    moved, steady, quiet = by["gw-moved"], by["gw-steady"], by["gw-quiet"]
    assert moved["worst_feature"] == "log_amount" and moved["psi"]["log_amount"] > drift.PSI_WARN
    assert moved["psi"]["customer_age"] < drift.PSI_WATCH  # unshifted inputs of the same gateway stay quiet
    assert any(w.startswith("log_amount shifted") for w in moved["warnings"])
    assert any(w.startswith("alert rate") for w in moved["warnings"])
    assert steady["warnings"] == [] and max(steady["psi"].values()) < drift.PSI_WARN
    assert steady["psi"]["large_cash"] < drift.PSI_WATCH
    assert (quiet["judged"], quiet["events"], quiet["warnings"]) == (False, 12, [])
    assert "6,000 events of the 28 days before the window" in report["reference"]


def test_the_drift_command_and_the_fleet_view_show_it(fleet):
    done = subprocess.run([sys.executable, "-m", "counterguard", "centre", "drift", "--store", str(fleet)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    moved = next(line for line in done.stdout.splitlines() if line.startswith("gw-moved"))
    assert "log_amount" in moved and "alert rate" in moved
    quiet = next(line for line in done.stdout.splitlines() if line.startswith("gw-quiet"))
    assert "too few events" in quiet
    with open_store(fleet) as store:  # the fleet lists gateways that sent a status; give them one
        for gw in ("gw-steady", "gw-moved"):
            store.ingest([Record("status", "610100", "b0231", gw,
                                 {"state": "online", "bdseq": 1, "ts": "2026-12-01T00:00:00Z", "gateway_id": gw})])
    shown = subprocess.run([sys.executable, "-m", "counterguard", "centre", "fleet", "--store", str(fleet)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "WARNING: log_amount shifted" in next(line for line in shown.stdout.splitlines() if "gw-moved" in line)
    with Dashboard(open_store(fleet), host="127.0.0.1", port=0) as dashboard:
        data = json.load(urllib.request.urlopen(dashboard.url + "api/fleet", timeout=10))
    got = {g["gateway_id"]: g["drift"] for g in data["gateways"]}
    assert got["gw-moved"]["worst_feature"] == "log_amount" and got["gw-moved"]["warnings"]
    assert got["gw-steady"]["warnings"] == []


def test_with_too_little_history_drift_says_so(tmp_path):
    with open_store(tmp_path / "centre.db"):
        pass
    done = subprocess.run([sys.executable, "-m", "counterguard", "centre", "drift", "--store",
                           str(tmp_path / "centre.db")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "too few for a reference" in done.stderr
