"""A counter line that cannot die: whatever one frame does, every frame gets exactly one reply and
the next good frame is still answered; a counter thread that stops anyway is restarted and shown on
the lamps, to the centre and by `counterguard doctor`; one given up on stops the systemd watchdog.

Real parts: a pty counter line, the real gateway pipeline and TFLite model, SQLite files on disk,
a private mosquitto, gpiozero's mock pins, a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import sqlite3
import time

import pytest

from counterguard.gateway.ops import doctor
from counterguard.core import wire
from counterguard.gateway.ops.app import Gateway
from counterguard.gateway.counter.counter_line import STATUS_FILE
from counterguard.core.messages import topic_root
from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.hardware.pinmap import default_pinmap_path, load_pinmap
from counterguard.gateway.counter.pipeline import Pipeline
from counterguard.gateway.scoring.assessor import Assessor
from counterguard.gateway.store.db import Store
from counterguard.gateway.counter.terminal import TellerTerminal
from counterguard.gateway.scoring.watchlist import Watchlist

from conftest import wait_until
from harness import event, gateway_config, intercept

PINMAP = load_pinmap(default_pinmap_path())
SCORER_FAILS = "6222020299990000001"  # the scorer raises for this account
RECORD_FAILS = "6222020299990000002"  # the event is written, then the gateway fails before the ACK


def poison_payload() -> bytes:
    """A well-formed event whose event_id is a lone surrogate escape: valid JSON, correct CRC."""
    payload = wire.encode_payload(event(event_id="POISON-ID"))
    return payload.replace(b'"POISON-ID"', b'"x\\ud800"')


class FailingAssessor(Assessor):
    """The real assessor, but the scorer raises for one account and recording fails half-way for
    another (after the event, verdict and alert rows are written), as a runtime fault would."""

    def assessment(self, event):
        if event.account == SCORER_FAILS:
            raise RuntimeError("TFLite interpreter failed to invoke")
        return super().assessment(event)

    def record(self, event, *args, **kwargs):
        alert = super().record(event, *args, **kwargs)
        if event.account == RECORD_FAILS:
            raise RuntimeError("failed after writing")
        return alert


class LineKilled(BaseException):
    """Not an Exception: the kind of failure the line's own loop does not catch."""


@pytest.fixture
def running(tmp_path, broker, counter_line, factory):
    master, path = counter_line
    gw = Gateway(gateway_config(tmp_path, broker_port=broker.port, serial_path=path), pin_factory=factory)
    gw.start()
    terminal = TellerTerminal(master, timeout=15.0, retries=0)  # no resends: a missing reply fails
    # The gateway's first heartbeat on the line says it is reading: nothing sent is flushed away.
    deadline = time.monotonic() + 30
    while terminal.heartbeats == 0 and time.monotonic() < deadline:
        terminal.read(0.1)
    assert terminal.heartbeats, "the gateway never spoke on the counter line"
    terminal.pending = []
    yield gw, terminal
    gw.stop()


def replies_left_over(terminal: TellerTerminal) -> list:
    """ACK/NAK frames that arrived without being asked for (a second reply to some frame)."""
    extra = [f for f in terminal.pending + terminal.read(0.5) if isinstance(f, wire.Frame) and f.type in ("ACK", "NAK")]
    terminal.pending = []
    return extra


def stored_ids(path) -> set:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("select event_id from events")}


# -- one bad frame, and the line goes on ---------------------------------------------------------------
def test_a_poison_frame_is_answered_and_the_300_valid_frames_after_it_are_acked(running):
    gw, terminal = running
    good = [event(event_id=f"after-poison-{i:03d}", account=f"62220202{i % 50:011d}") for i in range(300)]
    # The poison shares its first batch with 63 good frames (the terminal writes 64 at once).
    replies = terminal.send_many([poison_payload()] + good)
    assert len(replies) == 301 and all(r is not None for r in replies)
    first = replies[0]
    assert first.type == "NAK" and first.body["code"] in (wire.INTERNAL, wire.SCHEMA), first
    assert [r.type for r in replies[1:]] == ["ACK"] * 300
    assert [r.body["event_id"] for r in replies[1:]] == [e["event_id"] for e in good]
    assert replies_left_over(terminal) == []  # exactly one reply each
    assert stored_ids(gw.config.store.path) == {e["event_id"] for e in good}
    # The same poison again later, and the line still answers after it.
    again = terminal.send_many([poison_payload(), event(event_id="after-second-poison")])
    assert again[0].type == "NAK" and again[0].body["code"] == first.body["code"]
    assert again[1].type == "ACK"
    assert gw.lines[0].thread_state == "running" and gw.lines[0].restarts == 0


