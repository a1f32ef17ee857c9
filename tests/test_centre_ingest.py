"""The centre's intake: every gateway's alerts stored once, receipted only once stored, malformed
messages quarantined, and two workers sharing one stream (real mosquitto, real SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from types import SimpleNamespace

import pytest

from counterguard.centre import schema
from counterguard.centre.ingest import IngestWorker
from counterguard.centre.store import QUARANTINE_KEEP, open_store
from centre_support import SimGateway, postgres, store_url  # noqa: F401  (fixtures)
from counterguard.core import messages


def test_alerts_from_several_gateways_arrive_once_even_when_a_gateway_resends(broker, store_url):
    store = open_store(store_url)
    with IngestWorker(store, host=broker.host, port=broker.port, client_id="centre-a") as worker:
        gateways = [SimGateway(broker.host, broker.port, f"gw-{i:04d}", branch=f"b{i:04d}") for i in range(3)]
        sent = {}
        for gw in gateways:
            for n in range(40):
                seq, alert_id, payload = gw.alert_payload(level="red" if n % 4 == 0 else "amber")
                sent[(gw.gateway_id, seq)] = alert_id
                gw.publish("alert", payload, wait=False)
        for gw in gateways:
            assert gw.wait_for(lambda g: g.receipted >= set(range(1, 41))), \
                f"{gw.gateway_id} got receipts for {sorted(gw.receipted)[:5]}... only"
        # The receipts for seqs 5..9 of the first gateway are "lost": it sends them again.
        first = gateways[0]
        first.receipted.clear()
        resent = list(range(5, 10))
        for seq in resent:
            row = next(r for r in store.records(kind="alert", limit=1000)
                       if r["gateway_id"] == first.gateway_id and r["seq"] == seq)
            first.publish("alert", json.dumps(row["payload"]) .encode(), wait=False)
        assert first.wait_for(lambda g: g.receipted >= set(resent)), "a resent alert must be receipted again"
        assert worker.wait_for(lambda w: w.stats.duplicates >= len(resent), 20)

        alerts = store.records(kind="alert", limit=1000)
        assert len(alerts) == 120
        assert {(a["gateway_id"], a["seq"]): a["alert_id"] for a in alerts} == sent
        assert worker.stats.stored == 120 and worker.stats.quarantined == 0
        for gw in gateways:
            gw.close()
    store.close()


def test_acknowledgement_outcome_and_escalation_join_their_alert(broker, tmp_path):
    store = open_store(tmp_path / "centre.db")
    with IngestWorker(store, host=broker.host, port=broker.port, client_id="centre-a") as worker:
        gw = SimGateway(broker.host, broker.port, "gw-0001")
        _, alert_id, payload = gw.alert_payload(level="red")
        gw.publish("alert", payload)
        for kind, leaf in (("escalation", "escalation"), ("ack", "ack"), ("outcome", "outcome")):
            gw.publish(leaf, gw.follow_up(kind, alert_id, outcome="customer_dissuaded")[1])
        assert gw.wait_for(lambda g: g.receipted >= {1, 2, 3, 4})
        trail = store.trail([alert_id])
        assert [t["type"] for t in trail] == ["escalation", "acknowledgement", "outcome"]
        # An outcome from a gateway that records no answers (or an older one) has no "answers".
        assert trail[2]["payload"]["outcome"] == "customer_dissuaded" and "answers" not in trail[2]["payload"]
        gw.close()
    store.close()


MALFORMED = [
    ("alert", b"{not json", "not JSON"),
    ("alert", b"[1, 2]", "must be a JSON object"),
    ("alert", "drop:reasons", "missing 'reasons'"),
    ("alert", "set:level=purple", "'level'"),
    ("alert", "set:seq=0", "'seq'"),
    ("alert", "set:seq=9223372036854775808", "'seq'"),  # 2**63: beyond any 64-bit column
    ("alert", "set:gateway_id=gw-9999", "'gateway_id'"),
    ("alert", "set:branch=b9999", "'branch'"),
    ("outcome", "set:outcome=maybe", "'outcome'"),
    ("outcome", 'json:answers=[{"key": "general.1", "question": "q", "answer": "maybe"}]',
     "item 1 (general.1): answer must be one of yes, no, declined, got 'maybe'"),
    ("outcome", 'json:answers={"general.1": "yes"}', "'answers' must be a list"),
    ("outcome", 'json:answers=[{"key": "general.1", "answer": "no"}]', "exactly key, question and answer"),
    ("outcome", 'json:answers=[{"key": "%s", "question": "q", "answer": "no"}]' % ("k" * 65), "key must be text"),
    ("status", b'{"state":"sleeping","bdseq":1,"ts":"2024-05-06T01:30:00.120Z","gateway_id":"gw-0001"}', "'state'"),
    ("heartbeat", b'{"ts":"2024-05-06T01:30:00.120Z","bdseq":1}', "'outbox_depth'"),
]


def test_malformed_payloads_land_in_quarantine_and_the_rest_still_flow(broker, tmp_path):
    store = open_store(tmp_path / "centre.db")
    with IngestWorker(store, host=broker.host, port=broker.port, client_id="centre-a") as worker:
        gw = SimGateway(broker.host, broker.port, "gw-0001")
        good_before = gw.alert_payload()
        gw.publish("alert", good_before[2])
        for leaf, spec, _ in MALFORMED:
            if isinstance(spec, bytes):
                payload = spec
            else:
                _, alert_id, text = gw.alert_payload(seq=1000)
                body = json.loads(text) if leaf == "alert" else json.loads(gw.follow_up("outcome", alert_id)[1])
                op, _, arg = spec.partition(":")
                if op == "drop":
                    del body[arg]
                elif op == "json":
                    name, value = arg.split("=", 1)
                    body[name] = json.loads(value)
                else:
                    name, value = arg.split("=")
                    body[name] = int(value) if value.isdigit() else value
                payload = json.dumps(body).encode()
            gw.publish(leaf, payload)
        good_after = gw.alert_payload()
        gw.publish("alert", good_after[2])
        assert gw.wait_for(lambda g: {good_before[0], good_after[0]} <= g.receipted)
        assert worker.wait_for(lambda w: w.stats.quarantined >= len(MALFORMED), 20)
        quarantined = sorted(store.quarantined(), key=lambda q: q["id"])
        assert len(quarantined) == len(MALFORMED) == store.quarantine_count()
        for row, (leaf, _, fragment) in zip(quarantined, MALFORMED):
            assert row["topic"].endswith("/" + leaf)
            assert fragment in row["reason"], row["reason"]
            assert row["payload"]  # kept as it came, for whoever investigates
        # Nothing malformed was stored or receipted.
        assert [a["seq"] for a in store.records(kind="alert")] == [good_before[0], good_after[0]]
        assert 1000 not in gw.receipted and store.count("outcome") == 0
        assert worker.connected
        gw.close()
    store.close()


def test_two_workers_share_the_load_and_store_nothing_twice(broker, store_url):
    stores = [open_store(store_url), open_store(store_url)]
    workers = [IngestWorker(s, host=broker.host, port=broker.port, client_id=f"centre-{i}").start()
               for i, s in enumerate(stores)]
    try:
        gateways = [SimGateway(broker.host, broker.port, f"gw-{i:04d}", branch="b0007") for i in range(4)]
        for gw in gateways:
            for _ in range(150):
                gw.publish("alert", gw.alert_payload()[2], wait=False)
            # And every one of them again, as a gateway does after a reconnect that lost the receipts.
            for seq in range(1, 151):
                gw.publish("alert", gw.alert_payload(seq=seq)[2], wait=False)
        for gw in gateways:
            assert gw.wait_for(lambda g: g.receipted >= set(range(1, 151)), 60), gw.gateway_id
        assert all(w.wait_for(lambda w: True, 0) for w in workers)
        total = lambda: sum(w.stats.stored + w.stats.duplicates for w in workers)  # noqa: E731
        assert workers[0].wait_for(lambda _: total() == 1200, 30), [w.stats for w in workers]
        assert stores[0].count("alert") == 600
        assert sum(w.stats.stored for w in workers) == 600
        assert all(w.stats.received > 0 for w in workers), "the broker should give both workers a share"
        for gw in gateways:
            gw.close()
    finally:
        for w in workers:
            w.stop()
        for s in stores:
            s.close()


@pytest.mark.parametrize("topic, fragment", [
    ("counterguard/v1/610100/b0231/gw-0001/weather", "'weather'"),
    ("counterguard/v2/610100/b0231/gw-0001/alert", "not a gateway topic"),
    ("counterguard/v1/610100/gw-0001/alert", "not a gateway topic"),
])
def test_a_message_on_an_unknown_topic_is_named(topic, fragment):
    with pytest.raises(schema.SchemaError, match=fragment):
        schema.check(topic, b"{}")


def test_every_documented_record_kind_is_accepted_as_the_gateway_sends_it():
    gw = SimGateway(None, None, "gw-0001")
    _, alert_id, alert = gw.alert_payload()
    sent = {"alert": alert, "ack": gw.follow_up("ack", alert_id)[1],
            "outcome": gw.follow_up("outcome", alert_id, note="")[1],
            "escalation": gw.follow_up("escalation", alert_id)[1],
            "status": gw.status("online", model_version="1.0.0", watchlist_version=3, thresholds_version=2),
            "heartbeat": messages.heartbeat_payload(stamp=SimpleNamespace(wall=time.time(), mono=5.0, synced=True),
                                                    bdseq=1, outbox_depth=0, oldest_unreceipted_age_s=None)}
    kinds = {leaf: schema.check(f"{gw.topics.root}/{leaf}", p.encode()).kind for leaf, p in sent.items()}
    assert kinds == {"alert": "alert", "ack": "acknowledgement", "outcome": "outcome", "escalation": "escalation",
                     "status": "status", "heartbeat": "heartbeat"}


def test_an_outcome_note_longer_than_documented_is_refused():
    gw = SimGateway(None, None, "gw-0001")
    _, payload = gw.follow_up("outcome", "01HX", note="x" * 2001)
    with pytest.raises(schema.SchemaError, match="'note'"):
        schema.check(f"{gw.topics.root}/outcome", payload.encode())


def test_an_alert_raised_by_staff_is_accepted_with_its_name_and_note_and_older_alerts_without_them_still_are():
    gw = SimGateway(None, None, "gw-0001")
    topic = f"{gw.topics.root}/alert"
    _, _, plain = gw.alert_payload()
    assert "raised_by" not in json.loads(plain)
    assert schema.check(topic, plain.encode()).kind == "alert"  # what every gateway sent before staff could raise
    body = json.loads(plain)
    body.update(reasons=["teller_report"], raised_by="S1024", note="kept looking at his phone")
    record = schema.check(topic, json.dumps(body).encode())
    assert (record.body["raised_by"], record.body["note"]) == ("S1024", "kept looking at his phone")
    for field, bad in (("raised_by", ""), ("raised_by", "S" * 65), ("raised_by", 1024), ("note", "x" * 501),
                       ("note", None)):
        with pytest.raises(schema.SchemaError, match=f"alert field '{field}' has a bad value"):
            schema.check(topic, json.dumps({**body, field: bad}).encode())


def test_a_record_the_database_refuses_is_quarantined_without_sinking_its_batch(broker, store_url):
    store = open_store(store_url)
    with IngestWorker(open_store(store_url), host=broker.host, port=broker.port) as worker:
        gw = SimGateway(broker.host, broker.port, "gw-0001")
        before = gw.alert_payload()
        odd = json.loads(gw.alert_payload()[2])
        odd["alert_id"] = "01HX\u0000NUL"  # valid JSON; PostgreSQL text cannot hold a NUL character
        after = gw.alert_payload()
        for payload in (before[2], json.dumps(odd), after[2]):
            gw.publish("alert", payload, wait=False)
        assert gw.wait_for(lambda g: {before[0], after[0]} <= g.receipted), "the good alerts must be receipted"
        if store_url.startswith("postgresql"):
            assert worker.wait_for(lambda w: w.stats.quarantined == 1, 20)
            [q] = store.quarantined()
            assert "the store refused this alert" in q["reason"] and q["topic"].endswith("/alert")
            assert odd["seq"] not in gw.receipted
            assert [a["seq"] for a in store.records(kind="alert")] == [before[0], after[0]]
        else:  # SQLite keeps it like any other text
            assert gw.wait_for(lambda g: odd["seq"] in g.receipted)
            assert store.count("alert") == 3
        gw.close()
    store.close()


def test_a_centre_store_whose_postgresql_connection_drops_reconnects(postgres):
    import psycopg

    url = postgres.create_database("centre_reconnect")
    store = open_store(url)
    gw = SimGateway(None, None, "gw-0001")
    first, second = (schema.check(f"{gw.topics.root}/alert", gw.alert_payload()[2].encode()) for _ in range(2))
    assert store.ingest([first]).new == 1
    with psycopg.connect(postgres.url(), autocommit=True) as admin:  # the server drops the centre's session
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'centre_reconnect'")
    assert store.ingest([second]).new == 1
    assert store.count("alert") == 2
    store.close()


def test_several_workers_can_open_a_new_sqlite_store_at_the_same_moment(tmp_path):
    import threading

    failures = []

    def open_and_close(path):
        try:
            open_store(path).close()
        except Exception as exc:  # noqa: BLE001  (collected and reported below)
            failures.append(repr(exc))

    for round_ in range(20):
        path = tmp_path / f"centre-{round_}.db"
        threads = [threading.Thread(target=open_and_close, args=(path,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert failures == []


def test_an_alert_resent_under_a_new_seq_is_stored_once_and_each_seq_is_receipted(broker, store_url):
    store = open_store(store_url)
    with IngestWorker(store, host=broker.host, port=broker.port, client_id="centre-a") as worker:
        gw = SimGateway(broker.host, broker.port, "gw-0001")
        seq, alert_id, payload = gw.alert_payload(level="red")
        gw.publish("alert", payload)
        assert gw.wait_for(lambda g: seq in g.receipted)
        again, _, payload = gw.alert_payload(level="red", alert_id=alert_id)  # the same alert, a new seq
        gw.publish("alert", payload)
        assert gw.wait_for(lambda g: again in g.receipted), "the resend's outbox row must close too"
        other, other_id, payload = gw.alert_payload(level="amber")
        gw.publish("alert", payload)
        assert gw.wait_for(lambda g: other in g.receipted)
        assert [(a["alert_id"], a["seq"]) for a in store.records(kind="alert")] == [(alert_id, seq), (other_id, other)]
        assert store.count("alert") == 2 and worker.stats.stored == 2 and worker.stats.duplicates == 1
        gw.close()
    store.close()


def test_quarantine_keeps_the_start_of_a_big_payload_with_its_size_and_hash(broker, store_url):
    store = open_store(store_url)
    junk = b'{"junk":"' + b"x" * (1024 * 1024) + b'"'
    with IngestWorker(store, host=broker.host, port=broker.port, client_id="centre-a") as worker:
        gw = SimGateway(broker.host, broker.port, "gw-0001")
        gw.publish("alert", junk)
        assert worker.wait_for(lambda w: w.stats.quarantined >= 1, 30)
        gw.close()
    [row] = store.quarantined()
    assert row["payload"] == junk[:QUARANTINE_KEEP].decode() and len(row["payload"]) == QUARANTINE_KEEP
    assert row["size"] == len(junk) and row["sha256"] == hashlib.sha256(junk).hexdigest()
    assert "bytes, more than" in row["reason"]
    store.close()


def test_the_store_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        store = open_store(tmp_path / "centre.db")
        store.ingest([], quarantine=[("counterguard/v1/r/b/g/alert", b"junk", "not JSON")])
        files = sorted(p.name for p in tmp_path.iterdir())
        assert files == ["centre.db", "centre.db-shm", "centre.db-wal"]
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == dict.fromkeys(files, 0o600)
        store.close()
    finally:
        os.umask(old)


def test_a_store_from_before_keeps_its_data_and_counts_a_resent_alert_once(tmp_path):
    import sqlite3

    from counterguard.centre.store import _TABLES

    path = tmp_path / "centre.db"
    with sqlite3.connect(path) as old:  # the first schema, with one alert stored under two seqs
        old.executescript(_TABLES.format(autoid="INTEGER PRIMARY KEY", events_partitioned=""))
        old.execute("INSERT INTO schema_version (version) VALUES (1)")
        for seq in (7, 9):
            old.execute("INSERT INTO records (gateway_id, seq, type, alert_id, region, branch, received_at, payload) "
                        "VALUES ('gw-1', ?, 'alert', 'A1', 'r', 'b', 0, '{}')", (seq,))
        old.execute("INSERT INTO records (gateway_id, seq, type, alert_id, region, branch, received_at, payload) "
                    "VALUES ('gw-1', 8, 'acknowledgement', 'A1', 'r', 'b', 0, '{}')")
        old.execute("INSERT INTO quarantine (received_at, topic, reason, payload) VALUES (0, 't', 'r', 'p')")
    old.close()
    store = open_store(path)
    assert [(r["type"], r["seq"]) for r in store.records()] == [("alert", 7), ("acknowledgement", 8)]
    assert [(q["payload"], q["size"], q["sha256"]) for q in store.quarantined()] == [("p", None, None)]
    store.close()
    assert open_store(path).count("alert") == 1  # opening it again changes nothing
