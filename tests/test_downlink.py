"""The signed downlink on a gateway: only what the centre signed, for this gateway, newer than what
it holds, gets in; a bad one is refused with a log line and the last-known-good stays in force."""

from __future__ import annotations

import json
import logging
import time

import pytest

from counterguard.core import manifest as m
from counterguard.core.clock import Stamp
from counterguard.core.decision import Thresholds, Verdict
from counterguard.gateway.link.downlink import Downlink
from counterguard.core.events import parse_event
from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.gateway.scoring.assessor import Assessor
from counterguard.gateway.store.db import Store
from counterguard.gateway.scoring.watchlist import Watchlist

ROOT = "counterguard/v1/east/b012/gw-7"
REGION = "east"
ALL = "counterguard/v1/all/manifest/"
MULE = "6217000099887766554"
ISSUED = "2026-11-25T09:00:00.000Z"


@pytest.fixture(scope="module")
def centre_key():
    return m.generate_signing_key()


@pytest.fixture(scope="module")
def bundled():
    path = default_model_path()
    return path.read_bytes(), json.loads(path.with_suffix(".json").read_text()), FraudModel.load(path)


@pytest.fixture
def gateway(tmp_path, centre_key, bundled):
    """A store, watchlist and assessor as the gateway builds them, with a downlink on top."""
    wkey = bytes(range(32))
    with Store(tmp_path / "gateway.db") as store:
        watchlist = Watchlist(store, wkey, key_version=1)
        assessor = Assessor(store, watchlist, bundled[2], bundled[2].thresholds)
        yield store, assessor, lambda: Downlink(store, assessor, public_key=centre_key.public_key(), root=ROOT,
                                                region=REGION, state_dir=tmp_path / "downlink")


def thresholds(version, amber=0.3, red=0.7, target="all"):
    return {"kind": "thresholds", "version": version, "issued_at": ISSUED, "target": target,
            "amber": amber, "red": red}


def signed(body, key):
    return m.sign_envelope(body, key)


def red_alert(store, n=1):
    ev = parse_event({"event_id": f"ev-{n}", "ts": "2026-11-25T09:30:00+08:00", "counter": 2,
                      "kind": "cash_withdrawal", "account": "6222020200000000101", "amount": 50000.0})
    verdict = Verdict(ev.event_id, "red", 0.97, ("large_cash",), "Hold - call supervisor", ev.counter)
    return store.record_verdict(ev, b"{}", f"sha-{n}", verdict, Stamp(time.time(), time.monotonic(), True),
                                model_version="m", watchlist_version=0, gateway_id="gw-7")


def test_signed_thresholds_are_applied_persisted_and_survive_a_restart(gateway, centre_key):
    store, assessor, make = gateway
    downlink = make()
    assert downlink.handle(ALL + "thresholds", signed(thresholds(3), centre_key)) == "applied"
    assert assessor.thresholds == Thresholds(0.3, 0.7)
    assert downlink.fields()["thresholds_version"] == 3
    assessor.thresholds = Thresholds(0.5, 0.9)  # as a freshly started gateway would have from its config
    assert make().version("thresholds") == 3 and assessor.thresholds == Thresholds(0.3, 0.7)


def test_a_bad_signature_is_rejected_logged_counted_and_the_old_thresholds_kept(gateway, centre_key, caplog):
    store, assessor, make = gateway
    downlink = make()
    before = assessor.thresholds
    rogue = m.generate_signing_key()
    envelope = json.loads(signed(thresholds(5, red=0.99), rogue))
    envelope["key_id"] = m.key_id(centre_key)  # pretend to be the centre
    with caplog.at_level(logging.ERROR, logger="counterguard.gateway.link.downlink"):
        assert downlink.handle(ALL + "thresholds", json.dumps(envelope).encode()) == "rejected"
    assert assessor.thresholds == before and downlink.version("thresholds") == 0
    assert downlink.stats.rejected == 1 and downlink.fields()["downlink_rejected"] == 1
    assert "REJECTED thresholds manifest" in caplog.text and "bad signature" in caplog.text


