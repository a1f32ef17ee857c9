"""The gateway's SQLite store and the stop-payment watchlist, on real files."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counterguard.core.clock import Stamp
from counterguard.core.decision import Verdict
from counterguard.core.events import parse_event
from counterguard.core.features import summarise_history
from counterguard.gateway.store.db import (
    MIGRATIONS,
    LifecycleError,
    Store,
    StoreError,
    UnknownAlert,
    UnknownEvent,
)
from counterguard.gateway.scoring.watchlist import Watchlist, WatchlistFileError, WatchlistRejected

MULE = "6217000099887766554"
DAY = 86400.0


def event(n: int, *, counter: int = 1, account: str = "6222020200000000101", amount: float = 800.0,
          ts: str = "2024-05-06T09:30:00+08:00"):
    return parse_event({"event_id": f"ev-{n}", "ts": ts, "counter": counter, "kind": "cash_withdrawal",
                        "account": account, "amount": amount})


def verdict(ev, level: str) -> Verdict:
    reasons = () if level == "green" else ("large_cash",)
    return Verdict(ev.event_id, level, {"green": 0.1, "amber": 0.6, "red": 0.95}[level], reasons,
                   "Proceed" if level == "green" else "Hold - call supervisor", ev.counter)


def stamp(wall: float | None = None) -> Stamp:
    return Stamp(time.time() if wall is None else wall, time.monotonic(), True)


def record(store: Store, n: int, level: str, *, wall: float | None = None, **kw):
    ev = event(n, **kw)
    payload = json.dumps({"event_id": ev.event_id}).encode()
    return store.record_verdict(ev, payload, f"sha-{n}", verdict(ev, level), stamp(wall), model_version="m-1",
                                watchlist_version=3, gateway_id="gw-test")


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "gateway.db") as s:
        yield s


def count(path, sql: str) -> int:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchone()[0]


# -- schema and durability ------------------------------------------------------------------------
def test_reopening_the_store_applies_no_migration_twice_and_keeps_everything(tmp_path):
    path = tmp_path / "gateway.db"
    with Store(path) as s:
        alert = record(s, 1, "red")
        record(s, 2, "green")
    with Store(path) as s:
        assert s.migrate() == []  # nothing left to apply
        assert [a.alert_id for a in s.open_alerts()] == [alert.alert_id]
        assert s.decided("ev-2") is not None
        assert s.outbox_depth() == 1
    assert count(path, "select count(*) from migrations") == len(MIGRATIONS)
    with sqlite3.connect(path) as db:
        assert db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_closing_twice_is_harmless_and_a_closed_store_says_so(tmp_path):
    s = Store(tmp_path / "gateway.db")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        record(s, 1, "green")


@pytest.fixture
def umask_022():
    old = os.umask(0o022)  # a gateway started by hand from an ordinary shell
    yield
    os.umask(old)


def test_the_store_and_its_wal_files_are_readable_by_the_gateways_user_only(tmp_path, umask_022):
    path = tmp_path / "gateway.db"
    with Store(path) as s:
        record(s, 1, "red")
        files = [path, tmp_path / "gateway.db-wal", tmp_path / "gateway.db-shm"]
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
    # A store an older gateway left readable to everyone is tightened when it is opened.
    path.chmod(0o644)
    with Store(path) as s:
        assert [a.level for a in s.open_alerts()] == ["red"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_unknown_synchronous_mode_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="synchronous must be one of FULL, NORMAL"):
        Store(tmp_path / "gateway.db", synchronous="FAST")


# -- the hot path ---------------------------------------------------------------------------------
def test_a_green_verdict_is_stored_without_raising_an_alert(store):
    assert record(store, 1, "green") is None
    assert store.open_alerts(level=None) == []
    assert store.outbox_depth() == 0
    assert store.decided("ev-1")[0] == "sha-1"


@pytest.mark.parametrize("level", ["amber", "red"])
def test_amber_and_red_raise_an_alert_with_its_outbox_row(store, level):
    alert = record(store, 1, level, counter=3)
    assert alert.level == level and alert.counter == 3 and alert.event_id == "ev-1"
    assert len(alert.alert_id) == 26  # a ULID
    [row] = store.outbox_pending(10, republish_after_s=30)
    assert row.seq == alert.seq and row.kind == "alert" and row.ref_id == alert.alert_id
    body = json.loads(row.payload)
    assert body["type"] == "alert" and body["level"] == level and body["counter"] == 3
    assert body["gateway_id"] == "gw-test" and body["reasons"] == ["large_cash"] and body["watchlist_version"] == 3


def test_a_resent_event_finds_the_ack_it_was_given(store):
    record(store, 7, "red")
    sha, ack_body = store.decided("ev-7")
    assert sha == "sha-7"
    assert json.loads(ack_body) == verdict(event(7), "red").ack_body()
    assert store.decided("never-seen") is None


def test_account_history_returns_that_accounts_events_in_the_window(store):
    record(store, 1, "green", ts="2024-05-06T08:00:00+08:00", counter=1, amount=100)
    record(store, 2, "green", ts="2024-05-06T09:00:00+08:00", counter=2, amount=200)
    record(store, 3, "green", ts="2024-05-06T09:00:00+08:00", account=MULE, amount=300)
    at_nine = event(0, ts="2024-05-06T09:00:00+08:00").epoch
    assert store.account_history("6222020200000000101", at_nine - DAY, at_nine + 1) == [
        (at_nine, 200.0, 2), (at_nine - 3600, 100.0, 1)]
    assert store.account_history("6222020200000000101", at_nine - 60, at_nine + 1) == [(at_nine, 200.0, 2)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(past=st.lists(st.tuples(st.sampled_from((0, 1, 59, 3599, 3600, 3601, 86399, 86400, 86401, 90000, -1, -60)),
                               st.integers(0, 90_000), st.integers(1, 5), st.integers(1, 5_000_000)),
                     min_size=0, max_size=40),
       counter=st.integers(1, 5), limit=st.sampled_from((1, 3, 1000)))
def test_the_stores_history_summary_is_summarise_history_of_the_same_events(past, counter, limit):
    # The gateway summarises an account's day in SQLite; training summarises it in Python
    # (core/features.py). Both must give the same History, at the hour's and the day's edges too.
    with Store(":memory:") as s:
        now = event(0, ts="2024-05-06T12:00:00+08:00").epoch
        for n, (edge, spread, at, cents) in enumerate(past):
            ago = edge if n % 2 else spread
            when = datetime.fromtimestamp(now - ago, timezone(timedelta(hours=8))).isoformat()
            record(s, n + 1, "green", ts=when, counter=at, amount=cents / 100,
                   account="6222020200000000101" if n % 5 else MULE)
        for account in ("6222020200000000101", MULE):
            expected = summarise_history(s.account_history(account, now - DAY, now, limit=limit), now, counter)
            got = s.account_summary(account, now, counter, limit=limit)
            assert (got.count_1h, got.count_24h, got.other_counters_24h) == (
                expected.count_1h, expected.count_24h, expected.other_counters_24h)
            assert got.amount_24h == pytest.approx(expected.amount_24h, rel=1e-12)


def test_a_busy_accounts_history_is_read_back_newest_first_and_bounded(store):
    # A trader's account with many withdrawals today: the verdict reads back only the latest ones.
    for n in range(1, 8):
        record(store, n, "green", ts=f"2024-05-06T09:0{n}:00+08:00", amount=100 * n)
    at_ten = event(0, ts="2024-05-06T10:00:00+08:00").epoch
    latest = store.account_history("6222020200000000101", at_ten - DAY, at_ten, limit=3)
    assert [amount for _, amount, _ in latest] == [700.0, 600.0, 500.0]


def test_a_batch_that_fails_leaves_nothing_behind(store, tmp_path):
    with pytest.raises(RuntimeError):
        with store.batch():
            record(store, 1, "red")
            record(store, 2, "green")
            raise RuntimeError("the serial link died mid-batch")
    assert store.decided("ev-1") is None and store.decided("ev-2") is None
    assert store.outbox_depth() == 0
    with store.batch():  # and the store goes on working
        record(store, 3, "red")
    assert count(tmp_path / "gateway.db", "select count(*) from alerts") == 1


def test_a_nested_batch_joins_the_outer_one(store, tmp_path):
    with store.batch():
        with store.batch():
            record(store, 1, "red")
        # Not yet visible to another connection: one commit at the end of the outer batch.
        assert count(tmp_path / "gateway.db", "select count(*) from events") == 0
    assert count(tmp_path / "gateway.db", "select count(*) from events") == 1


def test_a_full_disk_gives_a_store_error_and_no_half_written_batch(store):
    record(store, 1, "red")
    pages = store._conn.execute("pragma page_count").fetchone()[0]
    store._conn.execute(f"pragma max_page_count={pages + 2}")  # SQLite's own "disk full" (SQLITE_FULL)
    with pytest.raises(StoreError, match="free space") as caught:
        with store.batch():
            for n in range(2, 500):
                record(store, n, "red", account=f"{n:019d}")
    assert isinstance(caught.value, OSError)  # the pipeline answers busy on OSError
    assert store.decided("ev-2") is None
    assert store.outbox_depth() == 1


def test_threads_can_record_at_the_same_time(store):
    def counter_line(c):
        for n in range(50):
            with store.batch():
                record(store, c * 1000 + n, "amber", counter=c)

    threads = [threading.Thread(target=counter_line, args=(c,)) for c in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert store.outbox_depth() == 200
    seqs = [r.seq for r in store.outbox_pending(1000, republish_after_s=0)]
    assert seqs == sorted(set(seqs)) and len(seqs) == 200


# -- the supervisor -------------------------------------------------------------------------------
def test_acknowledge_takes_the_oldest_open_red_alert(store):
    first = record(store, 1, "red", counter=1, wall=1000.0)
    record(store, 2, "amber", counter=2, wall=1001.0)
    second = record(store, 3, "red", counter=2, wall=1002.0)
    ack = store.acknowledge(by="supervisor", via="button", stamp=stamp())
    assert ack.alert_id == first.alert_id and ack.counter == 1 and ack.via == "button"
    assert [a.alert_id for a in store.open_alerts()] == [second.alert_id]
    ack_row = store.outbox_pending(10, republish_after_s=0)[-1]
    assert ack_row.kind == "ack" and ack_row.seq == ack.seq
    assert json.loads(ack_row.payload)["alert_id"] == first.alert_id


def test_acknowledge_for_one_counter_leaves_the_others_alone(store):
    record(store, 1, "red", counter=1, wall=1000.0)
    at_two = record(store, 2, "red", counter=2, wall=1001.0)
    assert store.acknowledge(counter=2, by="s-017", via="console", stamp=stamp()).alert_id == at_two.alert_id
    assert [a.counter for a in store.open_alerts()] == [1]


def test_acknowledge_with_nothing_open_does_nothing(store):
    record(store, 1, "amber")  # amber is not held for a supervisor
    assert store.acknowledge(by="supervisor", via="button", stamp=stamp()) is None
    assert store.outbox_depth() == 1


def test_acknowledging_an_unknown_alert_says_so(store):
    with pytest.raises(UnknownAlert, match="no alert 'nope'"):
        store.acknowledge("nope", by="supervisor", via="cli", stamp=stamp())


def test_acknowledging_the_same_alert_twice_records_it_once(store):
    alert = record(store, 1, "red")
    assert store.acknowledge(alert.alert_id, by="a", via="cli", stamp=stamp()) is not None
    assert store.acknowledge(alert.alert_id, by="b", via="cli", stamp=stamp()) is None
    assert store.outbox_depth() == 2


# -- outbox ---------------------------------------------------------------------------------------
def test_only_the_centres_receipt_closes_an_outbox_row(store):
    a, b = record(store, 1, "red"), record(store, 2, "red")
    now = time.time()
    assert [r.seq for r in store.outbox_pending(10, republish_after_s=30)] == [a.seq, b.seq]
    store.mark_published([a.seq, b.seq], now)
    assert store.outbox_pending(10, republish_after_s=30, now_wall=now + 1) == []  # in flight
    # Not receipted after the republish delay: due again.
    assert [r.seq for r in store.outbox_pending(10, republish_after_s=30, now_wall=now + 31)] == [a.seq, b.seq]
    assert store.receipt([a.seq, 999]) == 1  # unknown seqs are ignored
    assert store.receipt([a.seq]) == 0  # idempotent
    assert store.outbox_depth() == 1
    assert [r.seq for r in store.outbox_pending(10, republish_after_s=30, now_wall=now + 31)] == [b.seq]
    assert store.oldest_unreceipted_wall() is not None
    store.receipt([b.seq])
    assert store.outbox_depth() == 0 and store.oldest_unreceipted_wall() is None


def test_purge_never_deletes_an_alert_the_centre_has_not_receipted(store):
    old = 1_000_000.0
    record(store, 1, "green", wall=old)
    unreceipted = record(store, 2, "red", wall=old)
    receipted = record(store, 3, "amber", wall=old)
    record(store, 4, "green")  # recent
    store.receipt([receipted.seq])
    counts = store.purge(old + 91 * DAY, keep_days=90)
    assert counts == {"events": 1, "outbox": 1}
    assert store.decided("ev-1") is None  # old green: gone
    assert store.decided("ev-2") is not None and store.decided("ev-3") is not None  # alerts stay
    assert store.decided("ev-4") is not None
    assert [r.seq for r in store.outbox_pending(10, republish_after_s=0)] == [unreceipted.seq]
    assert store.alert(receipted.alert_id) is not None


def test_the_session_number_grows_across_restarts(tmp_path):
    with Store(tmp_path / "g.db") as s:
        assert [s.next_bdseq(), s.next_bdseq()] == [1, 2]
        s.meta_set("note", "x")
    with Store(tmp_path / "g.db") as s:
        assert s.next_bdseq() == 3 and s.meta_get("note") == "x" and s.meta_get("missing", "d") == "d"


# -- watchlist ------------------------------------------------------------------------------------
def full(version, accounts):
    return {"version": version, "full": True, "add": accounts}


def delta(version, base, add=(), remove=()):
    return {"version": version, "full": False, "base_version": base, "add": list(add), "remove": list(remove)}


def test_a_full_list_replaces_and_a_delta_adds_and_removes(store):
    wl = Watchlist(store)
    assert wl.version == 0 and not wl.contains(MULE)
    wl.apply(full(5, [MULE, "6222000011112222"]))
    assert wl.contains(MULE) and wl.version == 5
    result = wl.apply(delta(6, 5, add=["6222000033334444"], remove=[MULE]))
    assert (result.added, result.removed, result.size) == (1, 1, 2)
    assert not wl.contains(MULE) and wl.contains("6222000033334444")


def test_the_watchlist_survives_a_restart(tmp_path):
    with Store(tmp_path / "g.db") as s:
        Watchlist(s).apply(full(9, [MULE]))
    with Store(tmp_path / "g.db") as s:
        wl = Watchlist(s)
        assert wl.version == 9 and wl.contains(MULE)


@pytest.mark.parametrize("update, reason", [
    (full(3, ["6222000011112222"]), "not newer"),
    (delta(8, 4, add=["6222000011112222"]), "based on version 4"),
    (delta(8, 5, add=["12345"]), "6 to 34 digits"),
    (delta(8, 5, add=[6222000011112222]), "6 to 34 digits"),
    ({"version": "8", "full": True, "add": []}, '"version" must be a whole number'),
    ({"version": 8, "add": []}, '"full" must be true'),
    ({"version": 8, "full": True, "add": [], "colour": "red"}, "unknown field"),
    ({"version": 8, "full": True, "add": [], "remove": [MULE]}, 'no "remove"'),
])
def test_a_rejected_update_says_why_and_changes_nothing(store, update, reason):
    wl = Watchlist(store)
    wl.apply(full(5, [MULE]))
    with pytest.raises(WatchlistRejected, match=reason):
        wl.apply(update)
    assert wl.version == 5 and wl.contains(MULE) and len(wl) == 1
    assert Watchlist(store).version == 5 and len(store.watchlist_accounts()) == 1


def test_a_watchlist_file_is_loaded_and_reloading_it_keeps_the_version(store, tmp_path):
    path = tmp_path / "stop-payment.txt"
    path.write_text(f"# centre list\n{MULE}   # mule, case 17\n\n6222000011112222\n")
    wl = Watchlist(store)
    wl.load_file(path)
    assert wl.contains(MULE) and wl.contains("6222000011112222") and wl.version == 1
    assert wl.load_file(path) is None and wl.version == 1
    path.write_text(f"{MULE}\n")
    wl.load_file(path)
    assert wl.version == 2 and not wl.contains("6222000011112222")


def test_a_bad_line_in_a_watchlist_file_is_named(store, tmp_path):
    path = tmp_path / "stop-payment.txt"
    path.write_text(f"# list\n{MULE}\n6222-0000-1111\n")
    wl = Watchlist(store)
    with pytest.raises(WatchlistFileError, match=r"stop-payment.txt, line 3: '6222-0000-1111'"):
        wl.load_file(path)
    assert wl.version == 0 and len(wl) == 0
    with pytest.raises(WatchlistFileError, match="no such watchlist file"):
        wl.load_file(tmp_path / "missing.txt")


# -- caring questions' answers --------------------------------------------------------------------
def test_a_v2_store_is_upgraded_with_the_answers_table_and_keeps_everything(tmp_path, monkeypatch):
    path = tmp_path / "v2.db"
    monkeypatch.setattr("counterguard.gateway.store.db.MIGRATIONS", [m for m in MIGRATIONS if m[0] <= 2])
    with Store(path) as old:
        closed, owed = record(old, 1, "red"), record(old, 2, "amber")
        for a in (closed, owed):
            old.acknowledge(a.alert_id, by="S1", via="console", stamp=stamp())
        old.record_outcome(closed.alert_id, "false_alarm", note="known customer", by="S1", via="cli", stamp=stamp())
        depth = old.outbox_depth()
    assert count(path, "SELECT count(*) FROM sqlite_master WHERE name = 'answers'") == 0
    monkeypatch.undo()
    with Store(path) as new:
        assert count(path, "SELECT max(version) FROM migrations") == MIGRATIONS[-1][0]
        view = new.alert_view(closed.alert_id)
        assert (view.state, view.outcome, view.note) == ("closed", "false_alarm", "known customer")
        assert new.outbox_depth() == depth and new.answers([closed.alert_id]) == {}
        rec = new.record_outcome(owed.alert_id, "customer_dissuaded", by="S1", via="console", stamp=stamp(),
                                 answers={"general.1": "yes", "large_cash.1": "declined"})
        got = new.answers([owed.alert_id, closed.alert_id])
        sent = json.loads(next(r for r in new.outbox_pending(10, republish_after_s=0) if r.seq == rec.seq).payload)
    assert [(a.key, a.answer) for a in got[owed.alert_id]] == [("general.1", "yes"), ("large_cash.1", "declined")]
    assert got[owed.alert_id][0].question_zh.startswith("是不是有您没见过面的人")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert sent["answers"][1] == {"key": "large_cash.1", "answer": "declined",
                                  "question": "What will the cash be used for? Could a transfer to an account "
                                              "you know be safer?"}


@pytest.mark.parametrize("answers, message", [
    ({"general.1": "yes", "new_payee.1": "no"}, "'new_payee.1': not one of the questions of alert"),
    ({"general.9": "no"}, "'general.9'"),
    ({"general.1": "maybe"}, "must be one of yes, no, declined, got 'maybe'"),
])
def test_an_answer_to_a_question_the_alert_did_not_have_stores_neither_it_nor_the_outcome(store, answers, message):
    alert = record(store, 1, "red")  # reasons: large_cash only
    store.acknowledge(alert.alert_id, by="S1", via="console", stamp=stamp())
    depth = store.outbox_depth()
    with pytest.raises(ValueError, match=message):
        store.record_outcome(alert.alert_id, "confirmed_fraud", by="S1", via="console", stamp=stamp(), answers=answers)
    assert store.alert_view(alert.alert_id).state == "acknowledged" and store.alert_view(alert.alert_id).outcome is None
    assert store.answers([alert.alert_id]) == {} and store.outbox_depth() == depth
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):  # the table itself refuses other words too
        with store.batch():
            store.db.execute("INSERT INTO answers VALUES (?, 'general.1', 'q', 'q', 'perhaps')", (alert.alert_id,))


# -- alerts raised by branch staff ----------------------------------------------------------------
def served(store: Store, n, level: str, *, wall: float | None = None, counter: int = 2):
    """An event stored with its full payload, as a counter line stores it."""
    body = {"event_id": f"ev-{n}", "ts": "2024-05-06T09:30:00+08:00", "counter": counter, "kind": "cash_withdrawal",
            "account": "6222020200000000101", "amount": 30000.0, "customer_age": 71}
    ev = parse_event(body)
    v = Verdict(ev.event_id, level, {"green": 0.12, "amber": 0.6}[level], () if level == "green" else ("elderly_customer",),
                "Proceed", ev.counter)
    return store.record_verdict(ev, json.dumps(body).encode(), f"sha-{n}", v, stamp(wall), model_version="m-1",
                                watchlist_version=3, gateway_id="gw-test")


def test_staff_raise_a_red_alert_on_a_green_event_with_its_outbox_row_like_a_model_alert(store):
    served(store, 1, "green")
    alert = store.raise_alert("ev-1", "red", "S1024", "console", "  kept looking at his phone  ", stamp=stamp())
    assert (alert.level, alert.counter, alert.reasons) == ("red", 2, ("teller_report",))
    assert store.open_alerts() == [alert]  # the escalation watch and the panel button find it like any red
    [row] = store.outbox_pending(10, republish_after_s=30)
    body = json.loads(row.payload)
    assert (row.seq, row.kind, row.ref_id) == (alert.seq, "alert", alert.alert_id)
    assert body["reasons"] == ["teller_report"] and body["score"] == 0.12 and body["level"] == "red"
    assert (body["raised_by"], body["note"]) == ("S1024", "kept looking at his phone")
    assert body["text"] == "Hold: raised by branch staff - call supervisor" and body["model_version"] == "m-1"
    view = store.alert_view(alert.alert_id)
    assert (view.raised_by, view.raise_note, view.text) == ("S1024", "kept looking at his phone", body["text"])
    assert [e["open_alerts"] for e in store.recent_events(0)] == [["red"]]
    assert store.overdue_alerts(time.time() + 200, 120) == [alert]  # unacknowledged, it escalates like any red


def test_a_red_report_on_an_amber_alert_is_a_second_alert_and_a_second_red_is_refused_by_name(store):
    amber = served(store, 1, "amber")
    red = store.raise_alert("ev-1", "red", "S1024", "cli", stamp=stamp())
    assert red.reasons == ("teller_report", "elderly_customer") and red.alert_id != amber.alert_id
    depth = store.outbox_depth()
    with pytest.raises(LifecycleError, match=f"already has a red alert {red.alert_id} \\(open\\)"):
        store.raise_alert("ev-1", "red", "S2048", "console", stamp=stamp())
    with pytest.raises(LifecycleError, match="already has a red alert"):  # red covers amber too
        store.raise_alert("ev-1", "amber", "S2048", "console", stamp=stamp())
    store.acknowledge(red.alert_id, by="S1", via="console", stamp=stamp())
    with pytest.raises(LifecycleError, match="acknowledged, outcome owed"):
        store.raise_alert("ev-1", "red", "S2048", "console", stamp=stamp())
    assert store.outbox_depth() == depth + 1  # the acknowledgement only


def test_an_event_whose_staff_raised_red_was_fraud_is_labelled_so_whichever_alert_closed_first(store):
    from datetime import date

    from counterguard.gateway.branch.export import export_events

    amber = served(store, 1, "amber")
    red = store.raise_alert("ev-1", "red", "S1024", "console", stamp=stamp())
    for alert, outcome in ((amber, "false_alarm"), (red, "confirmed_fraud")):
        store.acknowledge(alert.alert_id, by="S1", via="console", stamp=stamp())
        store.record_outcome(alert.alert_id, outcome, by="S1", via="console", stamp=stamp())
    [case] = [json.loads(line) for line in export_events(store, date.today(), date.today(), labelled=True).lines]
    assert (case["level"], case["outcome"], case["label"]) == ("amber", "confirmed_fraud", 1)


@pytest.mark.parametrize("args, error, message", [
    (("ev-9", "red", "S1", "cli"), UnknownEvent, "no event 'ev-9' at this gateway"),
    (("ev-old", "red", "S1", "cli"), LifecycleError, "event ev-old is too old: received 25 hours ago"),
    (("ev-1", "green", "S1", "cli"), ValueError, "level must be one of amber, red, got 'green'"),
    (("ev-1", "red", " ", "cli"), ValueError, "by must name who raised the alert"),
    (("ev-1", "red", "S1", "cli", "x" * 501), ValueError, "note is 501 characters; keep it under 500"),
    (("ev-1", "red", "S1", "button"), ValueError, "via must be one of console, cli"),
])
def test_a_refused_report_says_why_and_writes_nothing(store, args, error, message):
    served(store, 1, "green")
    served(store, "old", "green", wall=time.time() - 25 * 3600)
    with pytest.raises(error, match=message):
        store.raise_alert(*args, stamp=stamp())
    assert store.outbox_depth() == 0 and store.open_alerts(level=None) == []
