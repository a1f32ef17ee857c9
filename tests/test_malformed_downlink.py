"""Junk from the broker does no harm: a real gateway (pty counter line, real mosquitto, real model,
SQLite on disk) gets malformed manifests, receipts and centre statuses batch after batch, refuses
each with one clear log line and a count, keeps what is in force, and after every batch still
scores the next customer and still delivers the alert to the centre."""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import replace

import pytest
from gpiozero.pins.mock import MockFactory

from counterguard.centre.receiver import Receiver
from conftest import wait_until
from counterguard.core import manifest as m
from counterguard.core import messages, wire
from counterguard.gateway.ops.app import Gateway
from counterguard.gateway.config import DownlinkSettings, GatewaySettings
from counterguard.core.decision import Thresholds
from counterguard.gateway.counter.terminal import TellerTerminal
from harness import event, gateway_config, intercept, pty_pair

REGION, BRANCH, GATEWAY = "east", "b012", "gw-7"
ROOT = f"counterguard/v1/{REGION}/{BRANCH}/{GATEWAY}"
ISSUED = "2026-11-25T09:00:00.000Z"
WATCHLIST_KEY = bytes(range(32))


@pytest.fixture(scope="module")
def centre_key():
    return m.generate_signing_key()


@pytest.fixture
def branch(tmp_path, broker, centre, centre_key):
    """A running gateway with the signed downlink on, and the teller terminal on its counter line."""
    m.save_public_key(centre_key, tmp_path / "centre-public.pem")
    m.save_watchlist_key(WATCHLIST_KEY, tmp_path / "watchlist.key")
    with pty_pair() as (master, path):
        config = replace(gateway_config(tmp_path, broker_port=broker.port, serial_path=path, watchlist=False),
                         gateway=GatewaySettings(id=GATEWAY, region=REGION, branch=BRANCH, data_dir=str(tmp_path)),
                         downlink=DownlinkSettings(centre_public_key=str(tmp_path / "centre-public.pem"),
                                                   watchlist_key=str(tmp_path / "watchlist.key")))
        gw = Gateway(config, pin_factory=MockFactory())
        gw.start()
        try:
            assert wait_until(lambda: gw.uplink.connected, 30), "the gateway never reached the broker"
            yield gw, TellerTerminal(master, timeout=3.0)
        finally:
            gw.stop()


def signed(body, key) -> bytes:
    return m.sign_envelope(body, key)


def thresholds(version, amber=0.3, red=0.7, target="all") -> dict:
    return {"kind": "thresholds", "version": version, "issued_at": ISSUED, "target": target,
            "amber": amber, "red": red}


_n = 0


def still_serving(gw, terminal, centre, in_force) -> None:
    """The checks after every batch: versions and thresholds unchanged, a customer is scored, and a
    red alert reaches the centre and is receipted."""
    global _n
    _n += 1
    assert {k: gw.downlink.fields()[k] for k in in_force} == in_force
    assert terminal.send(event(counter=1, amount=300)).body["level"] == "green"
    reply = terminal.send(intercept(counter=3, event_id=f"after-junk-{_n}"))
    assert reply.type == "ACK" and reply.body["level"] == "red"
    assert centre.wait_for(lambda r: any(a["event_id"] == f"after-junk-{_n}" for a in r.alerts), 30), \
        "the uplink stopped delivering alerts"
    assert wait_until(lambda: gw.store.outbox_depth() == 0, 30), "receipts stopped closing the outbox"


def publish_all(probe, batch) -> None:
    for topic, payload in batch:
        probe.publish(topic, payload)


def no_tracebacks(caplog) -> None:
    """Every refusal is one plain line naming what was wrong; a traceback means something crashed."""
    crashed = [r.getMessage() for r in caplog.records if r.exc_info]
    assert not crashed, crashed


