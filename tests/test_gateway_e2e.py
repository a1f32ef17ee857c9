"""The gateway end to end with real parts: a pty counter line, a real mosquitto on a free loopback
port, gpiozero mock pins, the real TFLite model and SQLite files on disk."""

from __future__ import annotations

import io
import re
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from counterguard.core import wire
from counterguard.gateway.ops.app import Gateway
from counterguard.hardware.pinmap import default_pinmap_path, load_pinmap
from counterguard.gateway.counter.terminal import TellerTerminal, TerminalError

from harness import config_toml, event, gateway_config, intercept, mule

PINMAP = load_pinmap(default_pinmap_path())


@pytest.fixture
def running(tmp_path, broker, counter_line, factory):
    master, path = counter_line
    gw = Gateway(gateway_config(tmp_path, broker_port=broker.port, serial_path=path), pin_factory=factory)
    gw.start()
    yield gw, TellerTerminal(master, timeout=2.0)
    gw.stop()


def pin(factory, number):
    return factory.pin(number)


def red_lamp(factory, counter):
    return pin(factory, PINMAP.counters[counter].red).state


def press_acknowledge(factory):
    button = pin(factory, PINMAP.supervisor.acknowledge)
    button.drive_low()
    time.sleep(0.05)
    button.drive_high()


def test_demo_runs_the_branch_morning_and_the_centre_gets_the_intercept():
    from counterguard.demo import run_demo

    out = io.StringIO()
    assert run_demo(out, pace=0.0) == 0, out.getvalue()
    text = out.getvalue()
    assert "50,000-yuan intercept: RED at the centre" in text
    assert "outbox still open   : 0" in text
    assert "NAK schema field=amount" in text
    # Every level a teller can see appears, and an amber comes with the questions to ask.
    levels = re.search(r"events by level\s*: green (\d+), amber (\d+), red (\d+)", text)
    assert levels and all(int(n) > 0 for n in levels.groups()), text
    assert "  teller asks: " in text
    # The coached victim the model lets through is caught by the teller's own report.
    assert "teller's own report : RED at the centre, raised by T-demo" in text


