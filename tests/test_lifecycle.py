"""An alert's whole life at the branch with real parts: a pty counter line, a real mosquitto on a
free loopback port, gpiozero mock pins, the TFLite model, SQLite files, and the stand-in centre."""

from __future__ import annotations

import sqlite3
import time

import pytest

from counterguard.gateway.ops.app import Gateway
from counterguard.core.clock import Stamp
from counterguard.hardware.pinmap import default_pinmap_path, load_pinmap
from counterguard.gateway.store.db import MIGRATIONS, LifecycleError, Store, UnknownAlert
from counterguard.gateway.counter.terminal import TellerTerminal

from conftest import wait_until
from harness import event, gateway_config, intercept, pty_pair

PINMAP = load_pinmap(default_pinmap_path())
OUTCOME_FIELDS = {"type", "gateway_id", "alert_id", "counter", "outcome", "note", "by", "via", "at", "mono",
                  "time_synced", "seq", "region", "branch", "historical"}


@pytest.fixture
def running(tmp_path, broker, factory):
    with pty_pair() as (master, path):
        cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path)
        gw = Gateway(cfg, pin_factory=factory)
        gw.start()
        yield gw, TellerTerminal(master, timeout=2.0)
        gw.stop()


def lamp(factory, counter, level):
    return factory.pin(getattr(PINMAP.counters[counter], level)).state


def supervisor_lamp(factory):
    return factory.pin(PINMAP.supervisor.red).state


def press_acknowledge(factory):
    button = factory.pin(PINMAP.supervisor.acknowledge)
    button.drive_low()
    time.sleep(0.05)
    button.drive_high()


def blinks(factory, counter) -> bool:
    """The amber lamp is seen both on and off (blinking), while green and red stay dark."""
    amber = factory.pin(PINMAP.counters[counter].amber)
    amber.clear_states()
    seen = set()

    def toggled():
        seen.add(amber.state)
        return seen == {True, False}

    return wait_until(toggled, timeout=10) and not lamp(factory, counter, "red") and not lamp(factory, counter, "green")


def test_a_red_alert_goes_from_frame_to_closed_with_the_lamps_at_each_step(running, centre, factory):
    gw, terminal = running
    # Raised: red steady at counter 3, the supervisor's lamp on.
    reply = terminal.send(intercept(counter=3, event_id="life-1"))
    assert reply.body["level"] == "red"
    # The teller's terminal gets a human line saying what to do.
    assert reply.body["text"].startswith("Hold: 50,000 yuan or more") and reply.body["text"].endswith("call supervisor")
    assert wait_until(lambda: lamp(factory, 3, "red") and supervisor_lamp(factory), timeout=10)  # lamps follow the ACK
    assert gw.lamps.states()[3] == "red"
    alert_id = gw.store.open_alerts()[0].alert_id

    # Acknowledged with the panel button: red goes out, amber blinks until an outcome.
    press_acknowledge(factory)
    assert wait_until(lambda: not lamp(factory, 3, "red"), timeout=10)
    assert blinks(factory, 3)
    assert not supervisor_lamp(factory)
    assert gw.lamps.states()[3] == "amber-blinking"
    view = gw.store.alert_view(alert_id)
    assert (view.state, view.ack_by, view.ack_via) == ("acknowledged", "supervisor", "button")

    # Outcome recorded: the lamp goes out and the alert is closed.
    record = gw.record_outcome(alert_id, "customer_dissuaded", note="son called; she kept her money", by="S1024")
    assert wait_until(lambda: gw.lamps.states()[3] == "off", timeout=10)
    assert not any(lamp(factory, 3, level) for level in ("green", "amber", "red"))
    view = gw.store.alert_view(alert_id)
    assert (view.state, view.outcome, view.outcome_by, view.note) == (
        "closed", "customer_dissuaded", "S1024", "son called; she kept her money")

    # Every step reached the centre, in one seq sequence, and was receipted.
    assert centre.wait_for(lambda r: len(r.outcomes) == 1 and len(r.acks) == 1, timeout=20)
    alert, ack, outcome = centre.alerts[0], centre.acks[0], centre.outcomes[0]
    assert alert["seq"] < ack["seq"] < outcome["seq"] == record.seq
    assert set(outcome) == OUTCOME_FIELDS
    assert outcome["outcome"] == "customer_dissuaded" and outcome["via"] == "console" and outcome["by"] == "S1024"
    assert outcome["alert_id"] == alert_id and outcome["counter"] == 3 and outcome["historical"] is False
    assert wait_until(lambda: gw.store.outbox_depth() == 0, timeout=20)