def test_a_replayed_or_older_manifest_is_ignored(gateway, centre_key):
    store, assessor, make = gateway
    downlink = make()
    first = signed(thresholds(4, 0.3, 0.7), centre_key)
    assert downlink.handle(ALL + "thresholds", first) == "applied"
    assert downlink.handle(ALL + "thresholds", signed(thresholds(5, 0.2, 0.6), centre_key)) == "applied"
    assert downlink.handle(ALL + "thresholds", first) == "replay"  # the captured v4, sent again
    assert assessor.thresholds == Thresholds(0.2, 0.6) and downlink.stats.replays == 1


@pytest.mark.parametrize("topic, target", [
    (f"{ROOT}/manifest/thresholds", "gateway/gw-8"),              # meant for another gateway
    ("counterguard/v1/east/manifest/thresholds", "region/west"),  # meant for another region
    (ALL + "thresholds", "region/east"),                          # re-published more widely than signed
])
def test_a_manifest_on_a_topic_it_was_not_signed_for_is_rejected(gateway, centre_key, topic, target):
    store, assessor, make = gateway
    downlink = make()
    assert downlink.handle(topic, signed(thresholds(3, target=target), centre_key)) == "rejected"
    assert downlink.version("thresholds") == 0


def test_a_gateway_listens_on_all_its_region_and_its_own_topics(gateway):
    downlink = gateway[2]()
    assert downlink.wants(f"{ROOT}/manifest/model") and downlink.wants("counterguard/v1/east/manifest/watchlist")
    assert not downlink.wants("counterguard/v1/west/manifest/watchlist")
    assert not downlink.wants("counterguard/v1/east/b012/gw-8/manifest/model")


def model_body(bundled, version=2, model_version="1.0.1", tflite=None, **card_changes):
    data, card, _ = bundled
    card = {**card, "version": model_version, **card_changes}
    return m.model_manifest(tflite or data, card, version=version, model_version=model_version,
                            target="gateway/gw-7", issued_at=ISSUED)


def test_a_signed_model_is_written_loaded_swapped_in_and_restored_after_a_restart(gateway, centre_key, bundled):
    store, assessor, make = gateway
    downlink = make()
    assert downlink.handle(f"{ROOT}/manifest/model", signed(model_body(bundled), centre_key)) == "applied"
    assert assessor.model.version == "1.0.1" and assessor.model is not bundled[2]
    assert 0.0 <= assessor.model.score([0.0] * len(bundled[1]["feature_names"])) <= 1.0
    assessor.model = bundled[2]
    make()
    assert assessor.model.version == "1.0.1"


def test_a_model_whose_bytes_do_not_match_its_hash_is_rejected_and_the_old_model_kept(gateway, centre_key, bundled):
    store, assessor, make = gateway
    downlink = make()
    body = model_body(bundled)
    body["tflite_b64"] = m.base64.b64encode(bundled[0][:-1] + b"\0").decode()  # one byte changed in transit
    assert downlink.handle(f"{ROOT}/manifest/model", signed(body, centre_key)) == "rejected"
    assert assessor.model is bundled[2] and "sha256 mismatch" in downlink.stats.last_rejection


def test_a_model_for_other_features_is_rejected_and_leaves_no_file(gateway, centre_key, bundled, tmp_path):
    store, assessor, make = gateway
    downlink = make()
    body = model_body(bundled, feature_names=["amount"] * len(bundled[1]["feature_names"]))
    assert downlink.handle(f"{ROOT}/manifest/model", signed(body, centre_key)) == "rejected"
    assert assessor.model is bundled[2] and "feature names" in downlink.stats.last_rejection
    assert not list((tmp_path / "downlink" / "models").glob("*"))


