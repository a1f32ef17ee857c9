"""A thousand branch gateways against one mosquitto and the real centre (``counterguard centre run``),
with the broker restarted mid-run: every alert is stored once at the centre, every gateway's outbox
empties, the reconnects are spread by the jittered back-off, and the fleet view shows every gateway
back online in its new session. The fleet is tests/fleet_sim.py (the same as bench/fleet.py runs).

The whole rehearsal runs once for this module (about half a minute on a shared 2-core machine);
each test below checks one thing users rely on. ``-s`` prints the reconnect histogram.
"""

from __future__ import annotations

import pytest

from counterguard.centre.store import open_store
from fleet_sim import fleet_view, histogram, percentile, rehearse_broker_restart, spread_problems
from counterguard.gateway.link.broker import PrivateBroker

GATEWAYS = 1000
PER_GATEWAY = 5
OUTAGE_S = 4.0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("fleet") / "centre.db")
    with PrivateBroker() as broker:
        result = rehearse_broker_restart(broker, store, gateways=GATEWAYS, processes=4, per_gateway=PER_GATEWAY,
                                         outage_s=OUTAGE_S, timeout=90, say=print)
    result.store = store
    return result


def test_every_alert_raised_is_stored_exactly_once_at_the_centre(run):
    assert run.stored_at is not None, f"the centre did not get every alert: {run.centre_counts}\n{run.centre_errors}"
    sent = run.sent()
    assert len(sent) == GATEWAYS * PER_GATEWAY
    # The outage mattered: alerts were raised while the broker was down, and kept.
    assert run.raised_during_outage() > 0
    with open_store(run.store) as store:
        records = store.records(kind="alert", limit=10 * len(sent))
        quarantined = store.quarantine_count()
    stored = {(r["gateway_id"], r["seq"]): r["alert_id"] for r in records}
    assert len(records) == len(stored) == len(sent), "an alert was stored twice or lost"
    assert stored == sent, "the centre's alerts are not exactly the ones the gateways raised"
    assert len({r["alert_id"] for r in records}) == len(records)
    assert quarantined == 0
    print(f"centre: {run.centre_counts} (duplicates are resends after the restart, stored once)")


def test_every_gateway_outbox_is_empty_after_the_restart(run):
    assert run.drained_at is not None, "some gateways still hold unreceipted alerts"
    left = {gw["gateway_id"]: gw["outbox"] for gw in run.reports if gw["outbox"]}
    assert not left, f"unreceipted alerts left in {len(left)} outboxes, e.g. {list(left.items())[:3]}"
    assert all(len(gw["sent"]) == PER_GATEWAY for gw in run.reports)


def test_every_gateway_lost_the_broker_and_came_back(run):
    assert len(run.reports) == GATEWAYS
    lost = [gw["gateway_id"] for gw in run.reports if not any(run.stopped_at <= t for t in gw["losses"])]
    assert not lost, f"{len(lost)} gateways never noticed the broker going away, e.g. {lost[:3]}"
    never = [gw["gateway_id"] for gw, d in zip(run.reports, run.delays()) if d is None]
    assert not never, f"{len(never)} gateways did not reconnect, e.g. {never[:3]}"
    assert run.back_at is not None


def test_reconnects_are_spread_by_the_jittered_backoff(run):
    delays, waits = run.delays(), run.waits()
    assert None not in delays and None not in waits
    text = histogram(delays)
    print(f"\nreconnect delay after the broker came back ({GATEWAYS} gateways, {OUTAGE_S:.0f} s outage):\n{text}")
    # Plain exponential back-off brings the whole fleet back in one wave (bench/fleet.py --control
    # shows it failing exactly these checks); the jitter spreads it over seconds.
    assert not spread_problems(delays, waits), f"{spread_problems(delays, waits)}\n{text}"
    assert percentile(delays, 0.9) - percentile(delays, 0.1) >= 1.0, text


def test_fleet_view_shows_every_gateway_online_in_its_new_session(run):
    view = {row["gateway_id"]: row for row in fleet_view(run.store)}
    assert len(view) == GATEWAYS
    not_online = [g for g, row in view.items() if row["presence"] != "online"]
    assert not not_online, f"{len(not_online)} gateways not shown online, e.g. {not_online[:3]}"
    stale = [gw["gateway_id"] for gw in run.reports if view[gw["gateway_id"]]["bdseq"] != gw["bdseq"]]
    assert not stale, f"{len(stale)} gateways shown with an old session, e.g. {stale[:3]}"
    assert all(gw["bdseq"] > 1 for gw in run.reports)  # the session after the restart, not the first one
