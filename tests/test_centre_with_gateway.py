"""The real gateway's outbox uplink against the real centre: the centre's receipts close the
gateway's outbox, the fleet shows what the gateway reports, and a centre that restarts gets
everything it missed, stored once (real mosquitto, real SQLite on both sides)."""

from __future__ import annotations

import time

import pytest

from counterguard.centre.ingest import IngestWorker
from counterguard.centre.store import open_store
from counterguard.centre.web import Dashboard
from centre_support import postgres, store_url  # noqa: F401  (fixtures)
from conftest import wait_until
from counterguard.core.clock import Clock, Stamp
from counterguard.core.decision import Verdict
from counterguard.core.events import parse_event
from counterguard.gateway.store.db import Store
from counterguard.gateway.link.uplink import Uplink
from counterguard.gateway.scoring.watchlist import Watchlist

GW, REGION, BRANCH = "gw-real-01", "610100", "b0231"


def raise_alert(store, n: int, level: str = "red"):
    event = parse_event({"event_id": f"ev-{n}", "ts": "2024-05-06T09:30:00+08:00", "counter": 1 + n % 4,
                         "kind": "cash_withdrawal", "account": "6222020200000000101", "amount": 50000})
    verdict = Verdict(event.event_id, level, 0.93, ("large_cash",), "Hold: 50,000 yuan or more - call supervisor",
                      event.counter)
    return store.record_verdict(event, b"{}", f"sha-{n}", verdict, Stamp(time.time(), time.monotonic(), True),
                                model_version="m-1", watchlist_version=0, gateway_id=GW)


@pytest.fixture
def gateway(tmp_path, broker):
    with Store(tmp_path / "gateway.db", synchronous="NORMAL") as store:
        uplink = Uplink(store, Watchlist(store), host=broker.host, port=broker.port, gateway_id=GW, region=REGION,
                        branch=BRANCH, heartbeat_s=1.0, republish_after_s=600.0, backoff_min=0.1, backoff_max=0.5,
                        clock=Clock(assume_synced=True)).start()
        yield store, uplink
        uplink.stop()


def test_the_centres_receipts_close_the_gateways_outbox(broker, tmp_path, gateway):
    store, uplink = gateway
    centre = open_store(tmp_path / "centre.db")
    with IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port):
        raised = [raise_alert(store, n, "red" if n % 3 == 0 else "amber") for n in range(30)]
        store.acknowledge(by="supervisor", via="button", stamp=Clock(assume_synced=True).now())
        uplink.wake()
        assert wait_until(lambda: store.outbox_depth() == 0 and centre.count() == 31, 30), \
            f"outbox {store.outbox_depth()}, centre has {centre.count()}"
        alerts = centre.records(kind="alert", limit=100)
        assert [a["alert_id"] for a in alerts] == [r.alert_id for r in raised]
        assert centre.count("acknowledgement") == 1
        assert wait_until(lambda: (centre.gateway(GW) or {}).get("last_heartbeat_at") is not None, 20)
        row = centre.gateway(GW)
        assert (row["state"], row["region"], row["branch"], row["bdseq"]) == ("online", REGION, BRANCH, uplink.bdseq)
    centre.close()


def test_the_customers_answers_travel_with_the_outcome_to_the_centre_and_its_dashboard(broker, gateway, store_url):
    import json
    import urllib.request

    store, uplink = gateway
    clock = Clock(assume_synced=True)
    answered, plain = raise_alert(store, 1), raise_alert(store, 2, "amber")
    for alert in (answered, plain):
        store.acknowledge(alert.alert_id, by="S1024", via="console", stamp=clock.now())
    store.record_outcome(answered.alert_id, "customer_dissuaded", by="S1024", via="console", stamp=clock.now(),
                         answers={"large_cash.1": "no", "general.1": "yes", "general.2": "declined"})
    store.record_outcome(plain.alert_id, "false_alarm", by="S1024", via="cli", stamp=clock.now())  # no answers
    centre = open_store(store_url)
    with IngestWorker(open_store(store_url), host=broker.host, port=broker.port), \
            Dashboard(open_store(store_url), host="127.0.0.1", port=0) as dashboard:
        uplink.wake()
        assert wait_until(lambda: store.outbox_depth() == 0 and centre.count("outcome") == 2, 30), \
            f"outbox {store.outbox_depth()}, centre has {centre.count('outcome')} outcomes"
        with urllib.request.urlopen(dashboard.url + "api/alerts", timeout=10) as res:
            records = json.loads(res.read())["records"]
    outcomes = {r["alert_id"]: r["payload"] for r in records if r["type"] == "outcome"}
    assert outcomes[answered.alert_id]["answers"] == [  # in the order asked: general first, as the gateway stored them
        {"key": "general.1", "question": "Is anyone you have not met in person asking you for this money?",
         "answer": "yes"},
        {"key": "general.2", "question": "Has anyone told you to keep this visit secret from the bank or your family?",
         "answer": "declined"},
        {"key": "large_cash.1", "question": "What will the cash be used for? Could a transfer to an account you know "
                                            "be safer?", "answer": "no"}]
    assert outcomes[plain.alert_id]["outcome"] == "false_alarm" and "answers" not in outcomes[plain.alert_id]
    assert centre.quarantine_count() == 0
    centre.close()