def test_malformed_manifests_are_refused_counted_and_change_nothing(branch, centre, probe, centre_key, caplog):
    gw, terminal = branch
    everywhere = m.gateway_manifest_topics(ROOT, REGION)
    own_thresholds = f"{ROOT}/manifest/thresholds"
    # One good manifest first, so "an old version" has something to be older than.
    probe.publish(own_thresholds, signed(thresholds(5, 0.35, 0.75, target=f"gateway/{GATEWAY}"), centre_key))
    assert wait_until(lambda: gw.downlink.version("thresholds") == 5, 30)
    in_force = {"thresholds_version": 5, "watchlist_version": 0, "model_version": gw.downlink.fields()["model_version"]}

    rogue = m.generate_signing_key()
    forged = json.loads(signed(thresholds(9, 0.01, 0.02), rogue))
    forged["key_id"] = m.key_id(centre_key)
    good = json.loads(signed(thresholds(9, target="all"), centre_key))
    truncated = {**good, "manifest": good["manifest"][:-7]}
    model = m.model_manifest(b"not a model", {"version": "9"}, version=9, model_version="9",
                             target=f"gateway/{GATEWAY}", issued_at=ISSUED)
    model["sha256"] = "0" * 64
    # Structurally valid, signed by the centre, but no manifest a gateway may take.
    unchecked = {**thresholds(9, 0.9, 0.1), "target": "all"}
    data = json.dumps(unchecked, sort_keys=True, separators=(",", ":")).encode()
    bad_range = {"manifest": base64.b64encode(data).decode(), "signature": base64.b64encode(centre_key.sign(data)).decode(),
                 "key_id": m.key_id(centre_key)}

    junk = [b"", b"{not json", b"\xff\xfe\x00", b"[" * 100_000, b"[]", b"null", b'"manifest"',
            json.dumps({"manifest": 5, "signature": [], "key_id": {}}).encode(),
            json.dumps({"manifest": "AAAA", "signature": "AAAA"}).encode(),
            json.dumps({"manifest": "A" * 3_000_000, "signature": "AAAA", "key_id": m.key_id(centre_key)}).encode()]
    batch = [(topic, payload) for topic in everywhere for payload in junk]
    batch += [
        ("counterguard/v1/all/manifest/thresholds", json.dumps(forged).encode()),               # bad signature
        ("counterguard/v1/all/manifest/thresholds", json.dumps(truncated).encode()),            # truncated base64
        (own_thresholds, signed(thresholds(9, target="gateway/gw-8"), centre_key)),             # another gateway's
        ("counterguard/v1/east/manifest/thresholds", signed(thresholds(9, target="region/west"), centre_key)),
        ("counterguard/v1/all/manifest/model", signed(thresholds(9), centre_key)),              # wrong kind for topic
        (f"{ROOT}/manifest/model", signed(model, centre_key)),                                   # sha256 mismatch
        ("counterguard/v1/all/manifest/thresholds", json.dumps(bad_range).encode()),           # amber above red
        ("counterguard/v1/all/manifest/thresholds", json.dumps({**good, "key_id": "0" * 16}).encode()),
    ]
    replays = [(own_thresholds, signed(thresholds(v, 0.2, 0.6, target=f"gateway/{GATEWAY}"), centre_key))
               for v in (4, 5)]                                                                  # old and same version
    rejected, replayed = gw.downlink.stats.rejected, gw.downlink.stats.replays
    with caplog.at_level(logging.INFO):
        publish_all(probe, batch + replays)
        assert wait_until(lambda: gw.downlink.stats.rejected - rejected == len(batch)
                          and gw.downlink.stats.replays - replayed == len(replays), 60), (
            f"refused {gw.downlink.stats.rejected - rejected} of {len(batch)}, "
            f"replays {gw.downlink.stats.replays - replayed} of {len(replays)}")
        still_serving(gw, terminal, centre, in_force)
    assert gw.pipeline.assessor.thresholds == Thresholds(0.35, 0.75)
    refusals = [r.getMessage() for r in caplog.records if "REJECTED" in r.getMessage()]
    assert len(refusals) == len(batch)
    assert all(any(t in line for t in everywhere) for line in refusals)  # each line names its topic
    for reason in ("not JSON", "bad signature", "not valid base64", "gw-8", "region/west", "sha256 mismatch",
                   "amber", "key_id"):
        assert any(reason in line for line in refusals), reason
    no_tracebacks(caplog)
    # The centre sees the refusals in the gateway's status.
    assert gw.downlink.fields()["downlink_rejected"] == gw.downlink.stats.rejected


