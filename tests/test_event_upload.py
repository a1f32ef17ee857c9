"""Events for learning: every scored event leaves the gateway in compressed batches through the
outbox (keyed hashes in place of account numbers, features, verdict, model and shadow score), behind
any alert, and the centre keeps each event once and receipts the batch (real SQLite on both sides,
real mosquitto, the bundled TFLite model, the centre on SQLite and on PostgreSQL)."""

from __future__ import annotations

import json
import struct
import time
from datetime import datetime
import zlib

import pytest

from centre_support import postgres, store_url  # noqa: F401  (fixtures)
from conftest import wait_until
from counterguard.centre import schema
from counterguard.centre.ingest import IngestWorker
from counterguard.centre.store import open_store
from counterguard.core import messages
from counterguard.core.clock import Clock, Stamp
from counterguard.core.events import parse_event
from counterguard.core.features import FEATURES_VERSION, N_FEATURES
from counterguard.gateway.link.upload import EventUpload
from counterguard.gateway.link.uplink import Uplink
from counterguard.gateway.scoring.assessor import Assessor
from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.gateway.scoring.watchlist import Watchlist
from counterguard.gateway.store.db import Store
from harness import event, intercept, mule

GW, REGION, BRANCH = "gw-learn-01", "610100", "b0231"
MODEL = FraudModel.load(default_model_path())


class BrokenModel:
    """A challenger whose interpreter fails on every call."""
    version = "broken-1"

    def score(self, row):
        raise RuntimeError("challenger interpreter failed")


def score_and_keep(assessor: Assessor, body: dict, *, gateway_id: str = GW):
    """Score and keep one counter event as the counter line does: (event, assessment)."""
    ev = parse_event(body)
    assessment = assessor.assessment(ev)
    stamp = Stamp(time.time(), time.monotonic(), True)
    assessor.record(ev, json.dumps(body).encode(), f"sha-{ev.event_id}", assessment.verdict, stamp, gateway_id,
                    assessment=assessment)
    return ev, assessment


def day_of_events(n: int, prefix: str) -> list[dict]:
    out = []
    for i in range(n):
        if i % 5 == 0:
            out.append(intercept(event_id=f"{prefix}-{i}"))
        elif i % 5 == 1:
            out.append(mule(event_id=f"{prefix}-{i}"))
        else:
            out.append(event(counter=1 + i % 4, amount=300 + 17 * i, account=f"62220202{i:011d}",
                             event_id=f"{prefix}-{i}"))
    return out


@pytest.fixture
def gateway_store(tmp_path):
    with Store(tmp_path / "gateway.db", synchronous="NORMAL") as store:
        watchlist = Watchlist(store)
        watchlist.apply({"version": 1, "full": True, "add": ["6217000099887766554"]})
        yield store, watchlist


def test_a_batch_carries_every_scored_event_with_its_inputs_and_no_account_number(gateway_store):
    store, watchlist = gateway_store
    assessor = Assessor(store, watchlist, MODEL, MODEL.thresholds)
    bodies = day_of_events(7, "b1")
    scored = [score_and_keep(assessor, b) for b in bodies]
    upload = EventUpload(store, watchlist.hash, gateway_id=GW, batch_events=500)

    seq = upload.queue_next()
    row = next(r for r in store.outbox_pending(10, republish_after_s=0) if r.seq == seq)
    assert row.kind == "events"
    span = json.loads(row.payload)  # the outbox names a range of the event log; the events are not copied
    assert span["count"] == 7 and span["last"] - span["first"] == 6
    text = upload.body(row.payload)
    for b in bodies:  # the account numbers never leave in clear
        assert b["account"] not in text
    batch = json.loads(text)
    assert (batch["type"], batch["gateway_id"], batch["count"]) == ("events", GW, 7)
    by_id = {e["event_id"]: e for e in batch["events"]}
    assert list(by_id) == [b["event_id"] for b in bodies]  # oldest first, every one, green included
    for b, (ev, assessment) in zip(bodies, scored):
        sent = by_id[ev.event_id]
        assert sent["account_hash"] == watchlist.hash(b["account"])
        assert sent["level"] == assessment.verdict.level and sent["model_version"] == MODEL.version
        assert len(sent["features"]) == N_FEATURES
        assert sent["features"] == pytest.approx(assessment.features, abs=1e-5)
        assert sent["shadow_score"] is None
    assert {e["level"] for e in batch["events"]} >= {"green", "red"}

    assert upload.queue_next() is None  # nothing left waiting: no empty batch
    more = day_of_events(3, "b2")
    for b in more:
        score_and_keep(assessor, b)
    seq2 = upload.queue_next()
    second = json.loads(upload.body(next(r for r in store.outbox_pending(10, republish_after_s=0)
                                         if r.seq == seq2).payload))
    assert [e["event_id"] for e in second["events"]] == [b["event_id"] for b in more]
    assert second["first"] == batch["last"] + 1


