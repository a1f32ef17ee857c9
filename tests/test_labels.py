"""Labels for learning: police and investigation case files imported with ``counterguard centre
label`` (line-numbered refusals, accounts kept only as keyed hashes, linked by account window or by
event), joined with supervisors' outcomes and staff reports; events nobody labelled count as honest
only once they are old enough (real centre store on SQLite and PostgreSQL, the real CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from centre_support import SimGateway, postgres, store_url  # noqa: F401  (fixtures)
from counterguard.centre import labels, schema
from counterguard.centre.store import open_store
from counterguard.core import messages
from counterguard.core.manifest import account_hash, save_watchlist_key

GW, REGION, BRANCH = "gw-lab-01", "610100", "b0231"
KEY = bytes.fromhex("11" * 32)
VICTIM, MULE, HONEST = "6222020200112233445", "6217000099887766554", "6222020200000000101"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc).timestamp()


def _event(event_id: str, account: str, ts: str, level: str = "green") -> dict:
    return {"event_id": event_id, "counter": 3, "kind": "cash_withdrawal", "amount": 5000.0, "ts": ts,
            "account_hash": account_hash(KEY, account), "level": level, "score": 0.1, "reasons": [],
            "model_version": "2.0.0", "watchlist_version": 1, "features": [0.0] * 29, "shadow_score": None,
            "shadow_version": None, "decided_at": ts}


def upload(store, events: list[dict], seq: int = 1) -> None:
    body = {"type": "events", "gateway_id": GW, "seq": seq, "region": REGION, "branch": BRANCH,
            "historical": False, "features_version": 2, "events": events}
    topic = f"{messages.PREFIX}/{REGION}/{BRANCH}/{GW}/events"
    store.ingest([schema.check(topic, messages.pack_events(json.dumps(body)))])


def world(store) -> None:
    """A month at one gateway: the victim's two withdrawals on 3 November, the mule's on 5 November,
    honest customers throughout, and one recent event (1 December) nobody has labelled yet."""
    upload(store, [
        _event("v-1", VICTIM, "2026-11-03T09:30:00+08:00", "amber"),
        _event("v-2", VICTIM, "2026-11-03T10:10:00+08:00"),
        _event("v-3", VICTIM, "2026-11-15T10:00:00+08:00"),       # days later: outside the case window
        _event("m-1", MULE, "2026-11-05T15:00:00+08:00", "red"),
        *[_event(f"h-{n}", HONEST, f"2026-11-{10 + n:02d}T11:00:00+08:00") for n in range(5)],
        _event("new-1", HONEST, "2026-12-01T11:00:00+08:00"),
    ])


def run_label(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "counterguard", "centre", "label", *map(str, args)],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "watchlist.key"
    save_watchlist_key(KEY, path)
    return path


def test_a_case_file_links_what_it_can_and_names_every_line_it_could_not_use(tmp_path, key_file):
    db = tmp_path / "centre.db"
    with open_store(db) as store:
        world(store)
    cases = tmp_path / "police-2026-11.jsonl"
    cases.write_text("\n".join([
        json.dumps({"account": VICTIM, "from": "2026-11-03T08:00:00+08:00", "to": "2026-11-03T12:00:00+08:00",
                    "label": "fraud", "source": "police", "case_number": "XA-2026-11873"}),
        json.dumps({"event_id": "m-1", "gateway_id": GW, "label": "fraud", "source": "police",
                    "case_number": "XA-2026-11901"}),
        json.dumps({"account": "6222029999999999999", "from": "2026-11-01", "to": "2026-11-02",
                    "label": "fraud", "source": "police", "case_number": "XA-2026-11999"}),
        "",
        json.dumps({"event_id": "h-1", "label": "maybe", "source": "police"}),
        json.dumps({"account": VICTIM, "label": "fraud", "source": "police"}),
        "{not json",
    ]) + "\n")
    done = run_label(cases, "--store", db, "--watchlist-key", key_file)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "7 line(s) read" not in out and "6 line(s) read; 3 label(s) stored (3 fraud, 0 not fraud)" in out
    assert "linked to 3 uploaded event(s)" in out  # v-1, v-2 by the window; m-1 by its id
    assert f"{cases}:3: no uploaded event matches account hash" in out
    assert f"{cases}:5: refused: label must be fraud or not_fraud, got 'maybe'" in out
    assert f"{cases}:6: refused: an account needs from and to: the time window of the case" in out
    assert f"{cases}:7: refused: not JSON" in out
    assert "3 line(s)" in done.stderr and "refused" in done.stderr
    assert VICTIM.encode() not in db.read_bytes()  # only its keyed hash is kept
    again = run_label(cases, "--store", db, "--watchlist-key", key_file, "--json")
    report = json.loads(again.stdout)
    assert (report["stored"], report["already"], report["linked_events"]) == (0, 3, 3)
    assert [r["line"] for r in report["refused"]] == [5, 6, 7]


def test_an_account_in_clear_needs_the_watchlist_key_and_a_missing_store_is_named(tmp_path):
    db = tmp_path / "centre.db"
    with open_store(db) as store:
        world(store)
    cases = tmp_path / "cases.csv"
    cases.write_text("account,from,to,label,source,case_number\n"
                     f"{VICTIM},2026-11-03,2026-11-03,fraud,police,XA-1\n"
                     f"{account_hash(KEY, MULE)},2026-11-05,2026-11-05,fraud,police,XA-2\n")
    done = run_label(cases, "--store", db)
    assert done.returncode == 1
    assert f"{cases}:2: refused: account given in clear but no watchlist key" in done.stdout
    assert f"{cases}:3: refused: account must be 6 to 34 digits" in done.stdout  # a hash is not an account
    missing = run_label(cases, "--store", tmp_path / "nope.db")
    assert missing.returncode == 2 and "no centre store here" in missing.stderr


def test_a_csv_case_file_by_account_hash_links_across_days(tmp_path):
    with open_store(tmp_path / "centre.db") as store:
        world(store)
        cases = tmp_path / "cases.csv"
        cases.write_text("account_hash,from,to,label,source,case_number\n"
                         f"{account_hash(KEY, VICTIM)},2026-11-01,2026-11-30,fraud,investigation,INV-7\n")
        report = labels.import_file(store, cases, key=None, now=NOW)
        assert (report.stored, report.linked_events, report.problems) == (1, 3, [])  # a date "to" takes the day


def test_every_source_joins_the_events_and_only_old_unlabelled_events_count_as_honest(store_url, key_file):
    store = open_store(store_url)
    world(store)
    sim = SimGateway(None, None, GW, region=REGION, branch=BRANCH)
    root = f"{messages.PREFIX}/{REGION}/{BRANCH}/{GW}"
    records = []

    def alert_on(event_id: str, *, staff: bool = False) -> str:
        seq, alert_id, payload = sim.alert_payload(level="amber")
        body = json.loads(payload)
        body["event_id"] = event_id
        if staff:
            body["reasons"], body["raised_by"], body["note"] = ["teller_report"], "S1024", "nervous, on the phone"
        records.append(schema.check(f"{root}/alert", json.dumps(body).encode()))
        return alert_id

    def outcome(alert_id: str, what: str) -> None:
        _, payload = sim.follow_up("outcome", alert_id, outcome=what)
        records.append(schema.check(f"{root}/outcome", payload.encode()))

    outcome(alert_on("v-1"), "false_alarm")          # the supervisor believed the victim's story...
    outcome(alert_on("m-1"), "confirmed_fraud")
    alert_on("h-4", staff=True)                       # a teller's report, no outcome yet
    outcome(alert_on("h-3"), "false_alarm")
    store.ingest(records)
    cases = store.add_labels([labels.parse_line(  # ...and the police confirmed the case later
        {"account": VICTIM, "from": "2026-11-03", "to": "2026-11-03", "label": "fraud", "source": "police",
         "case_number": "XA-1"}, 1, KEY)], file="police.jsonl", imported_at=NOW)
    assert cases == 1
    events, counts = labels.labelled_events(store, now=NOW, honest_after_days=14)
    got = {e["event_id"]: (e["label"], e["label_source"]) for e in events}
    assert got["v-1"] == (1, "police")                # the case file outranks the outcome
    assert got["v-2"] == (1, "police")                # the same window, never alerted
    assert got["m-1"] == (1, "outcome")
    assert got["h-4"] == (1, "staff_report")
    assert got["h-3"] == (0, "outcome")
    assert got["h-0"] == (0, "unlabelled")            # over two weeks ago, and nobody said anything
    assert "new-1" not in got                         # two days old: too early to call it honest
    assert got["v-3"] == (0, "unlabelled")
    assert counts == {"police": 2, "outcome": 2, "staff_report": 1, "unlabelled": 4}
    store.close()


def test_a_case_imported_before_its_events_arrive_links_when_they_do(tmp_path):
    with open_store(tmp_path / "centre.db") as store:
        cases = tmp_path / "early.jsonl"
        cases.write_text(json.dumps({"account_hash": account_hash(KEY, MULE), "from": "2026-11-05",
                                     "to": "2026-11-05", "label": "fraud", "source": "police",
                                     "case_number": "XA-9"}) + "\n")
        report = labels.import_file(store, cases, key=None, now=NOW)
        assert report.linked_events == 0 and [n for n, _ in report.unlinked] == [1]
        world(store)  # the gateway was offline; its events arrive now
        events, _ = labels.labelled_events(store, now=NOW, honest_after_days=30)
        assert {e["event_id"]: e["label"] for e in events}["m-1"] == 1


def test_the_customers_answers_on_an_alert_come_with_its_event_for_learning(tmp_path):
    store = open_store(tmp_path / "centre.db")
    world(store)
    sim = SimGateway(None, None, GW, region=REGION, branch=BRANCH)
    root = f"{messages.PREFIX}/{REGION}/{BRANCH}/{GW}"
    seq, alert_id, payload = sim.alert_payload(level="red")
    alert = json.loads(payload)
    alert["event_id"] = "m-1"
    _, payload = sim.follow_up("outcome", alert_id, outcome="confirmed_fraud")
    outcome = json.loads(payload)
    # The dialogue's answers travel as signal.<name> items beside the branch's own questions.
    outcome["answers"] = [{"key": "signal.told_to_by_caller", "question": "Did someone tell you to?", "answer": "yes"},
                          {"key": "signal.knows_payee_in_person", "question": "Met the payee?", "answer": "declined"},
                          {"key": "general.1", "question": "Anyone asking you for money?", "answer": "no"}]
    store.ingest([schema.check(f"{root}/alert", json.dumps(alert).encode()),
                  schema.check(f"{root}/outcome", json.dumps(outcome).encode())])
    events, _ = labels.labelled_events(store, now=NOW, honest_after_days=14)
    got = {e["event_id"]: e for e in events}
    assert got["m-1"]["answers"] == {"told_to_by_caller": "yes", "knows_payee_in_person": "declined"}
    assert got["m-1"]["label"] == 1
    assert not any("answers" in e for e in events if e["event_id"] != "m-1")
    store.close()