def test_junk_receipts_close_nothing_and_the_real_receipt_still_does(branch, centre, probe, broker, caplog):
    gw, terminal = branch
    in_force = {"thresholds_version": 0, "watchlist_version": 0}
    still_serving(gw, terminal, centre, in_force)
    centre.stop()  # the centre is away: the next alert waits in the outbox
    assert terminal.send(intercept(counter=2, event_id="waiting-1")).body["level"] == "red"
    assert wait_until(lambda: gw.store.outbox_depth() == 1, 30)
    junk = [b"", b"nope", b"\xff", b"[]", b"[" * 100_000, b'{"seqs":"1"}', b'{"seqs":null}', b'{"seqs":[-1]}',
            b'{"seqs":[0]}', b'{"seqs":[true]}', b'{"seqs":[1.5]}', b'{"seqs":["1"]}', b'{"seqs":[{"seq":1}]}',
            b'{"seqs":[%d]}' % 2**70, b'{"seqs":[1, %d]}' % 2**64, b'{"receipt":[1]}']
    before = gw.uplink.stats.downlink_rejected
    with caplog.at_level(logging.INFO):
        publish_all(probe, [(f"{ROOT}/receipt", p) for p in junk])
        assert wait_until(lambda: gw.uplink.stats.downlink_rejected - before == len(junk), 30), \
            f"{gw.uplink.stats.downlink_rejected - before} of {len(junk)} junk receipts refused"
    assert gw.store.outbox_depth() == 1  # none of it closed the waiting alert
    ignored = [r.getMessage() for r in caplog.records if "ignored a message on" in r.getMessage()]
    assert len(ignored) == len(junk) and all(f"{ROOT}/receipt" in line for line in ignored)
    no_tracebacks(caplog)
    back = Receiver(broker.host, broker.port, client_id="centre-back")
    back.start()
    try:
        assert back.wait_for(lambda r: any(a["event_id"] == "waiting-1" for a in r.alerts), 30)
        still_serving(gw, terminal, back, in_force)
    finally:
        back.stop()


def test_junk_centre_status_is_ignored_and_a_real_announcement_still_resends(branch, centre, probe, caplog):
    gw, terminal = branch
    junk = [b"", b"{}", b"\xff", b"[" * 100_000, b'{"state":"sleeping"}', b'{"state":1}', b'{"state":null}',
            b'["online"]', b'"online"']
    before = gw.uplink.stats.downlink_rejected
    with caplog.at_level(logging.INFO):
        publish_all(probe, [(messages.CENTRE_STATUS, p) for p in junk])
        assert wait_until(lambda: gw.uplink.stats.downlink_rejected - before == len(junk), 30)
        still_serving(gw, terminal, centre, {"thresholds_version": 0})
    no_tracebacks(caplog)
    assert gw.uplink.connected