def test_a_centre_that_restarts_gets_everything_it_missed_once(broker, tmp_path, gateway):
    store, uplink = gateway
    centre = open_store(tmp_path / "centre.db")
    first = IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port).start()
    for n in range(10):
        raise_alert(store, n)
    uplink.wake()
    assert wait_until(lambda: store.outbox_depth() == 0, 30)
    first.stop()  # the centre goes down (its status says offline) ...
    for n in range(10, 40):  # ... while branches keep raising alerts, published to nobody
        raise_alert(store, n)
    uplink.wake()
    assert wait_until(lambda: uplink.stats.published >= 40, 20)
    assert store.outbox_depth() == 30
    with IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port):
        # Its "online" makes the gateway resend what is not receipted (the republish timer is 10 min).
        assert wait_until(lambda: store.outbox_depth() == 0, 30), f"outbox still {store.outbox_depth()}"
    assert centre.count("alert") == 40
    centre.close()


def test_a_push_from_the_centre_is_applied_by_a_real_gateway_and_the_centre_sees_it(broker, tmp_path):
    from dataclasses import replace

    from gpiozero.pins.mock import MockFactory

    from counterguard.centre.downlink import Downlink, publish_retained, rollout
    from counterguard.core import manifest as signed
    from counterguard.gateway.ops.app import Gateway
    from counterguard.gateway.config import DownlinkSettings, GatewaySettings
    from counterguard.core.decision import Thresholds
    from harness import gateway_config

    mule = "6217000099887766554"
    key, wl_key = signed.generate_signing_key(), signed.generate_watchlist_key()
    signed.save_public_key(key, tmp_path / "centre-public.pem")
    signed.save_watchlist_key(wl_key, tmp_path / "watchlist.key")
    config = replace(gateway_config(tmp_path, broker_port=broker.port, serial_path=None, watchlist=False),
                     gateway=GatewaySettings(id="gw-push-1", region=REGION, branch=BRANCH, data_dir=str(tmp_path)),
                     downlink=DownlinkSettings(centre_public_key=str(tmp_path / "centre-public.pem"),
                                               watchlist_key=str(tmp_path / "watchlist.key")))
    centre = open_store(tmp_path / "centre.db")
    downlink = Downlink(centre, key, watchlist_key=wl_key)
    with IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port):
        gw = Gateway(config, pin_factory=MockFactory())
        gw.start()
        try:
            assert wait_until(lambda: (centre.gateway("gw-push-1") or {}).get("state") == "online", 20)
            [lists] = downlink.push_watchlist(f"region/{REGION}", add=[mule])
            limits = downlink.push_thresholds("gateway/gw-push-1", amber=0.35, red=0.75)
            publish_retained(broker.host, broker.port, [(lists.topic, lists.envelope), (limits.topic, limits.envelope)])

            assert wait_until(lambda: gw.watchlist.contains(mule), 20), "the gateway never applied the list"
            assert wait_until(lambda: gw.pipeline.assessor.thresholds == Thresholds(0.35, 0.75), 20)
            # The gateway's status and heartbeats now report the versions; the centre shows them applied.
            assert wait_until(lambda: all(r["applied"] == ["gw-push-1"] for r in rollout(centre)), 30), rollout(centre)
            row = centre.gateway("gw-push-1")
            assert (row["watchlist_version"], row["thresholds_version"]) == (str(lists.version), str(limits.version))
            assert row["downlink_rejected"] == 0
        finally:
            gw.stop()
    centre.close()
