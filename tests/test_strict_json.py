"""Judged on the event, written as plain JSON: a resent event that a terminal re-encoded gets its
original ACK (and a changed field still conflicts), and every line counterguard writes out
(`export-events`, `--labelled`, `replay`, the centre's `--json` reports) reads back with a strict
parser.

Real parts: the gateway's pipeline with the real TFLite model on a SQLite file, the real export
and replay code, the centre's intake check, store and command line."""

from __future__ import annotations

import hashlib
import io
import json
import math
import sqlite3
import subprocess
import sys
from datetime import date, datetime, timedelta

import pytest

from counterguard.core import jsontext, messages, wire
from counterguard.core.events import canonical_digest
from counterguard.gateway.branch.export import export_events
from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.gateway.counter.pipeline import Pipeline
from counterguard.gateway.scoring.assessor import Assessor
from counterguard.gateway.counter.replay import replay
from counterguard.gateway.store.db import Store
from counterguard.gateway.scoring.watchlist import Watchlist

from harness import CST, event, intercept

MODEL = FraudModel.load(default_model_path())
DAYS = (date.today() - timedelta(days=1), date.today() + timedelta(days=1))  # the gateway's local days around now


@pytest.fixture
def pipeline(tmp_path):
    store = Store(tmp_path / "gateway.db")
    yield Pipeline(Assessor(store, Watchlist(store, None), MODEL, MODEL.thresholds), gateway_id="gw-test")
    store.close()


def answer(pipeline, seq: int, payload: bytes) -> wire.Frame:
    [item] = wire.FrameDecoder().feed(wire.encode_frame("EVT", seq, payload))
    [reply] = wire.FrameDecoder().feed(pipeline.process([item]).replies)
    assert reply.seq == seq
    return reply


def older_gateway(pipeline, sql: str, args=()) -> None:
    """Change a stored row as a gateway before this release would have written it."""
    with sqlite3.connect(pipeline.store.path) as conn:
        assert conn.execute(sql, args).rowcount == 1
    conn.close()