def test_garbage_on_the_counter_line_is_answered_and_the_next_customer_scored(branch, centre):
    """The inputs that once silenced a counter line (tests/test_fuzz.py keeps them), over a real pty."""
    gw, terminal = branch
    long_type = b"X" * 1000 + b" 4000000002 {}"
    huge_amount = wire.encode_payload(intercept(event_id="huge")).replace(b'"amount":50000', b'"amount":1' + b"0" * 400)
    terminal.write(b"login ok\r\n\x00\xff$EVT 12 {cut short\n"
                   + wire.encode_frame("EVT", 4000000001, b"[" * 1020)
                   + b"$" + long_type + b"*%08x\n" % wire.crc32(long_type)
                   + wire.encode_frame("EVT", 4000000003, huge_amount))
    naks = {}
    deadline = time.monotonic() + 30
    while len(naks) < 3 and time.monotonic() < deadline:
        for item in terminal.read(0.5):
            if isinstance(item, wire.Frame) and item.type == "NAK" and item.seq > 4000000000:
                naks[item.seq] = item.body
    assert naks[4000000001]["code"] == "bad_json"
    assert naks[4000000002]["code"] == "bad_type" and naks[4000000002]["detail"].startswith("unknown frame type")
    assert naks[4000000003]["code"] == "bad_json" and "too large" in naks[4000000003]["detail"]  # no double holds it
    still_serving(gw, terminal, centre, {"thresholds_version": 0})


# -- the other direction: junk arriving at the centre ----------------------------------------------
def test_junk_at_the_centre_is_quarantined_in_the_same_batch_as_good_alerts_which_are_stored(broker, tmp_path):
    """What tests/test_centre_ingest.py does not already send: bytes that are not UTF-8, JSON nested
    deeper than the parser goes, a record over the size limit, NaN, and junk acknowledgements,
    escalations and heartbeats, each in between good alerts that must still be stored and receipted."""
    from counterguard.centre.ingest import IngestWorker
    from counterguard.centre.store import open_store
    from centre_support import SimGateway

    store = open_store(tmp_path / "centre.db")
    with IngestWorker(store, host=broker.host, port=broker.port, client_id="centre-a", linger_s=0.2) as worker:
        gw = SimGateway(broker.host, broker.port, "gw-0001")
        _, alert_id, text = gw.alert_payload(seq=900)
        nan_score = text.replace('"score":0.93', '"score":NaN')
        assert nan_score != text
        junk = [("alert", b"\xff\xfe{}"), ("alert", b"[" * 60_000), ("alert", b'{"a":"' + b"x" * 70_000 + b'"}'),
                ("alert", nan_score.encode()), ("ack", b"{}"), ("ack", b'{"type":"acknowledgement","seq":true}'),
                ("escalation", b'{"type":"escalation","level":"green"}'), ("heartbeat", b"[" * 60_000),
                ("status", b"\x00")]
        good = []
        for leaf, payload in junk:  # a good alert before each piece of junk: the same batch, mostly
            seq, _, text = gw.alert_payload()
            good.append(seq)
            gw.publish("alert", text, wait=False)
            gw.publish(leaf, payload, wait=False)
        assert gw.wait_for(lambda g: set(good) <= g.receipted), f"receipted only {sorted(gw.receipted)}"
        assert worker.wait_for(lambda w: w.stats.quarantined >= len(junk), 30)
        assert sorted(a["seq"] for a in store.records(kind="alert", limit=100)) == good
        quarantined = sorted(store.quarantined(), key=lambda q: q["id"])
        assert len(quarantined) == len(junk) == store.quarantine_count()
        by_leaf = {}
        for row in quarantined:
            by_leaf.setdefault(row["topic"].rsplit("/", 1)[-1], []).append(row["reason"])
        assert any("nested too deeply" in r for r in by_leaf["alert"]) and "nested too deeply" in by_leaf["heartbeat"][0]
        assert any("bytes, more than" in r for r in by_leaf["alert"]) and any("NaN is not a JSON value" in r for r in by_leaf["alert"])
        assert len(by_leaf["ack"]) == 2 and "escalation is missing" in by_leaf["escalation"][0]
        assert "not JSON" in by_leaf["status"][0] and any("not JSON" in r for r in by_leaf["alert"])
        assert 900 not in gw.receipted and worker.connected and worker.stats.store_errors == 0
        gw.close()
    store.close()