def test_each_uploaded_event_carries_exactly_what_the_gateway_decided(gateway_store):
    """SQLite writes a batch's events: every field of messages.EVENT_FIELDS must be the stored one,
    for greens and reds, with and without a shadow score, an account that is not an account
    number, a version with characters JSON escapes, and a verdict an older gateway stored (features
    packed as float32, no account hash kept: the upload makes both)."""
    store, watchlist = gateway_store
    challenger = FraudModel.load(default_model_path())
    challenger.version = 'shadow "7" \\ é'
    shadowed = Assessor(store, watchlist, MODEL, MODEL.thresholds, shadow=challenger)
    plain = Assessor(store, watchlist, MODEL, MODEL.thresholds)
    bodies = day_of_events(12, "tx")
    kept = {b["event_id"]: score_and_keep(shadowed if i % 2 else plain, b)[1] for i, b in enumerate(bodies)}
    store._conn.execute("UPDATE events SET account = 'not-an-account' WHERE event_id = 'tx-3'")
    store._conn.execute("UPDATE verdicts SET account_hash = NULL WHERE event_id = 'tx-3'")
    old = kept["tx-5"].features
    store._conn.execute("UPDATE verdicts SET account_hash = NULL, features = ? WHERE event_id = 'tx-5'",
                        (struct.pack(f"<{len(old)}f", *old),))
    upload = EventUpload(store, watchlist.hash, gateway_id=GW)
    seq = upload.queue_next()
    text = upload.body(next(r for r in store.outbox_pending(10, republish_after_s=0) if r.seq == seq).payload)
    sent = json.loads(text)["events"]
    assert [e["event_id"] for e in sent] == [b["event_id"] for b in bodies]
    rows = store._conn.execute(
        "SELECT e.event_id, e.counter, e.kind, e.amount, e.ts, v.level, v.score, v.reasons, v.model_version, "
        "v.watchlist_version, v.shadow_score, v.shadow_version, v.decided_wall FROM events e JOIN verdicts v "
        "USING (event_id) ORDER BY e.rowid").fetchall()
    for e, b, row in zip(sent, bodies, rows):
        assert set(e) == set(messages.EVENT_FIELDS) and len(e) == len(messages.EVENT_FIELDS)
        (event_id, counter, kind, amount, ts, level, score, reasons, model_version, watchlist_version, shadow_score,
         shadow_version, decided_wall) = row
        assert (e["event_id"], e["counter"], e["kind"], e["amount"], e["ts"], e["level"]) == \
            (event_id, counter, kind, amount, ts, level)
        assert (e["score"], e["model_version"], e["watchlist_version"], e["reasons"]) == \
            (round(score, 4), model_version, watchlist_version, json.loads(reasons))
        assert (e["shadow_score"], e["shadow_version"]) == \
            ((None, None) if shadow_score is None else (round(shadow_score, 4), challenger.version))
        sent_at = datetime.fromisoformat(e["decided_at"].replace("Z", "+00:00")).timestamp()
        assert abs(sent_at - decided_wall) <= 0.0011  # to the millisecond
        assert e["account_hash"] == (None if event_id == "tx-3" else watchlist.hash(b["account"]))
        # the features as the gateway wrote them, 7 significant digits (float32's, for the older one)
        values = kept[event_id].features
        if event_id == "tx-5":
            values = struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values))
        assert f'"features":{messages.features_text(values)}' in text
        assert e["features"] == pytest.approx(kept[event_id].features, rel=1e-6, abs=1e-6)
    assert [e["shadow_version"] for e in sent].count(challenger.version) == 6