def test_a_frame_the_scorer_fails_on_gets_nak_internal_and_leaves_nothing_while_its_batch_is_stored(tmp_path, caplog):
    store = Store(tmp_path / "gateway.db")
    model = FraudModel.load(default_model_path())
    pipeline = Pipeline(FailingAssessor(store, Watchlist(store, None), model, model.thresholds), gateway_id="gw-test")
    bodies = [event(event_id="batch-1"), event(event_id="scorer-fails", account=SCORER_FAILS),
              intercept(event_id="batch-2"), {**intercept(event_id="record-fails"), "account": RECORD_FAILS},
              event(event_id="batch-3")]
    payloads = [wire.encode_payload(b) for b in bodies]
    frames = b"".join(wire.encode_frame("EVT", seq, p) for seq, p in enumerate(payloads, 1))
    items = wire.FrameDecoder().feed(frames)
    with caplog.at_level(logging.ERROR, logger="counterguard.gateway.counter.pipeline"):
        outcome = pipeline.process(items)  # one batch, one commit
    replies = wire.FrameDecoder().feed(outcome.replies)
    assert [(r.type, r.seq) for r in replies] == [("ACK", 1), ("NAK", 2), ("ACK", 3), ("NAK", 4), ("ACK", 5)]
    assert replies[1].body["code"] == replies[3].body["code"] == wire.INTERNAL
    # The log names each failed frame by its payload's hash, so it can be found at the counter.
    for p in (payloads[1], payloads[3]):
        assert hashlib.sha256(p).hexdigest() in caplog.text
    # Committed in a separate connection: the good three, and nothing of the two that failed,
    # although the second failed after its event, verdict, alert and outbox rows were written.
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        assert {r[0] for r in db.execute("select event_id from events")} == {"batch-1", "batch-2", "batch-3"}
        assert {r[0] for r in db.execute("select event_id from verdicts")} == {"batch-1", "batch-2", "batch-3"}
        assert {r[0] for r in db.execute("select event_id from alerts")} == {"batch-2"}
        assert db.execute("select count(*) from outbox").fetchone() == (1,)
    assert [a.event_id for a in outcome.alerts] == ["batch-2"]
    # Resending the failed frame gets the same answer; the next batch is stored as usual.
    again = wire.FrameDecoder().feed(pipeline.process(wire.FrameDecoder().feed(
        wire.encode_frame("EVT", 6, payloads[1]) + wire.encode_frame("EVT", 7, wire.encode_payload(event(event_id="batch-4"))))).replies)
    assert [(r.type, r.body.get("code")) for r in again] == [("NAK", wire.INTERNAL), ("ACK", None)]
    assert again[0].body == replies[1].body
    assert "batch-4" in stored_ids(tmp_path / "gateway.db")
    store.close()


def test_a_failing_event_on_the_counter_line_gets_nak_internal_and_the_line_goes_on(running):
    gw, terminal = running
    gw.pipeline.assessor = FailingAssessor(gw.store, gw.watchlist, gw.model, gw.thresholds)
    replies = terminal.send_many([event(event_id="line-1"), event(event_id="line-bad", account=SCORER_FAILS),
                                  {**intercept(event_id="line-half"), "account": RECORD_FAILS}, event(event_id="line-2")])
    assert [(r.type, r.body.get("code")) for r in replies] == [
        ("ACK", None), ("NAK", wire.INTERNAL), ("NAK", wire.INTERNAL), ("ACK", None)]
    assert replies_left_over(terminal) == []
    assert stored_ids(gw.config.store.path) == {"line-1", "line-2"}


def test_a_savepoint_undoes_only_its_own_event_and_the_batch_commits(tmp_path):
    from counterguard.core.clock import Clock
    from counterguard.core.events import parse_event

    store = Store(tmp_path / "gateway.db")
    model = FraudModel.load(default_model_path())
    assessor = Assessor(store, Watchlist(store, None), model, model.thresholds)
    first, twice = parse_event(event(event_id="sp-1")), parse_event(event(event_id="sp-2"))
    stamp = Clock().now()

    def record(e):
        assessor.record(e, b"{}", "0" * 64, assessor.assess(e), stamp, "gw-test")

    with store.batch():
        record(first)
        with store.savepoint():
            record(twice)
        with pytest.raises(sqlite3.IntegrityError):  # the same event again: the store itself refuses
            with store.savepoint():
                record(twice)
    assert stored_ids(tmp_path / "gateway.db") == {"sp-1", "sp-2"}
    store.close()


def test_a_lamp_driver_that_keeps_failing_does_not_stop_the_counter_being_answered(running):
    gw, terminal = running
    line = gw.lines[0]

    def broken_lamps(verdicts):
        raise OSError("lamp driver: /dev/gpiochip0 went away")

    line.on_verdicts = broken_lamps
    replies = terminal.send_many([event(event_id=f"no-lamps-{i}") for i in range(5)])
    assert [r.type for r in replies] == ["ACK"] * 5
    assert stored_ids(gw.config.store.path) >= {f"no-lamps-{i}" for i in range(5)}
    assert line.thread_state == "running" and line.restarts == 0 and line.faults >= 1
    assert wait_until(lambda: "survived" in {f.check: f for f in doctor.check_counter_lines(gw.config)}
                      ["counter line test line"].message, 10)


