"""Escalation: a red alert nobody acknowledges in time sounds the supervisor's buzzer again and
reaches the centre as `unacknowledged` - on a real broker, mock pins and a real store."""

from __future__ import annotations

import time

import pytest

from counterguard.gateway.ops.app import Gateway
from counterguard.core.clock import Clock, Stamp
from counterguard.gateway.branch.escalation import EscalationWatch
from counterguard.gateway.counter.lamps import PANEL_BEEPS, LampBoard
from counterguard.gateway.branch.lifecycle import Lifecycle
from counterguard.hardware.pinmap import default_pinmap_path, load_pinmap
from counterguard.gateway.store.db import Store
from counterguard.gateway.counter.terminal import TellerTerminal

from conftest import wait_until
from harness import gateway_config, intercept, pty_pair

PINMAP = load_pinmap(default_pinmap_path())
ESCALATION_FIELDS = {"type", "gateway_id", "alert_id", "counter", "level", "reason", "waited_s", "at", "mono",
                     "time_synced", "seq", "region", "branch", "historical"}


def beeps(pin) -> int:
    states = [s.state for s in pin.states]
    return sum(1 for a, b in zip(states, states[1:]) if b and not a)


def test_an_unacknowledged_red_is_escalated_once_and_the_buzzer_sounds_again(tmp_path, broker, centre, factory):
    with pty_pair() as (master, path):
        cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path)
        cfg = cfg.with_changes("supervisor", escalate_after_s=1.0)
        with Gateway(cfg, pin_factory=factory) as gw:
            terminal = TellerTerminal(master, timeout=2.0)
            buzzer = factory.pin(PINMAP.supervisor.buzzer)
            assert terminal.send(intercept(counter=3, event_id="late-1")).body["level"] == "red"
            alert = gw.store.open_alerts()[0]
            assert centre.wait_for(lambda r: len(r.escalations) == 1, timeout=20)
            esc = centre.escalations[0]
            assert set(esc) == ESCALATION_FIELDS
            assert (esc["alert_id"], esc["counter"], esc["level"], esc["reason"]) == (alert.alert_id, 3, "red",
                                                                                      "unacknowledged")
            assert esc["waited_s"] >= 1.0 and esc["seq"] > centre.alerts[0]["seq"]
            # Beeped again: more beeps than the single round a new red alert gets.
            assert wait_until(lambda: beeps(buzzer) > PANEL_BEEPS, timeout=10)
            assert gw.lamps.states()[3] == "red"  # still waiting for the supervisor
            # Once per alert: further looks find nothing more to escalate.
            assert gw.escalation.check() == []
            assert gw.store.alert_view(alert.alert_id).escalated_wall is not None
            # Acknowledging it afterwards is still possible and reaches the centre too.
            gw.acknowledge(by="S3", via="console")
            assert centre.wait_for(lambda r: len(r.acks) == 1, timeout=20)
            assert len(centre.escalations) == 1


@pytest.fixture
def parts(tmp_path, factory):
    store = Store(tmp_path / "gateway.db")
    lamps = LampBoard.from_pinmap(PINMAP, pin_factory=factory)
    clock = Clock(assume_synced=True)
    lifecycle = Lifecycle(store, lamps, clock, gateway_id="gw-test")
    watch = EscalationWatch(store, lamps, lifecycle, clock, after_s=120, gateway_id="gw-test")
    yield store, lamps, lifecycle, watch
    lamps.close()
    store.close()


def _raise(store, n, level="red", counter=1, wall=None):
    from counterguard.core.decision import Verdict
    from counterguard.core.events import parse_event

    ev = parse_event({"event_id": f"ev-{n}", "ts": "2024-05-06T09:30:00+08:00", "counter": counter,
                      "kind": "cash_withdrawal", "account": "6222020200000000101", "amount": 50000.0})
    v = Verdict(ev.event_id, level, 0.95, ("large_cash",), "Hold - call supervisor", counter)
    return store.record_verdict(ev, b"{}", f"sha-{n}", v, Stamp(wall or time.time(), time.monotonic(), True),
                                model_version="m-1", watchlist_version=1, gateway_id="gw-test")


def test_only_reds_still_open_after_the_timeout_are_escalated(parts):
    store, lamps, lifecycle, watch = parts
    now = time.time()
    late = _raise(store, 1, wall=now - 200)
    answered = _raise(store, 2, wall=now - 300)
    _raise(store, 3, wall=now - 10)                    # not yet due
    _raise(store, 4, level="amber", wall=now - 500)    # amber is never escalated
    lifecycle.acknowledge(answered.alert_id, by="S1", via="console")
    done = watch.check(now_wall=now)
    assert [e.alert_id for e in done] == [late.alert_id]
    assert done[0].reason == "unacknowledged" and done[0].waited_s >= 200
    assert watch.check(now_wall=now + 1000) != [] and watch.check(now_wall=now + 2000) == []  # #3 once, then none
    assert store.outbox_depth() == 4 + 1 + 2  # four alerts, one acknowledgement, two escalations