def test_a_batch_is_built_while_the_counter_line_holds_a_write_open(gateway_store):
    """The upload reads through a connection of its own: a verdict being written (the store's lock
    held, a write transaction open) does not wait for a batch, nor a batch for it."""
    import threading

    store, watchlist = gateway_store
    assessor = Assessor(store, watchlist, MODEL, MODEL.thresholds)
    for b in day_of_events(20, "rd"):
        score_and_keep(assessor, b)
    upload = EventUpload(store, watchlist.hash, gateway_id=GW)
    seq = upload.queue_next()
    payload = next(r for r in store.outbox_pending(10, republish_after_s=0) if r.seq == seq).payload
    writing, release, built = threading.Event(), threading.Event(), []

    def counter_line():
        with store.batch():
            score_and_keep(assessor, event(event_id="rd-late"))
            writing.set()
            release.wait(30)

    writer = threading.Thread(target=counter_line)
    writer.start()
    assert writing.wait(30)
    reader = threading.Thread(target=lambda: built.append(json.loads(upload.body(payload))))
    reader.start()
    reader.join(30)
    done_while_writing = not reader.is_alive()
    release.set()
    writer.join(30)
    reader.join(30)
    assert done_while_writing and built[0]["count"] == 20
    assert "rd-late" not in {e["event_id"] for e in built[0]["events"]}  # not committed yet: not in the range
    store.close()
    assert store._reader is None  # its connection closes with the store


def test_payload_times_are_written_as_datetime_writes_them_at_every_rounding_edge():
    """messages.iso makes the text of a second once a second: what it writes must be datetime's own
    RFC 3339 text, milliseconds cut after rounding to the microsecond, at the edges too."""
    import random
    from datetime import datetime, timezone

    def by_datetime(wall):
        return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    rng = random.Random(5)
    edges = (0.9999995, 0.9999994999, 0.0009995, 0.9995, 0.0000005, 0.0000004999, 0.5)
    walls = [0.0, 1.9999995, 1_700_000_000.9999996, 253_402_300_799.999]
    walls += [rng.randint(10**9, 2 * 10**9) + rng.choice(edges) for _ in range(50_000)]
    walls += [rng.uniform(0, 4e9) for _ in range(50_000)]
    walls += sorted(rng.uniform(1.7e9, 1.7e9 + 5) for _ in range(2_000))  # many in one second, as a batch has
    assert [w for w in walls if messages.iso(w) != by_datetime(w)] == []


def test_a_batch_goes_when_full_or_when_its_oldest_event_has_waited_and_two_at_most_are_open(gateway_store):
    store, watchlist = gateway_store
    assessor = Assessor(store, watchlist, MODEL, MODEL.thresholds)
    now = [time.time()]
    upload = EventUpload(store, watchlist.hash, gateway_id=GW, batch_events=10, interval_s=60, clock=lambda: now[0],
                         check_every_s=0)
    for b in day_of_events(3, "w"):
        score_and_keep(assessor, b)
    assert upload.queue_due() is None  # 3 of 10, and the oldest has waited under a minute
    now[0] += 61
    assert upload.queue_due() is not None
    for b in day_of_events(25, "full"):
        score_and_keep(assessor, b)
    assert upload.queue_due() is not None  # 10 waiting: a full batch goes at once
    assert upload.queue_due() is None  # two batches open, none receipted: the rest waits in the event log
    assert store.open_event_batches() == 2
    store.receipt([r.seq for r in store.outbox_pending(10, republish_after_s=0)])
    assert upload.queue_due() is not None


def test_a_due_batch_waits_while_the_counters_are_busy_and_never_longer_than_the_limit(gateway_store):
    store, watchlist = gateway_store
    assessor = Assessor(store, watchlist, MODEL, MODEL.thresholds)
    now, busy = [time.time()], [True]
    upload = EventUpload(store, watchlist.hash, gateway_id=GW, batch_events=10, interval_s=60, clock=lambda: now[0],
                         check_every_s=0, counters_busy=lambda: busy[0], wait_for_quiet_s=300)
    for b in day_of_events(12, "burst"):
        score_and_keep(assessor, b)
    assert upload.queue_due() is None  # a full batch, but the counters are taking events
    assert upload.waited_for_quiet == 1 and store.open_event_batches() == 0
    busy[0] = False
    first = upload.queue_due()  # a quiet moment: it goes
    assert first is not None and upload.queued_events == 10
    busy[0] = True
    now[0] += 61  # the last 2 are due by age, and the counters are busy again
    assert upload.queue_due() is None
    now[0] += 300  # their oldest has now waited past wait_for_quiet_s: it goes, busy or not
    assert upload.queue_due() is not None
    assert upload.queued_events == 12 and store.open_event_batches() == 2


