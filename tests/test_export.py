"""``counterguard export-events``: a branch day's stored events out of a real gateway (pty counter
line, real mosquitto, mock pins, the real model, a real SQLite file), plain for ``counterguard
replay`` and labelled from the supervisors' outcomes, cut at the gateway's local midnight."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from datetime import datetime

import pytest

from counterguard.core import wire
from counterguard.gateway.ops.app import Gateway
from counterguard.cli import main
from counterguard.core.clock import Clock, Stamp
from counterguard.gateway.branch.export import FRAUD_OUTCOMES
from counterguard.gateway.store.db import OUTCOMES, Store
from counterguard.gateway.counter.terminal import TellerTerminal

from harness import CST, config_toml, event, gateway_config, intercept, mule

BRANCH_TZ = "CST-8"  # the branch's local time for the exporting process: UTC+8, like CST in harness
CASE_KEYS = {"event", "level", "score", "reasons", "watchlisted", "outcome", "answers", "label"}
# A terminal's own spelling of an event: spaces, a number written 8000.50, an unknown field and an
# escaped '$'. The export must give these bytes back, not a re-encoding.
ODD = (b'{"event_id": "odd-1", "ts": "2026-11-25T09:00:00+08:00", "counter": 2, "kind": "cash_withdrawal", '
       b'"account": "6222020200000000777", "amount": 8000.50, "terminal_note": "caf\\u00e9 \\u0024 ok"}')


def local(day: int, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, micro, tzinfo=CST)


def ts(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


class BranchClock(Clock):
    """The gateway's clock, set by the test to when each event reaches the gateway (midnight edges)."""

    def __init__(self):
        super().__init__(assume_synced=True)
        self.wall: float | None = None

    def now(self) -> Stamp:
        real = super().now()
        return real if self.wall is None else Stamp(self.wall, real.mono, True)


# (received at, event or raw payload), in the order they reach the gateway.
def traffic() -> list:
    last_account = "6222020200000000999"
    return [
        (local(24, 23, 59, 59, 999000), event(1, 600, "6222020200000000111", event_id="eve", ts=ts(local(24, 23, 59, 58)))),
        (local(25, 0), event(1, 700, "6222020200000000222", event_id="midnight", ts=ts(local(25, 0)))),
        (local(25, 9, 0, 1), ODD),
        (local(25, 9, 30, 1), intercept(counter=3, event_id="red-1", ts=ts(local(25, 9, 30)))),
        (local(25, 9, 40, 1), mule(event_id="mule-1", ts=ts(local(25, 9, 40)))),
        (local(25, 10, 0, 1), event(4, 105700, "6222268308240000781", event_id="amber-1", ts=ts(local(25, 10)),
                                    customer_age=88, account_age_days=1478, balance_before=200000.0)),
        (local(25, 10, 30, 1), intercept(counter=1, event_id="red-2", ts=ts(local(25, 10, 30)))),
        (local(25, 11, 0, 1), intercept(counter=1, event_id="red-3", ts=ts(local(25, 11)))),
        (local(25, 11, 30, 1), intercept(counter=2, event_id="red-4", ts=ts(local(25, 11, 30)))),
        # A terminal that held an event back: received at noon, happened at 09:15.
        (local(25, 12), event(2, 900, "6222020200000000333", event_id="late-ts", ts=ts(local(25, 9, 15)))),
        # Two events at the same second: receipt order, whatever their ids say.
        (local(25, 12, 30, 1), event(1, 400, "6222020200000000444", event_id="tie-z", ts=ts(local(25, 12, 30)))),
        (local(25, 12, 30, 2), event(2, 450, "6222020200000000555", event_id="tie-a", ts=ts(local(25, 12, 30)))),
        (local(25, 23, 59, 59, 999000), event(1, 300, last_account, event_id="last", ts=ts(local(25, 23, 59, 59)))),
        (local(26, 0), event(1, 350, last_account, event_id="next", ts=ts(local(26, 0)))),
    ]


# What the supervisors did with each alert: (outcome or None for "acknowledged, outcome owed").
SUPERVISOR = {"red-1": "police_called", "mule-1": "confirmed_fraud", "amber-1": "false_alarm",
              "red-2": "customer_dissuaded", "red-3": None}  # red-4 stays open
# What the customer at red-1 answered to the caring questions (recorded with its outcome).
ANSWERS = {"general.1": "yes", "general.2": "declined"}


