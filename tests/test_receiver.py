"""The stand-in centre: takes each alert once, receipts only what it stored, and tracks gateway status."""

from __future__ import annotations

from counterguard.centre.receiver import Receiver, main
from counterguard.core import messages
from counterguard.gateway.link.broker import free_port

ROOT = "counterguard/v1/610100/b0231/gw-7"


def alert(seq: int, **changes) -> dict:
    body = {
        "type": "alert", "gateway_id": "gw-7", "region": "610100", "branch": "b0231", "seq": seq,
        "alert_id": f"01J0000000000000000000{seq:04d}", "event_id": f"ev-{seq}", "counter": 2, "level": "red",
        "score": 0.93, "reasons": ["large_cash", "customer_on_phone"], "text": "Hold - call supervisor",
        "kind": "cash_withdrawal", "amount": 50000.0, "account": "6222020200000000101",
        "event_ts": "2024-05-06T09:30:00+08:00", "raised_at": "2024-05-06T01:30:00.120Z", "mono": 1234.5,
        "time_synced": True, "model_version": "m-1", "watchlist_version": 3, "historical": False,
    }
    body.update(changes)
    return body


def test_an_alert_sent_twice_is_kept_once_and_receipted(centre, probe):
    probe.subscribe(f"{ROOT}/receipt")
    probe.publish(f"{ROOT}/alert", alert(1))
    probe.publish(f"{ROOT}/alert", alert(1, historical=True))  # the gateway resent it after a lost receipt
    probe.publish(f"{ROOT}/alert", alert(2))
    assert centre.wait_for(lambda r: r.duplicates == 1 and len(r.alerts) == 2, 10)
    assert [a["seq"] for a in centre.alerts] == [1, 2]
    assert probe.wait_for(lambda p: {s for r in p.received(f"{ROOT}/receipt") for s in r["seqs"]} == {1, 2}, 10)


def test_the_same_seq_from_another_gateway_is_a_different_alert(centre, probe):
    probe.publish(f"{ROOT}/alert", alert(1))
    probe.publish("counterguard/v1/610100/b0232/gw-8/alert", alert(1, gateway_id="gw-8"))
    assert centre.wait_for(lambda r: len(r.alerts) == 2, 10)
    assert centre.duplicates == 0


def test_an_alert_missing_a_field_is_refused_and_not_receipted(centre, probe):
    probe.subscribe(f"{ROOT}/receipt")
    bad = alert(5)
    del bad["level"]
    probe.publish(f"{ROOT}/alert", bad)
    probe.publish(f"{ROOT}/alert", b"not json at all")
    probe.publish(f"{ROOT}/alert", alert(6))
    assert centre.wait_for(lambda r: len(r.alerts) == 1 and r.rejected == 2, 10)
    assert probe.wait_for(lambda p: p.received(f"{ROOT}/receipt"), 10)
    assert {s for r in probe.received(f"{ROOT}/receipt") for s in r["seqs"]} == {6}


def test_acknowledgements_are_kept_in_order(centre, probe):
    for seq in (3, 4):
        probe.publish(f"{ROOT}/ack", {"type": "acknowledgement", "gateway_id": "gw-7", "seq": seq,
                                      "alert_id": f"A{seq}", "by": "supervisor", "via": "button",
                                      "at": "2024-05-06T01:31:00.000Z", "mono": 1.0, "time_synced": True,
                                      "historical": False})
    assert centre.wait_for(lambda r: [a["alert_id"] for a in r.acks] == ["A3", "A4"], 10)


def test_a_centre_with_a_database_remembers_what_it_received_across_restarts(broker, probe, tmp_path):
    db = tmp_path / "centre.db"
    with Receiver(broker.host, broker.port, db_path=db) as centre:
        probe.publish(f"{ROOT}/alert", alert(1))
        assert centre.wait_for(lambda r: len(r.alerts) == 1, 10)
    with Receiver(broker.host, broker.port, db_path=db) as centre:
        assert [a["seq"] for a in centre.alerts] == [1]
        probe.publish(f"{ROOT}/alert", alert(1))  # resent while the centre was restarting
        assert centre.wait_for(lambda r: r.duplicates == 1, 10)
        assert len(centre.alerts) == 1


def test_the_centre_announces_itself_online_and_says_offline_when_it_stops(broker, probe):
    probe.subscribe(messages.CENTRE_STATUS)
    centre = Receiver(broker.host, broker.port).start()
    assert probe.wait_for(lambda p: p.received(messages.CENTRE_STATUS)
                          and p.received(messages.CENTRE_STATUS)[-1]["state"] == "online", 10)
    centre.stop()
    assert probe.wait_for(lambda p: p.received(messages.CENTRE_STATUS)[-1]["state"] == "offline", 10)


def test_a_late_last_will_from_an_old_session_does_not_mark_a_live_gateway_offline(centre, probe):
    status = {"gateway_id": "gw-7", "ts": "2024-05-06T01:30:00.000Z", "time_synced": True}
    probe.publish(f"{ROOT}/status", dict(status, state="online", bdseq=5))
    assert centre.wait_for(lambda r: r.statuses.get("gw-7", {}).get("bdseq") == 5, 10)
    probe.publish(f"{ROOT}/status", dict(status, state="offline", bdseq=4))  # the will of session 4
    probe.publish(f"{ROOT}/heartbeat", {"bdseq": 5})  # a marker: everything before it has been handled
    assert centre.wait_for(lambda r: "gw-7" in r.heartbeats, 10)
    assert centre.statuses["gw-7"]["state"] == "online"
    probe.publish(f"{ROOT}/status", dict(status, state="offline", bdseq=5))
    assert centre.wait_for(lambda r: r.statuses["gw-7"]["state"] == "offline", 10)


def test_the_command_line_says_clearly_when_there_is_no_broker(capsys):
    assert main(["--host", "127.0.0.1", "--port", str(free_port())]) == 1
    assert "cannot connect to 127.0.0.1:" in capsys.readouterr().err