def test_with_no_wait_for_quiet_a_due_batch_goes_while_the_counters_are_busy(gateway_store):
    store, watchlist = gateway_store
    assessor = Assessor(store, watchlist, MODEL, MODEL.thresholds)
    upload = EventUpload(store, watchlist.hash, gateway_id=GW, batch_events=5, check_every_s=0,
                         counters_busy=lambda: True, wait_for_quiet_s=0)
    for b in day_of_events(5, "nowait"):
        score_and_keep(assessor, b)
    assert upload.queue_due() is not None and upload.waited_for_quiet == 0


def test_alerts_and_outcomes_leave_before_event_batches_made_earlier(gateway_store):
    store, watchlist = gateway_store
    assessor = Assessor(store, watchlist, MODEL, MODEL.thresholds)
    for b in day_of_events(4, "early"):
        score_and_keep(assessor, b)
    store.receipt([r.seq for r in store.outbox_pending(10, republish_after_s=0)])  # the early alerts are home
    batch = EventUpload(store, watchlist.hash, gateway_id=GW).queue_next()
    _, red = score_and_keep(assessor, intercept(event_id="later-red"))
    assert red.verdict.level == "red"
    kinds = [r.kind for r in store.outbox_pending(10, republish_after_s=0, alerts_first=True)]
    assert kinds == ["alert", "events"]
    assert [r.seq for r in store.outbox_pending(10, republish_after_s=0)][0] == batch  # plain seq order otherwise


def test_a_challenger_scores_beside_the_model_in_force_and_never_changes_the_verdict(gateway_store):
    store, watchlist = gateway_store
    plain = Assessor(store, watchlist, MODEL, MODEL.thresholds)
    challenger = FraudModel.load(default_model_path())
    shadowed = Assessor(store, watchlist, MODEL, MODEL.thresholds, shadow=challenger)
    broken = Assessor(store, watchlist, MODEL, MODEL.thresholds, shadow=BrokenModel())
    for b in day_of_events(10, "sh"):
        ev = parse_event(b)
        alone, beside, failing = plain.assessment(ev), shadowed.assessment(ev), broken.assessment(ev)
        assert beside.verdict == alone.verdict == failing.verdict
        assert beside.shadow_score == pytest.approx(challenger.score(alone.features))
        assert beside.shadow_version == challenger.version
        assert failing.shadow_score is None  # a failing challenger is left out, the teller still gets an answer
    ev, kept = score_and_keep(shadowed, intercept(event_id="sh-kept"))
    upload = EventUpload(store, watchlist.hash, gateway_id=GW)
    seq = upload.queue_next()
    batch = json.loads(upload.body(next(r for r in store.outbox_pending(10, republish_after_s=0)
                                        if r.seq == seq).payload))
    sent = batch["events"][-1]
    assert sent["event_id"] == "sh-kept"
    assert (sent["shadow_score"], sent["shadow_version"]) == (round(kept.shadow_score, 4), challenger.version)


