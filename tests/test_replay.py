"""``counterguard replay``: yesterday's events through today's model, with the verdicts the counter
would have shown. Checked against a real gateway on a pty counter line, with a real mosquitto, mock
pins and the real model; bad lines are reported by number and nothing else is lost."""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest
from gpiozero.pins.mock import MockFactory

from counterguard.gateway.ops.app import Gateway
from counterguard.gateway.counter.replay import replay
from counterguard.gateway.counter.terminal import TellerTerminal
from counterguard.models.simulate import simulate

from harness import CST, MULE, event, gateway_config, intercept, mule, pty_pair

FIELDS = ("event_id", "level", "score", "reasons")


def a_branch_morning() -> list[dict]:
    """Simulated counter traffic plus the cases that depend on history and the watchlist."""
    events = [item["event"] for item in simulate(7, 300)]
    base = datetime(2024, 3, 2, 9, 30, tzinfo=CST)
    ts = lambda minutes: (base + timedelta(minutes=minutes)).isoformat(timespec="seconds")  # noqa: E731
    # A mule working the counters: three visits in an hour, each one sees the ones before.
    for n, counter in enumerate((1, 3, 4)):
        events.append(event(counter, 30000, "6222000011112222333", event_id=f"repeat-{n}", ts=ts(20 * n),
                            customer_age=23, account_age_days=40, balance_before=31000, inbound_24h=90000,
                            inbound_count_24h=25, purpose="daily"))
    events.append(intercept(event_id="intercept-r", ts=ts(70)))
    events.append(mule(event_id="mule-r", ts=ts(75)))
    events.append(dict(events[0]))  # a terminal resending an event: the same answer, scored once
    return events


@pytest.fixture
def gateway(tmp_path, broker):
    factory = MockFactory()
    with pty_pair() as (master, path):
        gw = Gateway(gateway_config(tmp_path, broker_port=broker.port, serial_path=path), pin_factory=factory)
        gw.start()
        try:
            yield gw, TellerTerminal(master, timeout=5.0)
        finally:
            gw.stop()
            factory.reset()


def test_replay_gives_exactly_what_the_gateway_answers_over_serial(tmp_path, gateway):
    gw, terminal = gateway
    events = a_branch_morning()
    replies = terminal.send_many(events, window=16)
    assert all(r.type == "ACK" for r in replies), [r for r in replies if r.type != "ACK"][:3]
    served = [{k: r.body[k] for k in FIELDS} for r in replies]

    source = io.StringIO("".join(json.dumps(e) + "\n" for e in events))
    out, err = io.StringIO(), io.StringIO()
    assert replay(source, out, err, watchlist_file=gw.config.watchlist.file) == 0, err.getvalue()
    replayed = [json.loads(line) for line in out.getvalue().splitlines()]

    assert replayed == served
    by_id = {v["event_id"]: v for v in replayed}
    assert by_id["intercept-r"]["level"] == "red" and by_id["mule-r"]["reasons"][0] == "watchlist"
    assert "several_counters" in by_id["repeat-2"]["reasons"] and "several_counters" not in by_id["repeat-0"]["reasons"]
    assert {v["level"] for v in replayed} == {"green", "amber", "red"}


def write_lines(path, lines) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def run_replay(*args, stderr=subprocess.PIPE, timeout=60):
    return subprocess.run([sys.executable, "-m", "counterguard", "replay", *args], stdout=subprocess.PIPE,
                          stderr=stderr, text=True, timeout=timeout)


def test_bad_lines_are_reported_by_number_and_the_good_ones_still_scored(tmp_path):
    good = [event(1, 800, event_id=f"ok-{n}") for n in range(3)]
    conflict = dict(good[0], amount=900)
    lines = [json.dumps(good[0]), "{not json", json.dumps(dict(good[1], amount=-5)), "",
             json.dumps({k: v for k, v in good[1].items() if k != "account"}), json.dumps(good[1]),
             json.dumps(conflict), json.dumps(good[2])]
    done = run_replay(write_lines(tmp_path / "events.jsonl", lines))
    assert done.returncode == 1
    assert [json.loads(line)["event_id"] for line in done.stdout.splitlines()] == ["ok-0", "ok-1", "ok-2"]
    # (LiteRT itself may announce its CPU delegate on stderr; that line is not ours.)
    problems = [line for line in done.stderr.strip().splitlines() if not line.startswith("INFO: ")]
    assert problems[0].startswith("line 2: not JSON")
    assert problems[1].startswith("line 3: amount")
    assert problems[2].startswith("line 5: account")
    assert problems[3].startswith("line 7: event_id 'ok-0' was already used for a different event")
    assert len(problems) == 4  # the blank line 4 is not an error, and no progress bar on a pipe