def strict(line: str):
    """A reader that takes nothing but JSON: no NaN or Infinity, no repeated key."""
    def no_repeats(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"repeated key in {line!r}"
        return dict(pairs)

    def no_constant(name):
        raise AssertionError(f"{name} in {line!r}")

    value = json.loads(line, object_pairs_hook=no_repeats, parse_constant=no_constant)
    assert "\n" not in line
    return value


# -- a resend is the same event however it is spelled ---------------------------------------------------
def test_a_resend_the_terminal_re_encoded_gets_the_original_ack_and_is_scored_once(pipeline):
    body = intercept(event_id="resend-1")
    first = answer(pipeline, 1, wire.encode_payload(body))
    assert first.type == "ACK" and first.body["level"] == "red"
    # The same event as another terminal library writes it: keys reversed, spaces, 50000.0, 5e4.
    spaced = json.dumps(dict(reversed(list({**body, "amount": 50000.0}.items()))), indent=1).replace("\n", " ")
    exponent = wire.encode_payload(body).replace(b'"amount":50000', b'"amount":5e4')
    for seq, payload in ((2, spaced.encode()), (3, exponent)):
        again = answer(pipeline, seq, payload)
        assert again.type == "ACK" and again.body == first.body
    assert pipeline.counts["red"] == 1  # one verdict, one alert: the resends were not scored again
    assert len(pipeline.store.open_alerts()) == 1


@pytest.mark.parametrize("change", [dict(amount=50001), dict(account="6222020200000000555"),
                                    dict(purpose="travel"), dict(terminal_note="added later")])
def test_a_changed_field_under_a_used_event_id_still_conflicts(pipeline, change):
    body = intercept(event_id="resend-2")
    assert answer(pipeline, 1, wire.encode_payload(body)).type == "ACK"
    changed = answer(pipeline, 2, wire.encode_payload({**body, **change}))
    assert changed.type == "NAK" and changed.body["code"] == "conflict" and changed.body["field"] == "event_id"


def test_an_event_stored_before_the_digest_still_matches_its_exact_resend(pipeline):
    # A row written by an earlier gateway holds the sha256 of the raw payload bytes.
    body = event(event_id="stored-before")
    payload = json.dumps(body).encode()  # the terminal's own spelling, with spaces
    first = answer(pipeline, 1, payload)
    older_gateway(pipeline, "UPDATE events SET payload_sha256 = ? WHERE event_id = ?",
                  (hashlib.sha256(payload).hexdigest(), "stored-before"))
    assert answer(pipeline, 2, payload).body == first.body
    changed = answer(pipeline, 3, json.dumps({**body, "amount": 1}).encode())
    assert changed.body["code"] == "conflict"


def test_the_digest_is_the_event_as_data():
    body = {"event_id": "d1", "amount": 2000, "teller_flags": ["urgent"], "x": {"b": 1.5, "a": [1]}}
    same = {"x": {"a": [1.0], "b": 1.5}, "teller_flags": ["urgent"], "amount": 2e3, "event_id": "d1",
            "purpose": None}
    assert canonical_digest(body) == canonical_digest(same)
    for other in ({**body, "amount": 2000.5}, {**body, "teller_flags": ["urgent", "anxious"]},
                  {**body, "x": {"b": 1.5, "a": [True]}}, {**body, "extra": None, "more": 0}):
        assert canonical_digest(other) != canonical_digest(body)


# -- every exported line is strict JSON -----------------------------------------------------------------
ODD = (b'{"event_id": "odd-1", "ts": "TS", "counter": 2, "kind": "cash_withdrawal", '
       b'"account": "6222020200000000777", "amount": 8000.50, "note": "caf\\u00e9 \\u0024", "big": 1e308}')


def test_export_and_replay_write_only_strict_json_lines(pipeline):
    today = datetime.now(CST)
    stamp = today.isoformat(timespec="seconds")
    sent = [wire.encode_payload(event(event_id="plain-1")), wire.encode_payload(intercept(event_id="red-1")),
            ODD.replace(b"TS", stamp.encode()),
            wire.encode_payload(event(event_id="\u67dc\u53f0-1", note="\u5173\u7231")),
            wire.encode_payload(event(event_id="half-a-pair", note="x\ud800"))]  # kept as sent, unknown field
    for seq, payload in enumerate(sent, 1):
        assert answer(pipeline, seq, payload).type == "ACK"
    # What a strict reader refuses never reaches the store.
    for seq, bad in enumerate((sent[0].replace(b'"purpose"', b'"note":NaN,"purpose"'),
                               sent[0].replace(b'"purpose"', b'"n":1e400,"purpose"'),
                               sent[0].replace(b'"purpose":"daily"', b'"purpose":"daily","purpose":"home"')), 10):
        assert answer(pipeline, seq, bad).body["code"] == "bad_json"

    plain = export_events(pipeline.store, *DAYS)
    labelled = export_events(pipeline.store, *DAYS, labelled=True)
    assert plain.events == labelled.events == 5 and not plain.not_json
    for line in plain.lines + labelled.lines:
        strict(line)
        line.encode("utf-8")  # the file is UTF-8: a lone surrogate stays an escape
    assert [strict(line)["event"] for line in labelled.lines] == [strict(line) for line in plain.lines]

    out, err = io.StringIO(), io.StringIO()
    assert replay(io.StringIO("".join(line + "\n" for line in plain.lines)), out, err) == 0, err.getvalue()
    verdicts = [strict(line) for line in out.getvalue().splitlines()]
    assert [v["event_id"] for v in verdicts] == [strict(line)["event_id"] for line in plain.lines]
    assert all(math.isfinite(v["score"]) for v in verdicts)


def test_an_event_stored_before_strict_json_is_left_out_of_the_export_and_named(pipeline):
    assert answer(pipeline, 1, wire.encode_payload(event(event_id="good-1"))).type == "ACK"
    assert answer(pipeline, 2, wire.encode_payload(event(event_id="old-nan"))).type == "ACK"
    # As an older gateway kept it: a NaN in an unknown field, written back out as is.
    older_gateway(pipeline, "UPDATE events SET payload = replace(payload, '\"purpose\"', '\"n\":NaN,\"purpose\"') "
                  "WHERE event_id = 'old-nan'")
    for labelled in (False, True):
        exp = export_events(pipeline.store, *DAYS, labelled=labelled)
        assert exp.events == 1 and [n.split(":")[0] for n in exp.not_json] == ["old-nan"]
        for line in exp.lines:
            strict(line)


def test_replay_refuses_what_is_not_strict_json_and_names_the_line():
    good = json.dumps(event(event_id="r-1"))
    lines = [good, good.replace('"purpose"', '"n": NaN, "purpose"'),
             good.replace('"purpose": "daily"', '"purpose": "daily", "purpose": "home"'),
             json.dumps(event(event_id="r-\u202e-2"))]
    out, err = io.StringIO(), io.StringIO()
    assert replay(io.StringIO("\n".join(lines) + "\n"), out, err) == 1
    assert [strict(line)["event_id"] for line in out.getvalue().splitlines()] == ["r-1"]
    problems = err.getvalue().splitlines()
    assert problems[0].startswith("line 2: not JSON: NaN")
    assert problems[1].startswith("line 3: not JSON: duplicate key 'purpose'")
    assert problems[2].startswith("line 4: event_id: must be printable text")
    assert jsontext  # the replay reads through the same strict reader as the counter line


def test_the_centre_s_json_reports_are_strict_json(pipeline, tmp_path):
    from counterguard.centre import schema as centre_schema
    from counterguard.centre.store import open_store

    # A red alert from the gateway's outbox, as the uplink publishes it, and junk the centre quarantines.
    assert answer(pipeline, 1, wire.encode_payload(intercept(event_id="centre-1"))).type == "ACK"
    [(seq, body)] = pipeline.store.db.execute("SELECT seq, payload FROM outbox").fetchall()
    topics = messages.Topics("440300", "b0007", "gw-test")
    record = centre_schema.check(topics.alert, messages.finalise(body, seq=seq, region="440300", branch="b0007",
                                                                 historical=False).encode())
    junk = b'{"seq": NaN, "seq": 1e400, "note": "\\ud800"}'
    with pytest.raises(centre_schema.SchemaError, match="not JSON"):
        centre_schema.check(topics.alert, junk)
    db = tmp_path / "centre.db"
    store = open_store(str(db))
    store.ingest([record], quarantine=[(topics.alert, junk, "alert is not JSON")])
    store.close()
    for report in (["fleet"], ["accuracy", "--by", "all"], ["accuracy", "--by", "branch"], ["quarantine"],
                   ["rollout"]):
        done = subprocess.run([sys.executable, "-m", "counterguard", "centre", *report, "--store", str(db), "--json"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        strict(done.stdout.replace("\n", " "))  # one JSON document, indented
    quarantined = strict(subprocess.run(
        [sys.executable, "-m", "counterguard", "centre", "quarantine", "--store", str(db), "--json"],
        capture_output=True, text=True, timeout=60).stdout.replace("\n", " "))
    assert quarantined["count"] == 1 and "NaN" in quarantined["latest"][0]["payload"]  # kept as text, not as a number