def test_the_carrier_demo_catches_the_recruited_student_and_lets_the_family_through():
    """``counterguard demo --sector carrier``, as a user runs it: a morning at a carrier's outlet."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "counterguard", "demo", "--sector", "carrier", "--pace", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = done.stdout
    assert "recruited student   : RED at the centre" in text and "honest look-alikes  : green" in text
    assert re.search(r"2 SIM card\(s\) -> GREEN .*a family buying two cards", text)
    assert "NAK schema field=kind: this gateway stands at a carrier counter" in text
    assert "outbox still open   : 0" in text
    # Who the customers are never shows: the outlet's gateway keeps keyed hashes only.
    assert "110105200501010012" not in text + done.stderr


def test_intercept_is_red_with_reasons_stored_before_the_ack_and_at_the_centre(running, centre):
    gw, terminal = running
    reply = terminal.send(intercept(counter=3, event_id="intercept-1"))
    assert reply.type == "ACK"
    assert reply.body["level"] == "red"
    assert {"large_cash", "elderly_customer", "customer_on_phone"} <= set(reply.body["reasons"])
    # On disk in a separate connection the moment the ACK is in hand: committed before the reply.
    with sqlite3.connect(gw.config.store.path) as db:
        assert db.execute("select level from verdicts where event_id='intercept-1'").fetchone() == ("red",)
        assert db.execute("select count(*) from alerts where event_id='intercept-1'").fetchone() == (1,)
    assert centre.wait_for(lambda r: any(a["event_id"] == "intercept-1" for a in r.alerts), timeout=10)
    alert = next(a for a in centre.alerts if a["event_id"] == "intercept-1")
    assert alert["level"] == "red" and alert["counter"] == 3 and alert["gateway_id"] == gw.config.gateway.id


def test_watchlisted_account_is_red_whatever_the_model_says(running):
    _, terminal = running
    reply = terminal.send(mule(amount=100))
    assert reply.body["level"] == "red" and reply.body["reasons"][0] == "watchlist"


def test_red_lamp_stays_on_until_the_supervisor_presses_acknowledge(running, centre, factory):
    gw, terminal = running
    assert terminal.send(intercept(counter=2, event_id="red-lamp-1")).body["level"] == "red"
    deadline = time.monotonic() + 10  # the lamps are set just after the ACK is written
    while not red_lamp(factory, 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert red_lamp(factory, 2) is True
    assert pin(factory, PINMAP.supervisor.red).state is True
    # Ordinary customers at the same counter do not clear it.
    for _ in range(3):
        assert terminal.send(event(counter=2, amount=300)).body["level"] == "green"
    time.sleep(0.2)
    assert red_lamp(factory, 2) is True
    press_acknowledge(factory)
    deadline = time.monotonic() + 5
    while red_lamp(factory, 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert red_lamp(factory, 2) is False
    assert pin(factory, PINMAP.supervisor.red).state is False
    with sqlite3.connect(gw.config.store.path) as db:
        assert db.execute("select count(*) from acknowledgements").fetchone() == (1,)
    assert centre.wait_for(lambda r: len(r.acks) == 1, timeout=10)
    assert centre.acks[0]["via"] == "button"


def test_a_resent_event_gets_the_same_ack_and_is_scored_once(running):
    gw, terminal = running
    body = intercept(event_id="resend-1")
    first = terminal.send(body)
    frame = wire.encode_frame("EVT", 999, body)  # the terminal lost the ACK and sends it again
    terminal.write(frame)
    again = terminal._wait({999}, time.monotonic() + 3)[999]
    assert again.type == "ACK" and again.body == first.body
    with sqlite3.connect(gw.config.store.path) as db:
        assert db.execute("select count(*) from verdicts where event_id='resend-1'").fetchone() == (1,)
        assert db.execute("select count(*) from alerts where event_id='resend-1'").fetchone() == (1,)
    different = dict(body, amount=10)
    assert terminal.send(different).body["code"] == "conflict"


def _with_wrong_crc(frame: bytes) -> bytes:
    star = frame.rindex(b"*")
    wrong = int(frame[star + 1:star + 9], 16) ^ 0xFFFFFFFF
    return frame[:star + 1] + b"%08x" % wrong + frame[star + 9:]


@pytest.mark.parametrize("raw, code", [
    (b"line noise \x00\xff\n", "noise"),
    (b"$EVT 5 {\"event_id\":\"cut", "bad_frame"),
    (wire.encode_frame("EVT", 6, {"pad": "x" * 1000})[:-1].replace(b"EVT 6", b"EVT 6 ", 0) + b"x" * 200 + b"\n", "too_long"),
    (_with_wrong_crc(wire.encode_frame("EVT", 7, event())), "bad_crc"),
    (b"$EVT 8 {not json}*" + b"%08x" % wire.crc32(b"EVT 8 {not json}") + b"\n", "bad_json"),
    (wire.encode_frame("EVT", 9, dict(event(), amount=-5)), "schema"),
    (wire.encode_frame("ACK", 10, {}), "bad_type"),
])
def test_bad_frames_get_their_nak_while_good_frames_keep_flowing(running, raw, code):
    gw, terminal = running
    before = terminal.send(event(counter=1))
    terminal.write(raw)
    after = terminal.send(event(counter=1))
    assert before.type == after.type == "ACK"
    naks = [f for f in terminal.pending if isinstance(f, wire.Frame) and f.type == "NAK"]
    deadline = time.monotonic() + 2
    while not naks and time.monotonic() < deadline:
        terminal.pending += terminal.read(0.1)
        naks = [f for f in terminal.pending if isinstance(f, wire.Frame) and f.type == "NAK"]
    assert [n.body["code"] for n in naks] == [code]
    if code == "schema":
        assert naks[0].body["field"] == "amount"


def test_broker_down_for_ten_seconds_then_every_alert_arrives_once(running, broker, centre):
    gw, terminal = running
    sent = []

    def burst(n):
        for i in range(n):
            body = intercept(counter=1 + i % 4) if i % 3 == 0 else event(counter=1 + i % 4)
            reply = terminal.send(body)
            assert reply.type == "ACK"
            if reply.body["level"] != "green":
                sent.append(body["event_id"])

    burst(15)
    broker.stop()
    burst(30)  # the counter keeps working while the centre is unreachable
    time.sleep(10)
    burst(15)
    broker.start()
    assert centre.wait_for(lambda r: {a["event_id"] for a in r.alerts} >= set(sent), timeout=30)
    assert gw.store.outbox_depth() == 0 or centre.wait_for(lambda r: gw.store.outbox_depth() == 0, timeout=10)
    ids = [a["event_id"] for a in centre.alerts]
    assert sorted(ids) == sorted(sent)  # each once: the centre de-duplicates on (gateway, seq)
    seqs = [a["seq"] for a in centre.alerts]
    assert seqs == sorted(seqs)  # drained in order
    assert any(a["historical"] for a in centre.alerts)  # replays after the outage are marked


def _start_gateway_process(config_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "counterguard", "run", "--config", str(config_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def test_gateway_killed_mid_burst_loses_no_acknowledged_event(tmp_path, broker, centre, counter_line):
    master, path = counter_line
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path)
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(config_toml(cfg))
    terminal = TellerTerminal(master, timeout=1.0, retries=0)
    bodies = [intercept(counter=1 + i % 4) if i % 5 == 0 else event(counter=1 + i % 4) for i in range(600)]
    acked: dict[str, dict] = {}
    kills = 0
    for round_ in range(4):
        proc = _start_gateway_process(config_path)
        try:
            deadline = time.monotonic() + 30
            terminal.heartbeats = 0
            while terminal.heartbeats == 0 and time.monotonic() < deadline:
                terminal.read(0.1)
            assert terminal.heartbeats, "gateway did not come up: " + (proc.stderr.read1().decode() if proc.poll() is not None else "")
            last = round_ == 3
            if not last:  # SIGKILL at a random point of the burst, as a power cut would
                timer = threading.Timer(random.uniform(0.2, 0.8), proc.send_signal, (signal.SIGKILL,))
                timer.start()
            todo = [b for b in bodies if b["event_id"] not in acked]
            for start in range(0, len(todo), 25):
                chunk = todo[start:start + 25]
                try:
                    replies = terminal.send_many(chunk, window=25)
                except TerminalError:
                    break  # the gateway died under us; what was not ACKed is resent next round
                for body, reply in zip(chunk, replies):
                    assert reply.type == "ACK", reply
                    if body["event_id"] in acked:
                        assert reply.body == acked[body["event_id"]]
                    acked[body["event_id"]] = reply.body
            if not last:
                timer.join()
                proc.wait(10)
                kills += proc.returncode == -signal.SIGKILL
                terminal.decoder.reset()
                terminal.pending.clear()
        finally:
            if round_ < 3 and proc.poll() is None:
                proc.kill()
                proc.wait(5)
    try:
        assert kills == 3
        assert set(acked) == {b["event_id"] for b in bodies}
        with sqlite3.connect(cfg.store.path) as db:
            stored = dict(db.execute("select event_id, level from verdicts"))
        for event_id, body in acked.items():
            assert stored.get(event_id) == body["level"], f"acknowledged event {event_id} lost"
        assert len(stored) == len(bodies)  # scored once each, resends included
        alerts = {e for e, b in acked.items() if b["level"] != "green"}
        assert centre.wait_for(lambda r: {a["event_id"] for a in r.alerts} >= alerts, timeout=30)
        assert len(centre.alerts) == len(alerts)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_config_error_names_the_key_and_the_file(tmp_path):
    bad = tmp_path / "branch.toml"
    bad.write_text("[mqtt]\nport = 99999\n")
    result = subprocess.run([sys.executable, "-m", "counterguard", "check-config", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert str(bad) in result.stderr and "mqtt.port" in result.stderr and "65535" in result.stderr


def test_replay_gives_what_the_gateway_answered_over_serial(running, tmp_path):
    gw, terminal = running
    bodies = [event(counter=1, amount=800), intercept(), mule(), event(counter=4, amount=45000, customer_age=70),
              event(counter=2, amount=12000, account_age_days=20, inbound_24h=12500, inbound_count_24h=6)]
    serial = [terminal.send(b).body for b in bodies]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(b) + "\n" for b in bodies))
    result = subprocess.run([sys.executable, "-m", "counterguard", "replay", str(events), "--watchlist",
                             gw.config.watchlist.file], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    replayed = [json.loads(line) for line in result.stdout.splitlines()]
    assert replayed == [{k: s[k] for k in ("event_id", "level", "score", "reasons")} for s in serial]


def test_replay_reports_bad_lines_by_number_and_goes_on(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(event()) + "\n{oops\n" + json.dumps(dict(event(), counter=99)) + "\n"
                      + json.dumps(event()) + "\n")
    result = subprocess.run([sys.executable, "-m", "counterguard", "replay", str(events)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 2
    assert "line 2: not JSON" in result.stderr
    assert "line 3: counter:" in result.stderr