@pytest.fixture
def branch_day(tmp_path, broker, factory, counter_line):
    """A running gateway that served the traffic above, with the supervisors' acknowledgements and
    outcomes given through its life cycle; yields (gateway, config file, payload bytes by event id)."""
    master, path = counter_line
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path)
    clock = BranchClock()
    gw = Gateway(cfg, pin_factory=factory, clock=clock)
    gw.start()
    try:
        terminal = TellerTerminal(master, timeout=5.0)
        sent = {}
        for received, body in traffic():
            payload = body if isinstance(body, bytes) else wire.encode_payload(body)
            clock.wall = received.timestamp()
            reply = terminal.send(payload)
            assert reply.type == "ACK", reply
            sent[reply.body["event_id"]] = payload
        alerts = {a.event_id: a.alert_id for a in gw.store.alert_views()}
        assert set(alerts) == {"red-1", "mule-1", "amber-1", "red-2", "red-3", "red-4"}
        for event_id, outcome in SUPERVISOR.items():
            assert gw.lifecycle.acknowledge(alerts[event_id], by="S1024", via="console") is not None
            if outcome:
                gw.lifecycle.record_outcome(alerts[event_id], outcome, by="S1024", note="checked",
                                            answers=ANSWERS if event_id == "red-1" else None)
        cfg_file = tmp_path / "gateway.toml"
        cfg_file.write_text(config_toml(cfg))
        yield gw, cfg_file, sent
    finally:
        gw.stop()


def export(cfg_file, *args, tz: str = BRANCH_TZ) -> subprocess.CompletedProcess:
    """The installed command, in its own process, in the branch's time zone."""
    return subprocess.run([sys.executable, "-m", "counterguard", "export-events", "--config", str(cfg_file), *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "TZ": tz})


def stored_verdicts(gw) -> dict:
    with sqlite3.connect(gw.config.store.path) as c:
        return {eid: (level, score, json.loads(reasons), json.loads(ack))
                for eid, level, score, reasons, ack in c.execute(
                    "SELECT event_id, level, score, reasons, ack_body FROM verdicts")}


DAY_ORDER = ["midnight", "odd-1", "late-ts", "red-1", "mule-1", "amber-1", "red-2", "red-3", "red-4",
             "tie-z", "tie-a", "last"]


def test_plain_export_gives_the_days_payloads_byte_for_byte_in_event_time_order(branch_day):
    gw, cfg_file, sent = branch_day
    done = export(cfg_file, "--day", "2026-11-25")
    assert done.returncode == 0, done.stderr
    # Midnight itself belongs to the day, a millisecond before it to the day before; event time
    # order puts the held-back event at 09:15, and equal times keep the order they were received in.
    assert done.stdout.splitlines() == [sent[eid].decode("ascii") for eid in DAY_ORDER]
    assert json.loads(done.stdout.splitlines()[1])["terminal_note"] == "café $ ok"
    assert "12 events received 2026-11-25" in done.stderr and "green 6, amber 1, red 5" in done.stderr

    two_days = export(cfg_file, "--day", "2026-11-25", "--to", "2026-11-26")
    assert [json.loads(line)["event_id"] for line in two_days.stdout.splitlines()] == DAY_ORDER + ["next"]
    # Alone, the next day's event lacks the history of the evening before: the export says so.
    next_day = export(cfg_file, "--day", "2026-11-26")
    assert [json.loads(line)["event_id"] for line in next_day.stdout.splitlines()] == ["next"]
    assert "1 event(s) had earlier events of the same account in the 24 h before" in next_day.stderr
    assert "had earlier events" not in done.stderr

    # The day is the exporting machine's local day: in UTC the 24th runs to 08:00 on the 25th at +08:00.
    utc = export(cfg_file, "--day", "2026-11-24", tz="UTC")
    assert [json.loads(line)["event_id"] for line in utc.stdout.splitlines()] == ["eve", "midnight"]


