"""Signed manifests from the centre reach gateways (now and later, via retained messages), verify
with the centre's public key, and the centre sees who has applied which version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from counterguard.centre.downlink import Downlink, DownlinkError, publish_retained, rollout
from counterguard.centre.ingest import IngestWorker
from counterguard.centre.store import open_store
from centre_support import SimGateway
from counterguard.core import manifest as signed

MODEL = Path(__file__).resolve().parent.parent / "models" / "counterguard-v1.tflite"
MULE, OTHER = "6217000099887766554", "6222000011112222"


@pytest.fixture
def keys():
    key = signed.generate_signing_key()
    return key, key.public_key(), signed.generate_watchlist_key()


def _opened(gw: SimGateway, public, kind: str) -> list[dict]:
    return [signed.open_envelope(p, public, topic=t) for t, p, _ in gw.downlink if t.endswith(f"/manifest/{kind}")]


def test_a_watchlist_push_reaches_every_connected_gateway_and_one_that_connects_later(broker, tmp_path, keys):
    private, public, wl_key = keys
    store = open_store(tmp_path / "centre.db")
    downlink = Downlink(store, private, watchlist_key=wl_key)
    early = [SimGateway(broker.host, broker.port, f"gw-{i:04d}", region=r, subscribe_manifests=True)
             for i, r in enumerate(["610100", "610100", "440300"])]
    [first] = downlink.push_watchlist("all", add=[MULE, OTHER])
    [second] = downlink.push_watchlist("all", remove=[OTHER])
    publish_retained(broker.host, broker.port, [(first.topic, first.envelope), (second.topic, second.envelope)])
    for gw in early:
        assert gw.wait_for(lambda g: len(_opened(g, public, "watchlist")) == 2), gw.gateway_id
    late = SimGateway(broker.host, broker.port, "gw-0099", subscribe_manifests=True)
    assert late.wait_for(lambda g: len(_opened(g, public, "watchlist")) == 1)
    for gw in early + [late]:
        latest = _opened(gw, public, "watchlist")[-1]
        assert latest["version"] == 2 and latest["full"] is True
        # The gateway matches accounts by their keyed hash; the number itself never travels.
        assert latest["add"] == [signed.account_hash(wl_key, MULE)]
        assert MULE.encode() not in b"".join(p for _, p, _ in gw.downlink)
    assert any(retained for _, _, retained in late.downlink)
    for gw in early + [late]:
        gw.close()
    store.close()


def test_a_region_push_reaches_only_that_region(broker, tmp_path, keys):
    private, public, _ = keys
    store = open_store(tmp_path / "centre.db")
    xian = SimGateway(broker.host, broker.port, "gw-0001", region="610100", subscribe_manifests=True)
    shenzhen = SimGateway(broker.host, broker.port, "gw-0002", region="440300", subscribe_manifests=True)
    pushed = Downlink(store, private).push_thresholds("region/610100", amber=0.35, red=0.8)
    publish_retained(broker.host, broker.port, [(pushed.topic, pushed.envelope)])
    assert xian.wait_for(lambda g: _opened(g, public, "thresholds"))
    assert _opened(xian, public, "thresholds")[0]["red"] == 0.8
    # A later marker message proves the other region's subscriptions had time to receive anything sent.
    marker = Downlink(store, private).push_thresholds("all", amber=0.3, red=0.9)
    publish_retained(broker.host, broker.port, [(marker.topic, marker.envelope)])
    assert shenzhen.wait_for(lambda g: _opened(g, public, "thresholds"))
    assert [m["target"] for m in _opened(shenzhen, public, "thresholds")] == ["all"]
    xian.close()
    shenzhen.close()
    store.close()


def test_a_model_push_carries_the_model_and_its_card_intact(broker, tmp_path, keys):
    private, public, _ = keys
    store = open_store(tmp_path / "centre.db")
    gw = SimGateway(broker.host, broker.port, "gw-0001", region="440300", branch="b0007", subscribe_manifests=True)
    # The centre learns where a gateway sits (region, branch) from its status.
    with IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port) as worker:
        assert worker.wait_for(lambda w: w.stats.statuses >= 1, 20)
    pushed = Downlink(store, private).push_model("gateway/gw-0001", MODEL)
    assert pushed.topic == f"{gw.topics.root}/manifest/model"
    publish_retained(broker.host, broker.port, [(pushed.topic, pushed.envelope)])
    assert gw.wait_for(lambda g: _opened(g, public, "model"))
    got = _opened(gw, public, "model")[0]
    assert signed.model_bytes(got) == MODEL.read_bytes()
    assert got["card"]["feature_names"] and got["model_version"] == got["card"]["version"]
    gw.close()
    store.close()


def test_the_centre_shows_which_gateways_applied_which_version(broker, tmp_path, keys):
    private, _, wl_key = keys
    store = open_store(tmp_path / "centre.db")
    downlink = Downlink(store, private, watchlist_key=wl_key)
    [pushed] = downlink.push_watchlist("region/610100", add=[MULE])
    with IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port) as worker:
        a = SimGateway(broker.host, broker.port, "gw-0001")
        b = SimGateway(broker.host, broker.port, "gw-0002")
        elsewhere = SimGateway(broker.host, broker.port, "gw-0003", region="440300")
        a.heartbeat(watchlist_version=pushed.version)
        b.heartbeat(watchlist_version=pushed.version - 1)
        elsewhere.heartbeat(watchlist_version=0)
        assert worker.wait_for(lambda w: w.stats.heartbeats >= 3, 20)
        [row] = rollout(store)
        assert (row["kind"], row["target"], row["version"]) == ("watchlist", "region/610100", pushed.version)
        assert row["applied"] == ["gw-0001"] and row["pending"] == ["gw-0002"]
        for gw in (a, b, elsewhere):
            gw.close()
    store.close()


@pytest.mark.parametrize("call, fragment", [
    (lambda d: d.push_watchlist("all", add=["12ab"]), "'12ab' is not an account number"),
    (lambda d: d.push_watchlist("all", add_hashes=["6217000099887766554"]), "not a keyed account hash"),
    (lambda d: d.push_thresholds("all", amber=0.9, red=0.5), "0 < amber < red <= 1"),
    (lambda d: d.push_thresholds("gateway/gw-nowhere", amber=0.3, red=0.8), "never heard from gateway 'gw-nowhere'"),
    (lambda d: d.push_thresholds("province/61", amber=0.3, red=0.8), "must be \"all\""),
    (lambda d: d.push_model("all", "/nonexistent/model.tflite"), "/nonexistent/model.tflite"),
])
def test_a_bad_push_is_refused_with_a_reason_and_publishes_nothing(tmp_path, keys, call, fragment):
    private, _, wl_key = keys
    store = open_store(tmp_path / "centre.db")
    with pytest.raises(DownlinkError, match=fragment.replace("(", r"\(")):
        call(Downlink(store, private, watchlist_key=wl_key))
    assert store.manifests() == []
    store.close()


def test_a_region_keeps_the_national_entries_and_its_own_when_either_changes(broker, tmp_path, keys):
    private, public, wl_key = keys
    store = open_store(tmp_path / "centre.db")
    downlink = Downlink(store, private, watchlist_key=wl_key)
    h = lambda account: signed.account_hash(wl_key, account)  # noqa: E731
    national, local, later = MULE, OTHER, "6228480012345678"
    xian = SimGateway(broker.host, broker.port, "gw-0001", region="610100", subscribe_manifests=True)
    shenzhen = SimGateway(broker.host, broker.port, "gw-0002", region="440300", subscribe_manifests=True)

    def held(gw):
        """The list a gateway ends up with: the newest version among what it received."""
        return max(_opened(gw, public, "watchlist"), key=lambda m: m["version"])

    pushes = downlink.push_watchlist("all", add=[national])
    pushes += downlink.push_watchlist("region/610100", add=[local])
    assert [(p.target, p.version) for p in pushes] == [("all", 1), ("region/610100", 2)]
    publish_retained(broker.host, broker.port, [(p.topic, p.envelope) for p in pushes])
    assert xian.wait_for(lambda g: _opened(g, public, "watchlist") and held(g)["version"] == 2)
    assert held(xian)["add"] == sorted([h(national), h(local)])

    # A national change is followed by the region's list again, newer, so Xi'an keeps its own entry.
    pushes = downlink.push_watchlist("all", add=[later])
    assert [(p.target, p.version) for p in pushes] == [("all", 3), ("region/610100", 4)]
    publish_retained(broker.host, broker.port, [(p.topic, p.envelope) for p in pushes])
    assert xian.wait_for(lambda g: held(g)["version"] == 4)
    assert held(xian)["add"] == sorted([h(national), h(local), h(later)])
    assert shenzhen.wait_for(lambda g: _opened(g, public, "watchlist") and held(g)["version"] == 3)
    assert held(shenzhen)["add"] == sorted([h(national), h(later)])

    # A gateway of the region that connects later gets the same list from the retained manifests.
    late = SimGateway(broker.host, broker.port, "gw-0003", region="610100", subscribe_manifests=True)
    assert late.wait_for(lambda g: len(_opened(g, public, "watchlist")) == 2)
    assert held(late)["add"] == held(xian)["add"]
    for gw in (xian, shenzhen, late):
        gw.close()
    store.close()


def test_a_model_is_pushed_only_under_its_cards_version(tmp_path, keys):
    private, _, _ = keys
    store = open_store(tmp_path / "centre.db")
    downlink = Downlink(store, private)
    with pytest.raises(DownlinkError, match=r"--model-version 9\.9 differs from the version 3\.0\.0 in the model card"):
        downlink.push_model("all", MODEL, model_version="9.9")
    card = json.loads(MODEL.with_suffix(".json").read_text())
    del card["version"]
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(DownlinkError, match='card has no "version"'):
        downlink.push_model("all", MODEL, card_path=tmp_path / "card.json", model_version="3.0.0")
    assert store.manifests() == []
    assert downlink.push_model("all", MODEL, model_version="3.0.0").summary["model_version"] == "3.0.0"
    store.close()