def test_a_counter_with_a_second_red_open_stays_red_after_the_first_is_acknowledged(running, factory):
    gw, terminal = running
    terminal.send(intercept(counter=1, event_id="two-1"))
    terminal.send(intercept(counter=1, event_id="two-2"))
    assert wait_until(lambda: gw.lamps.panel.waiting == 2, timeout=10)  # lamps follow the ACKs
    first = gw.acknowledge(by="S1", via="console")
    assert first is not None and gw.lamps.states()[1] == "red" and supervisor_lamp(factory)
    gw.acknowledge(by="S1", via="console")
    assert blinks(factory, 1) and not supervisor_lamp(factory)
    gw.record_outcome(first.alert_id, "false_alarm", by="S1")
    assert gw.lamps.states()[1] == "amber-blinking"  # the second still owes an outcome
    second = gw.store.awaiting_outcome()[0]
    gw.record_outcome(second.alert_id, "police_called", note="110 called at 09:40", by="S1")
    assert gw.lamps.states()[1] == "off"


def test_an_acknowledgement_typed_in_a_shell_moves_the_lamps_of_the_running_gateway(running, factory):
    gw, terminal = running
    terminal.send(intercept(counter=2, event_id="shell-1"))
    assert wait_until(lambda: gw.lamps.states()[2] == "red", timeout=10)
    alert_id = gw.store.open_alerts()[0].alert_id
    # A second connection to the same file, as `counterguard ack` uses.
    with Store(gw.config.store_path) as other:
        other.acknowledge(alert_id, by="S7", via="cli", stamp=Stamp(time.time(), time.monotonic(), True))
    assert wait_until(lambda: gw.lamps.states()[2] == "amber-blinking", timeout=10)
    assert not supervisor_lamp(factory)
    with Store(gw.config.store_path) as other:
        other.record_outcome(alert_id, "confirmed_fraud", by="S7", via="cli",
                             stamp=Stamp(time.time(), time.monotonic(), True))
    assert wait_until(lambda: gw.lamps.states()[2] == "off", timeout=10)


def test_an_amber_alert_can_be_acknowledged_and_closed_from_the_console(running, factory):
    gw, terminal = running
    reply = terminal.send(event(counter=4, amount=40000, customer_age=72, balance_before=45000, event_id="amber-1"))
    assert reply.body["level"] in ("amber", "red")
    assert wait_until(lambda: gw.lamps.states()[4] == reply.body["level"], timeout=10)
    alert = gw.store.open_alerts(level=None)[0]
    gw.acknowledge(alert.alert_id, by="S2", via="console")
    assert blinks(factory, 4)
    gw.record_outcome(alert.alert_id, "customer_dissuaded", by="S2")
    assert gw.lamps.states()[4] == "off"


# -- the store's rules ------------------------------------------------------------------------------
def _stamp():
    return Stamp(time.time(), time.monotonic(), True)


def _raise(store, n, level="red", counter=1):
    from counterguard.core.decision import Verdict
    from counterguard.core.events import parse_event

    ev = parse_event({"event_id": f"ev-{n}", "ts": "2024-05-06T09:30:00+08:00", "counter": counter,
                      "kind": "cash_withdrawal", "account": "6222020200000000101", "amount": 50000.0})
    v = Verdict(ev.event_id, level, 0.95, ("large_cash",), "Hold: 50,000 yuan or more - call supervisor", counter)
    return store.record_verdict(ev, b"{}", f"sha-{n}", v, _stamp(), model_version="m-1", watchlist_version=1,
                                gateway_id="gw-test")


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "gateway.db") as s:
        yield s


def test_an_outcome_needs_an_acknowledgement_first_and_only_one_is_kept(store):
    alert = _raise(store, 1)
    with pytest.raises(LifecycleError, match="acknowledge it first"):
        store.record_outcome(alert.alert_id, "false_alarm", by="S1", via="console", stamp=_stamp())
    store.acknowledge(alert.alert_id, by="S1", via="console", stamp=_stamp())
    store.record_outcome(alert.alert_id, "false_alarm", by="S1", via="console", stamp=_stamp())
    with pytest.raises(LifecycleError, match="already closed with outcome false_alarm by S1"):
        store.record_outcome(alert.alert_id, "police_called", by="S2", via="console", stamp=_stamp())
    assert store.outbox_depth() == 3  # alert, acknowledgement, outcome