def test_a_model_swap_waits_while_a_red_alert_is_open(gateway, centre_key, bundled):
    store, assessor, make = gateway
    downlink = make()
    alert = red_alert(store)
    assert downlink.handle(f"{ROOT}/manifest/model", signed(model_body(bundled), centre_key)) == "waiting"
    assert downlink.handle(ALL + "thresholds", signed(thresholds(2), centre_key)) == "waiting"
    assert assessor.model is bundled[2] and downlink.pending() == ["model", "thresholds"]
    assert downlink.apply_waiting() == []  # still open
    store.acknowledge(alert.alert_id, by="supervisor", via="button", stamp=Stamp(time.time(), time.monotonic(), True))
    assert downlink.apply_waiting() == ["model", "thresholds"]
    assert assessor.model.version == "1.0.1" and assessor.thresholds == Thresholds(0.3, 0.7)


def test_a_waiting_swap_is_applied_by_the_watcher_once_the_alert_is_acknowledged(gateway, centre_key):
    store, assessor, make = gateway
    downlink = make()
    downlink.poll_s = 0.05
    alert = red_alert(store)
    assert downlink.handle(ALL + "thresholds", signed(thresholds(2), centre_key)) == "waiting"
    downlink.start()
    try:
        store.acknowledge(alert.alert_id, by="supervisor", via="button", stamp=Stamp(time.time(), time.monotonic(), True))
        deadline = time.monotonic() + 20
        while downlink.version("thresholds") != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert assessor.thresholds == Thresholds(0.3, 0.7)
    finally:
        downlink.stop()


def watchlist_body(version, add, key_version=1, **over):
    return {"kind": "watchlist", "version": version, "issued_at": ISSUED, "target": "region/east", "full": True,
            "add": add, "hash": "hmac-sha256", "key_version": key_version, **over}


def test_a_hashed_watchlist_from_the_centre_matches_accounts_without_holding_them(gateway, centre_key):
    store, assessor, make = gateway
    downlink = make()
    centre_hash = m.account_hash(bytes(range(32)), MULE)  # the centre hashes with the same key
    topic = "counterguard/v1/east/manifest/watchlist"
    assert downlink.handle(topic, signed(watchlist_body(7, [centre_hash]), centre_key)) == "applied"
    assert assessor.watchlist.contains(MULE) and not assessor.watchlist.contains("6222020200000000101")
    assert store.watchlist_accounts() == {centre_hash}  # no account number on the SD card
    delta = watchlist_body(8, [], full=False, base_version=7, remove=[centre_hash])
    assert downlink.handle(topic, signed(delta, centre_key)) == "applied"
    assert not assessor.watchlist.contains(MULE) and downlink.fields()["watchlist_version"] == 8


def test_a_watchlist_hashed_with_another_key_version_is_rejected(gateway, centre_key):
    store, assessor, make = gateway
    downlink = make()
    body = watchlist_body(7, [m.account_hash(b"k" * 32, MULE)], key_version=2)
    assert downlink.handle("counterguard/v1/east/manifest/watchlist", signed(body, centre_key)) == "rejected"
    assert "key version 2" in downlink.stats.last_rejection and assessor.watchlist.version == 0


def test_a_hashed_watchlist_is_refused_by_a_gateway_without_the_centre_key(tmp_path, centre_key):
    with Store(tmp_path / "g.db") as store:
        model = FraudModel.load(default_model_path())
        assessor = Assessor(store, Watchlist(store), model, model.thresholds)  # its own local key only
        downlink = Downlink(store, assessor, public_key=centre_key.public_key(), root=ROOT, region=REGION,
                            state_dir=tmp_path / "downlink")
        body = watchlist_body(2, [m.account_hash(bytes(range(32)), MULE)])
        assert downlink.handle("counterguard/v1/east/manifest/watchlist", signed(body, centre_key)) == "rejected"
        assert "downlink.watchlist_key" in downlink.stats.last_rejection and assessor.watchlist.version == 0