# -- a counter thread that stops anyway ----------------------------------------------------------------
def kill_line_on_next_verdict(line, times: int = 1):
    """The next ``times`` batches with verdicts end the line's thread (after the replies are written)."""
    show = line.on_verdicts
    left = [times]

    def on_verdicts(verdicts):
        if left[0] > 0:
            left[0] -= 1
            raise LineKilled("lamp driver took the thread down")
        show(verdicts)

    line.on_verdicts = on_verdicts


def lamp_pins_flashing(factory, counter: int) -> bool:
    pins = PINMAP.counters[counter]
    return all({s.state for s in factory.pin(n).states[-6:]} == {True, False} for n in (pins.green, pins.amber, pins.red))


def test_a_stopped_counter_thread_is_restarted_and_shown_on_lamps_status_heartbeat_and_doctor(running, probe, factory):
    gw, terminal = running
    root = topic_root(gw.config.gateway.region, gw.config.gateway.branch, gw.config.gateway.id)
    probe.subscribe(f"{root}/status")
    probe.subscribe(f"{root}/heartbeat")
    line = gw.lines[0]
    kill_line_on_next_verdict(line)
    assert terminal.send(event(counter=2, event_id="before-restart")).type == "ACK"  # answered, then the thread ends
    assert wait_until(lambda: line.restarts == 1 and line.thread_state == "running", 10)
    # The teller sees it: all three lamps of counter 2 flash together.
    assert wait_until(lambda: gw.lamps.states()[2] == "fault" and lamp_pins_flashing(factory, 2), 10)
    # The centre sees it, in the retained status and the heartbeat.
    assert probe.wait_for(lambda p: any(s.get("counter_lines", {}).get("test line", {}).get("restarts") == 1
                                        for s in p.received(f"{root}/status")), 10)
    assert probe.wait_for(lambda p: any(h["links"]["test line"]["restarts"] == 1
                                        and h["links"]["test line"]["thread"] == "running"
                                        for h in p.received(f"{root}/heartbeat")), 10)
    # The engineer sees it in doctor, with what stopped the thread.
    found = {f.check: f for f in doctor.check_counter_lines(gw.config)}
    assert found["counter line test line"].status == doctor.WARN
    assert "restarted 1 time" in found["counter line test line"].message
    assert "lamp driver took the thread down" in found["counter line test line"].message
    # And the counter is served again: the next verdict replaces the fault.
    assert terminal.send(event(counter=2, event_id="after-restart")).type == "ACK"
    assert wait_until(lambda: gw.lamps.states()[2] == "green", 10)
    assert gw._healthy()


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    """A unix datagram socket where systemd would listen, with a 0.4 s watchdog for this process."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield sock
    sock.close()


def notifications(sock, wait: float) -> list[str]:
    """Everything sent to the socket within the next ``wait`` seconds."""
    deadline = time.monotonic() + wait
    out = []
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            out.append(sock.recv(4096).decode())
        except socket.timeout:
            break
    return out


def test_a_line_that_keeps_stopping_is_given_up_and_systemd_is_left_to_restart_the_service(
        systemd, tmp_path, broker, counter_line, factory):
    master, path = counter_line
    gw = Gateway(gateway_config(tmp_path, broker_port=broker.port, serial_path=path), pin_factory=factory)
    gw.start()
    try:
        terminal = TellerTerminal(master, timeout=15.0, retries=0)
        assert "WATCHDOG=1" in notifications(systemd, 3)
        line = gw.lines[0]
        gw.supervisor.max_restarts = 2
        kill_line_on_next_verdict(line, times=3)
        for n in (1, 2):  # stopped and restarted, twice
            assert terminal.send(event(counter=1, event_id=f"kills-{n}")).type == "ACK"
            assert wait_until(lambda: line.restarts == n and line.thread_state == "running", 10)
        assert terminal.send(event(counter=1, event_id="kills-3")).type == "ACK"  # a third time: given up
        assert wait_until(lambda: line.thread_state == "dead", 10)
        assert line.restarts == 2 and not gw._healthy()
        assert wait_until(lambda: gw.lamps.states()[1] == "fault", 10)
        # the status file is written just after the line is marked given up: doctor reads it once written
        def doctor_says():
            return {f.check: f for f in doctor.check_counter_lines(gw.config)}.get("counter line test line")
        assert wait_until(lambda: doctor_says() is not None and doctor_says().status == doctor.FAIL, 10)
        found = {"counter line test line": doctor_says()}
        assert "given up" in found["counter line test line"].message
        assert (gw.config.store_path.parent / STATUS_FILE).exists()
        notifications(systemd, 0.5)  # a ping already on its way may still arrive
        assert "WATCHDOG=1" not in notifications(systemd, 1.5)
    finally:
        gw.stop()