def test_the_centre_keeps_each_uploaded_event_once_and_receipts_the_batch(broker, gateway_store, store_url):
    store, watchlist = gateway_store
    assessor = Assessor(store, watchlist, MODEL, MODEL.thresholds)
    bodies = day_of_events(240, "c")
    for b in bodies:
        score_and_keep(assessor, b)
    upload = EventUpload(store, watchlist.hash, gateway_id=GW, batch_events=100, interval_s=1.0)
    centre = open_store(store_url)
    uplink = Uplink(store, watchlist, host=broker.host, port=broker.port, gateway_id=GW, region=REGION,
                    branch=BRANCH, heartbeat_s=1.0, republish_after_s=600.0, backoff_min=0.1, backoff_max=0.5,
                    clock=Clock(assume_synced=True), upload=upload)
    with IngestWorker(open_store(store_url), host=broker.host, port=broker.port) as worker:
        uplink.start()
        try:
            assert wait_until(lambda: centre.event_count() == len(bodies) and store.outbox_depth() == 0, 30), \
                f"centre has {centre.event_count()} of {len(bodies)} events, outbox {store.outbox_depth()}"
            assert upload.queued_batches == 3
            # Every batch again, as after a lost receipt: nothing is stored twice, all is receipted again.
            with store.batch():
                store._conn.execute("UPDATE outbox SET receipted_wall = NULL WHERE kind = 'events'")
            store.outbox_unpublish()
            uplink.wake()
            assert wait_until(lambda: store.outbox_depth() == 0, 30)
            assert wait_until(lambda: worker.stats.events_duplicate == len(bodies), 10), worker.stats
        finally:
            uplink.stop()
        assert worker.stats.events == len(bodies) == centre.event_count()
    events = centre.events()
    assert [e["event_id"] for e in events if e["event_id"].startswith("c-")] and len(events) == len(bodies)
    assert {e["event_id"] for e in events} == {b["event_id"] for b in bodies}
    red = next(e for e in events if e["event_id"] == "c-0")
    assert (red["level"], red["gateway_id"], red["region"], red["branch"]) == ("red", GW, REGION, BRANCH)
    assert red["account_hash"] == watchlist.hash(bodies[0]["account"]) and len(red["features"]) == N_FEATURES
    assert red["features_version"] == FEATURES_VERSION and red["model_version"] == MODEL.version
    centre.close()


def _batch(events: list, seq: int = 1) -> dict:
    return {"type": "events", "gateway_id": GW, "seq": seq, "region": REGION, "branch": BRANCH, "historical": False,
            "features_version": FEATURES_VERSION, "first": 1, "last": len(events), "count": len(events), "events": events}


def _one(**changes) -> dict:
    e = {"event_id": "e-1", "counter": 1, "kind": "cash_withdrawal", "amount": 500.0,
         "ts": "2026-12-01T09:30:00+08:00", "account_hash": "a" * 64, "level": "green", "score": 0.01,
         "reasons": [], "model_version": "2.0.0", "watchlist_version": 1, "features": [0.5] * N_FEATURES,
         "shadow_score": None, "shadow_version": None, "decided_at": "2026-12-01T01:30:00.000Z"}
    e.update(changes)
    return e


TOPIC = f"counterguard/v1/{REGION}/{BRANCH}/{GW}/events"


@pytest.mark.parametrize("payload, says", [
    (zlib.compress(b" " * (messages.EVENTS_INFLATED_MAX + 1)), "inflates to more than"),
    (b'{"type": "events"}', "not zlib-compressed"),
    (zlib.compress(json.dumps(_batch([_one(), _one(event_id="e-2", level="purple")])).encode()),
     "events item 2 field 'level'"),
    (zlib.compress(json.dumps(_batch([_one(account_hash="6222020200000000101")])).encode()),
     "events item 1 field 'account_hash'"),
    (zlib.compress(json.dumps(_batch([])).encode()), "field 'events'"),
    (zlib.compress(json.dumps({**_batch([_one()]), "gateway_id": "gw-other"}).encode()), "came on the topic"),
])
def test_a_bad_events_batch_is_refused_naming_what_is_wrong(payload, says):
    with pytest.raises(schema.SchemaError, match=says):
        schema.check(TOPIC, payload)


def test_an_account_number_in_place_of_its_hash_is_refused_not_stored(tmp_path):
    # The centre never keeps a clear account number in the events table, whatever a gateway sends.
    raw = messages.pack_events(json.dumps(_batch([_one(account_hash="6222020200000000101")])))
    with pytest.raises(schema.SchemaError, match="account_hash"):
        schema.check(TOPIC, raw)