def test_a_watchlist_file_of_plain_numbers_is_kept_as_hashes(tmp_path):
    (tmp_path / "list.txt").write_text(f"{MULE}\n")
    with Store(tmp_path / "g.db") as store:
        wl = Watchlist(store, b"x" * 32)
        wl.load_file(tmp_path / "list.txt")
        assert wl.contains(MULE)
        on_card = b"".join(p.read_bytes() for p in tmp_path.glob("g.db*"))  # the database and its WAL
        assert MULE.encode() not in on_card


def test_hashes_from_an_older_key_are_dropped_loudly_so_a_full_list_can_follow(tmp_path, caplog):
    with Store(tmp_path / "g.db") as store:
        Watchlist(store, b"a" * 32).apply({"version": 4, "full": True, "add": [MULE]})
        with caplog.at_level(logging.ERROR, logger="counterguard.gateway.scoring.watchlist"):
            wl = Watchlist(store, b"b" * 32)
        assert wl.version == 0 and len(wl) == 0 and "cannot match" in caplog.text


# -- end to end: a whole gateway, a real broker, the centre publishing retained manifests ----------
def test_a_gateway_takes_signed_manifests_from_the_broker_and_reports_the_versions(tmp_path, centre_key, broker, probe):
    from dataclasses import replace

    from gpiozero.pins.mock import MockFactory

    from counterguard.gateway.ops.app import Gateway
    from counterguard.gateway.config import DownlinkSettings, GatewaySettings
    from harness import gateway_config

    m.save_public_key(centre_key, tmp_path / "centre-public.pem")
    m.save_watchlist_key(bytes(range(32)), tmp_path / "watchlist.key")
    config = replace(gateway_config(tmp_path, broker_port=broker.port, serial_path=None, watchlist=False),
                     gateway=GatewaySettings(id="gw-7", region=REGION, branch="b012", data_dir=str(tmp_path)),
                     downlink=DownlinkSettings(centre_public_key=str(tmp_path / "centre-public.pem"),
                                               watchlist_key=str(tmp_path / "watchlist.key")))
    # Published before the gateway exists: retained, so it gets them when it connects.
    probe.publish(ALL + "thresholds", signed(thresholds(6, 0.35, 0.75), centre_key), retain=True)
    probe.publish("counterguard/v1/east/manifest/watchlist",
                  signed(watchlist_body(3, [m.account_hash(bytes(range(32)), MULE)]), centre_key), retain=True)
    probe.subscribe(f"{ROOT}/status")
    gw = Gateway(config, pin_factory=MockFactory())
    gw.start()
    try:
        def status_has(p, **want):
            return any(all(s.get(k) == v for k, v in want.items()) for s in p.received(f"{ROOT}/status"))

        assert probe.wait_for(lambda p: status_has(p, thresholds_version=6, watchlist_version=3), 30)
        assert gw.pipeline.assessor.thresholds == Thresholds(0.35, 0.75)
        assert gw.watchlist.contains(MULE)
        # An unsigned update on the old watchlist topic is not even listened to ...
        probe.publish("counterguard/v1/east/watchlist", {"version": 9, "full": True, "add": []})
        # ... and a forged one on the manifest topic is refused; neither changes anything.
        rogue = m.generate_signing_key()
        forged = json.loads(signed(thresholds(7, 0.01, 0.02), rogue))
        forged["key_id"] = m.key_id(centre_key)
        probe.publish(ALL + "thresholds", json.dumps(forged))
        deadline = time.monotonic() + 30
        while gw.downlink.stats.rejected == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gw.downlink.stats.rejected == 1
        assert gw.pipeline.assessor.thresholds == Thresholds(0.35, 0.75) and gw.downlink.version("thresholds") == 6
        assert gw.watchlist.version == 3 and gw.watchlist.contains(MULE)
    finally:
        gw.stop()