def test_labelled_cases_carry_the_verdict_and_a_label_from_the_supervisors_outcome(branch_day):
    gw, cfg_file, sent = branch_day
    done = export(cfg_file, "--day", "2026-11-25", "--labelled")
    assert done.returncode == 0, done.stderr
    cases = [json.loads(line) for line in done.stdout.splitlines()]
    verdicts = stored_verdicts(gw)
    assert [c["event"]["event_id"] for c in cases] == DAY_ORDER
    for c in cases:
        eid = c["event"]["event_id"]
        assert set(c) == CASE_KEYS
        assert c["event"] == json.loads(sent[eid])
        level, score, reasons, _ = verdicts[eid]
        assert (c["level"], c["score"], c["reasons"]) == (level, score, reasons)
        assert c["watchlisted"] is ("watchlist" in reasons)
        assert c["outcome"] == SUPERVISOR.get(eid)
        assert c["label"] == (1 if c["outcome"] in FRAUD_OUTCOMES else 0)
    by_id = {c["event"]["event_id"]: c for c in cases}
    assert [eid for eid in DAY_ORDER if by_id[eid]["label"] == 1] == ["red-1", "mule-1", "red-2"]
    assert by_id["mule-1"]["watchlisted"] is True and by_id["red-1"]["watchlisted"] is False
    assert by_id["amber-1"]["level"] == "amber" and by_id["amber-1"]["label"] == 0  # a false alarm
    assert by_id["red-3"]["label"] == 0 and by_id["red-4"]["label"] == 0  # no outcome yet
    assert by_id["red-1"]["answers"] == ANSWERS
    assert all(c["answers"] == {} for c in cases if c["event"]["event_id"] != "red-1")
    assert isinstance(by_id["midnight"]["score"], float)
    assert set(FRAUD_OUTCOMES) == set(OUTCOMES) - {"false_alarm"}

    assert "alerts 6, outcomes recorded 4" in done.stderr
    assert "2 alert(s) still without an outcome: labelled 0 until an outcome is recorded" in done.stderr
    assert "label 1: 3 event(s)" in done.stderr
    assert "a fraud reported later" in done.stderr and "by hand" in done.stderr


def test_replaying_the_export_gives_the_levels_the_gateway_stored(branch_day, tmp_path):
    gw, cfg_file, _ = branch_day
    out = tmp_path / "day.jsonl"
    assert export(cfg_file, "--day", "2026-11-25", "-o", str(out)).returncode == 0
    done = subprocess.run([sys.executable, "-m", "counterguard", "replay", str(out), "--watchlist",
                           gw.config.watchlist.file], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    replayed = [json.loads(line) for line in done.stdout.splitlines()]
    verdicts = stored_verdicts(gw)
    assert [v["event_id"] for v in replayed] == DAY_ORDER
    for v in replayed:
        ack = verdicts[v["event_id"]][3]
        assert v == {k: ack[k] for k in ("event_id", "level", "score", "reasons")}
    assert {v["level"] for v in replayed} == {"green", "amber", "red"}


def test_an_output_file_is_replaced_whole_and_readable_by_its_owner_only(branch_day, tmp_path):
    _, cfg_file, _ = branch_day
    out = tmp_path / "cases.jsonl"
    out.write_text("an older, longer export\n" * 100)
    done = export(cfg_file, "--day", "2026-11-25", "--labelled", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert out.read_text() == export(cfg_file, "--day", "2026-11-25", "--labelled").stdout
    assert len(out.read_text().splitlines()) == len(DAY_ORDER)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # account numbers inside
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("cases")) == ["cases.jsonl"]

    nowhere = tmp_path / "no-such-dir" / "cases.jsonl"
    failed = export(cfg_file, "--day", "2026-11-25", "-o", str(nowhere))
    assert failed.returncode == 1 and f"cannot write {nowhere}" in failed.stderr
    assert not nowhere.parent.exists()


# -- errors -----------------------------------------------------------------------------------------

@pytest.fixture
def empty_store(tmp_path):
    db = tmp_path / "gateway.db"
    Store(db).close()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[store]\npath = "{db}"\n')
    return cfg


@pytest.mark.parametrize("args, message", [
    (["--day", "25-11-2026"], "--day must be a date YYYY-MM-DD, got '25-11-2026'"),
    (["--day", "2026-11-25", "--to", "tomorrow"], "--to must be a date YYYY-MM-DD, got 'tomorrow'"),
    (["--day", "2026-11-25", "--to", "2026-11-24"], "--to 2026-11-24 is before --day 2026-11-25"),
])
def test_bad_days_are_refused_naming_the_option(empty_store, capsys, args, message):
    assert main(["export-events", "--config", str(empty_store), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_store_is_named_and_not_created(tmp_path, capsys):
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "none.db"}"\n')
    assert main(["export-events", "--day", "2026-11-25", "--config", str(cfg)]) == 2
    assert f"store.path: no gateway store at {tmp_path / 'none.db'}" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("labelled", [[], ["--labelled"]])
def test_a_range_without_events_gives_an_empty_file_and_says_so(empty_store, tmp_path, capsys, labelled):
    out = tmp_path / "empty.jsonl"
    assert main(["export-events", "--config", str(empty_store), "--day", "2026-11-20", "--to", "2026-11-22",
                 "-o", str(out), *labelled]) == 0
    assert out.exists() and out.read_bytes() == b""
    err = capsys.readouterr().err
    assert "0 events received 2026-11-20 to 2026-11-22" in err and "the output is empty" in err