def test_postgresql_keeps_events_in_day_partitions_and_retention_drops_whole_days(postgres):  # noqa: F811
    store = open_store(postgres.create_database(f"events_days_{time.time_ns()}"))
    days = ["2026-11-01", "2026-11-20", "2026-12-02"]
    events = [_one(event_id=f"d{i}-{n}", ts=f"{day}T10:00:00+00:00") for i, day in enumerate(days) for n in range(5)]
    record = schema.check(TOPIC, messages.pack_events(json.dumps(_batch(events))))
    assert store.ingest([record]).events == 15
    assert store.ingest([record]).events_duplicate == 15  # a resent batch: kept once
    parts = {r["relname"] for r in store._query(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'")}
    assert parts == {"events_20261101", "events_20261120", "events_20261202"}
    now = time.mktime(time.strptime("2026-12-03", "%Y-%m-%d"))
    assert store.purge_events(keep_days=20, now=now) == 5  # 1 November is more than 20 days back
    assert sorted({e["ts"][:10] for e in store.events()}) == ["2026-11-20", "2026-12-02"]
    store.close()


def test_sqlite_retention_deletes_days_past_the_limit(tmp_path):
    store = open_store(tmp_path / "centre.db")
    events = [_one(event_id=f"s{n}", ts=f"2026-11-{1 + n:02d}T10:00:00+00:00") for n in range(10)]
    store.ingest([schema.check(TOPIC, messages.pack_events(json.dumps(_batch(events))))])
    now = time.mktime(time.strptime("2026-11-11", "%Y-%m-%d"))
    assert store.purge_events(keep_days=5, now=now) == 5
    assert [e["event_id"] for e in store.events()] == [f"s{n}" for n in range(5, 10)]
    store.close()


def test_events_of_an_unreceipted_batch_or_not_yet_queued_are_never_purged(gateway_store):
    store, watchlist = gateway_store
    assessor = Assessor(store, watchlist, MODEL, MODEL.thresholds)
    for b in day_of_events(30, "p"):
        score_and_keep(assessor, b)
    upload = EventUpload(store, watchlist.hash, gateway_id=GW, batch_events=10)
    open_batch = upload.queue_next()                 # events 1-10: sent, not receipted yet
    store.receipt([upload.queue_next()])             # events 11-20: at the centre
    later = time.time() + 365 * 86400                # a year on, everything is past keep_days
    assert store.purge(later, keep_days=90, keep_unuploaded=True)["events"] == 0  # 1-10 may be sent again
    store.receipt([open_batch])
    gone = store.purge(later, keep_days=90, keep_unuploaded=True)["events"]
    left = {r[0] for r in store._q("SELECT event_id FROM events")}
    greens_1_to_20 = {f"p-{i}" for i in range(20) if i % 5 not in (0, 1)}
    assert gone == len(greens_1_to_20) and not left & greens_1_to_20
    assert {f"p-{i}" for i in range(20, 30)} <= left  # never queued: kept until they are


def test_a_gateway_uploads_a_burst_once_its_counters_are_quiet_and_loses_none(broker, tmp_path):
    from gpiozero.pins.mock import MockFactory

    from counterguard.gateway.counter.terminal import TellerTerminal
    from counterguard.gateway.ops.app import Gateway
    from harness import gateway_config, pty_pair

    centre = open_store(tmp_path / "centre.db")
    bodies = day_of_events(300, "burst")
    with pty_pair() as (master, path), IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host,
                                                     port=broker.port):
        cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path).with_changes(
            "upload", batch_events=50, interval_s=2.0, wait_for_quiet_s=300.0)
        gw = Gateway(cfg, pin_factory=MockFactory())
        gw.start()
        try:
            line, terminal = gw.lines[0], TellerTerminal(master, timeout=5)
            assert not gw.upload.counters_busy()  # nothing answered yet
            for i in range(3):  # a counter's everyday pace, events seconds apart: never a burst
                assert terminal.send(event(event_id=f"pace-{i}")).type == "ACK"
                time.sleep(0.3)
                assert not gw.upload.counters_busy()
            line.busy_s += 1.0  # as if the line had spent the last second answering frames
            time.sleep(0.3)
            assert gw.upload.counters_busy()
            time.sleep(0.3)  # and then nothing
            assert not gw.upload.counters_busy()
            replies = terminal.send_many(bodies, window=32)
            assert [r.type for r in replies] == ["ACK"] * len(bodies)
            # Once the counter is quiet the whole burst goes up, every event once.
            assert wait_until(lambda: centre.event_count() == len(bodies) + 3 and gw.store.outbox_depth() == 0, 60), \
                f"centre has {centre.event_count()} of {len(bodies) + 3}, outbox {gw.store.outbox_depth()}"
            assert not gw.upload.counters_busy()
        finally:
            gw.stop()
    assert {e["event_id"] for e in centre.events()} == {b["event_id"] for b in bodies} | {f"pace-{i}" for i in range(3)}