@pytest.mark.parametrize("kwargs, message", [
    ({"outcome": "sent_home"}, "outcome must be one of confirmed_fraud"),
    ({"via": "button"}, "via must be one of console, cli"),
    ({"by": ""}, "by must name who"),
    ({"note": "x" * 5000}, "note is 5000 characters"),
])
def test_a_bad_outcome_is_refused_by_name_and_changes_nothing(store, kwargs, message):
    alert = _raise(store, 1)
    store.acknowledge(alert.alert_id, by="S1", via="console", stamp=_stamp())
    args = {"outcome": "false_alarm", "by": "S1", "via": "console", "note": ""} | kwargs
    with pytest.raises(ValueError, match=message):
        store.record_outcome(alert.alert_id, args.pop("outcome"), stamp=_stamp(), **args)
    assert store.alert_view(alert.alert_id).state == "acknowledged"
    with pytest.raises(UnknownAlert, match="no alert 'nope'"):
        store.record_outcome("nope", "false_alarm", by="S1", via="console", stamp=_stamp())


def test_upgrading_a_store_keeps_alerts_and_never_reuses_a_seq(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    monkeypatch.setattr("counterguard.gateway.store.db.MIGRATIONS", [m for m in MIGRATIONS if m[0] == 1])
    with Store(path) as old:
        alerts = [_raise(old, n) for n in range(3)]
        old.acknowledge(alerts[0].alert_id, by="S1", via="button", stamp=_stamp())
        old.receipt([a.seq for a in alerts] + [4])
        old.purge(time.time() + 400 * 86400, keep_days=1)  # the receipted rows are gone, seq 4 was the highest
        assert old.outbox_depth() == 0
    monkeypatch.undo()
    with Store(path) as new:
        assert new.alert_view(alerts[0].alert_id).state == "acknowledged"
        assert len(new.open_alerts()) == 2
        new.acknowledge(alerts[1].alert_id, by="S1", via="cli", stamp=_stamp())
        with sqlite3.connect(path) as db:
            assert db.execute("select max(seq) from outbox").fetchone()[0] == 5
            assert db.execute("pragma foreign_key_check").fetchall() == []
            schema = db.execute("select sql from sqlite_master where name = 'alerts'").fetchone()[0]
        assert "'closed'" in schema


def test_the_centre_keeps_an_outcome_once_and_refuses_one_without_its_fields(centre, probe):
    seen = []
    centre.on_record = lambda kind, body: seen.append((kind, body["seq"]))
    body = {"type": "outcome", "gateway_id": "gw-x", "alert_id": "A1", "counter": 3, "outcome": "police_called",
            "note": "", "by": "S1", "via": "cli", "at": "2026-11-25T01:00:00.000Z", "mono": 1.0,
            "time_synced": True, "seq": 9, "region": "r", "branch": "b", "historical": False}
    probe.subscribe("counterguard/v1/r/b/gw-x/receipt")
    for _ in range(2):
        probe.publish("counterguard/v1/r/b/gw-x/outcome", body)
    probe.publish("counterguard/v1/r/b/gw-x/outcome", {k: v for k, v in body.items() if k != "by"} | {"seq": 10})
    assert centre.wait_for(lambda r: r.duplicates == 1 and r.rejected == 1, timeout=10)
    assert [o["seq"] for o in centre.outcomes] == [9]
    assert seen == [("outcome", 9)]  # what `counterguard receiver` prints: new records only
    assert probe.wait_for(lambda p: any(9 in r["seqs"] for r in p.received("counterguard/v1/r/b/gw-x/receipt")))
    assert not any(10 in r["seqs"] for r in probe.received("counterguard/v1/r/b/gw-x/receipt"))


@pytest.mark.parametrize("level, opening", [("amber", "Ask the caring questions: "), ("red", "Hold: ")])
def test_the_teller_text_stays_short_with_the_three_longest_reasons(level, opening):
    from counterguard.core.decision import REASON_TEXT, verdict_text

    longest = sorted((r for r in REASON_TEXT if r != "model_score"), key=lambda r: -len(REASON_TEXT[r]))[:3]
    text = verdict_text(level, longest)
    assert text.startswith(opening) and len(text) <= 130
    assert all(REASON_TEXT[r] in text for r in longest)