def test_a_clean_file_exits_0_and_the_watchlist_file_allows_comments(tmp_path):
    watchlist = write_lines(tmp_path / "stop-payment.txt", ["# from the centre, 2024-03-01", MULE, "  # end"])
    events = write_lines(tmp_path / "events.jsonl", [json.dumps(mule(amount=100, event_id="m-1")),
                                                     json.dumps(event(1, 300, event_id="g-1"))])
    done = run_replay(events, "--watchlist", watchlist)
    assert done.returncode == 0, done.stderr
    verdicts = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(v["event_id"], v["level"]) for v in verdicts] == [("m-1", "red"), ("g-1", "green")]
    assert set(verdicts[0]) == set(FIELDS)
    unlisted = run_replay(events)
    assert json.loads(unlisted.stdout.splitlines()[0])["level"] != "red"


def test_a_progress_bar_is_shown_on_a_terminal_only(tmp_path):
    events = write_lines(tmp_path / "events.jsonl", [json.dumps(event(1, 500, event_id=f"p-{n}")) for n in range(40)])
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "counterguard", "replay", events], stdout=subprocess.PIPE,
                                stderr=slave, text=True)
        os.close(slave)
        shown = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the other end closed: replay is done
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        out, _ = proc.communicate(timeout=30)
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert len(out.splitlines()) == 40
    assert b"40/40 events" in shown


def test_lists_of_persons_and_the_customers_answers_give_first_and_final_verdicts(tmp_path):
    resident, phone = "11010519491231002X", "13800138000"
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "warned.csv").write_text(f"# police warnings\n{phone},phone,safe_account\n")
    (lists / "restricted.csv").write_text(f"{resident},resident,carrier\n")
    ts = "2024-03-02T10:00:00+08:00"
    events = [event(1, 3000, event_id="warned", customer_phone=phone, ts=ts),
              event(2, 3000, event_id="restricted", customer_id=resident.lower(), ts=ts),
              event(3, 3000, event_id="told", ts=ts),
              event(4, 3000, event_id="plain", ts=ts)]
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"event_id": "told", "answers": {"told_to_by_caller": "yes"}}) + "\n"
                       + json.dumps({"event_id": "restricted", "answers": {s: "no" for s in (
                           "told_to_by_caller", "promised_returns", "told_to_keep_secret")}}) + "\n")
    done = run_replay(write_lines(tmp_path / "e.jsonl", [json.dumps(e) for e in events]), "--lists", str(lists),
                      "--answers", str(answers))
    assert done.returncode == 0, done.stderr
    got = {line["event_id"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert (got["warned"]["level"], got["warned"]["reasons"][0]) == ("amber", "warned_person")
    assert (got["restricted"]["final"]["level"], got["restricted"]["final"]["reasons"][0]) == ("red",
                                                                                             "restricted_person")
    # First and final: a caller's script, said at the counter, is never waved through.
    assert got["told"]["level"] == "green" and got["told"]["final"]["level"] in ("amber", "red")
    assert got["told"]["final"]["reasons"][0] == "caller_instructed"
    assert got["plain"]["final"] == {"level": got["plain"]["level"], "reasons": got["plain"]["reasons"]}
    # Bad input is one line naming the file and the line, before anything is scored.
    answers.write_text('{"event_id": "told", "answers": {"told_to_by_caller": "perhaps"}}\n')
    bad = run_replay(write_lines(tmp_path / "e.jsonl", [json.dumps(e) for e in events]), "--answers", str(answers))
    assert bad.returncode == 2 and f"{answers}, line 1: answers: told_to_by_caller must be yes" in bad.stderr
    assert bad.stdout == "" and "Traceback" not in bad.stderr
    (lists / "warned.csv").write_text("110105194912310021,resident,investment\n")
    bad = run_replay(write_lines(tmp_path / "e.jsonl", [json.dumps(e) for e in events]), "--lists", str(lists))
    assert bad.returncode == 2 and "warned.csv, line 1: value check digit" in bad.stderr
    assert "110105194912310021" not in bad.stderr
