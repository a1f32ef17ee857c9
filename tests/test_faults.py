"""Fault injection with real parts: a real mosquitto killed by SIGKILL, gateways killed mid-burst,
a pty pulled mid-frame, a tmpfs that fills up, a wall clock that jumps back and a centre away for an
hour's worth of alerts. Every test ends with the same ledger (fault_support.assert_ledger): events
sent = verdicts stored, alerts raised = alerts stored once at the real centre, outbox empty.
docs/reliability.md says what each fault does and what is asserted."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import threading
import time

import pytest

from counterguard.gateway.ops.app import Gateway
from counterguard.core.clock import Stamp
from counterguard.core.decision import Verdict
from counterguard.core.events import parse_event
from counterguard.gateway.store.db import Store

from conftest import wait_until
from fault_support import (Cable, Centre, DeadLine, Teller, Tmpfs, assert_ledger, branch_day, cut_frame, gateway_db,
                           kill_broker, outbox_open, start_gateway_process, stop_process)
from harness import config_toml, gateway_config

log = logging.getLogger("faults")


@pytest.fixture
def centre(tmp_path, broker):
    c = Centre(tmp_path / "centre.db", broker).up()
    yield c
    c.close()


def test_broker_killed_and_restarted_while_tellers_keep_serving(tmp_path, broker, centre, counter_line, factory):
    master, path = counter_line
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path)
    bodies = branch_day(400, prefix="brk")
    teller = Teller(master)
    outages = []
    with Gateway(cfg, pin_factory=factory) as gw:
        teller.send_all(bodies[:40])
        assert wait_until(lambda: centre.count() > 0, 20), "nothing reached the centre before the fault"
        served = threading.Event()
        # The teller serves up to `allowed` events and then waits for the next go, so that each
        # outage really falls in the middle of the stream however fast or slow this machine is.
        allowed = [0]

        def keep_serving():  # the branch does not stop for the broker: events flow during the outages
            left = bodies[40:]
            deadline = time.monotonic() + 120
            while left and time.monotonic() < deadline:
                if len(teller.acked) >= allowed[0]:
                    time.sleep(0.005)
                    continue
                teller.send_all(left[:10], timeout=60, window=10)
                left = left[10:]
            served.set()

        load = threading.Thread(target=keep_serving, daemon=True)
        load.start()
        for n in range(3):
            allowed[0] = 40 + 100 * n + 30
            assert wait_until(lambda: len(teller.acked) >= 40 + 100 * n + 20, 30)
            kill_broker(broker)  # events are still in flight on the line
            during = dict(teller.acked)
            assert wait_until(lambda: not gw.uplink.connected, 20), "the gateway did not notice the broker was gone"
            allowed[0] = len(during) + 60
            assert wait_until(lambda: len(teller.acked) >= len(during) + 50, 30), "counters stalled without the broker"
            in_outage = [b for e, b in list(teller.acked.items()) if e not in during]
            outages.append((len(in_outage), sum(b["level"] != "green" for b in in_outage)))
            broker.start()  # same port, a new process with no sessions or retained messages
        allowed[0] = len(bodies)
        load.join(120)
        assert served.is_set()
        ledger = assert_ledger(cfg.store.path, teller, bodies, centre, timeout=60)
    print(f"broker SIGKILLed 3 times; (events, alerts) served during each outage {outages}; {ledger}")
    assert all(alerts > 0 for _, alerts in outages)


ROUNDS = 5


def fault_seed() -> int:
    """The seed of this run's random kill points; set COUNTERGUARD_FAULT_SEED to replay a run."""
    seed = int(os.environ.get("COUNTERGUARD_FAULT_SEED") or time.time_ns() % 2**31)
    print(f"fault seed {seed} (COUNTERGUARD_FAULT_SEED={seed} replays it)")
    return seed


def test_gateway_sigkilled_at_random_points_of_a_burst_repeatedly(tmp_path, broker, centre, counter_line):
    master, path = counter_line
    rng = random.Random(fault_seed())
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path)
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(config_toml(cfg))
    bodies = branch_day(600, prefix="kill", alert_every=3)
    teller = Teller(master, timeout=1.0)
    dead_line = DeadLine(path)
    kills = []
    for round_ in range(ROUNDS + 1):
        proc = start_gateway_process(config_path, log_path=tmp_path / "gateway.log")
        try:
            assert teller.wait_for_gateway(60), "the gateway did not come up; see gateway.log"
            if round_ == ROUNDS:  # power stays on: finish the day
                teller.send_all(bodies, timeout=60)
                ledger = assert_ledger(cfg.store.path, teller, bodies, centre, timeout=60)
                break
            # A power cut at a random point: after a random number of further ACKs, plus a few random
            # milliseconds, so it lands anywhere in read -> score -> commit -> ACK -> publish.
            after = min(len(teller.acked) + rng.randint(3, 50), len(bodies))
            delay = rng.uniform(0.0, 0.03)
            window = rng.randint(1, 16)

            def power_cut():
                wait_until(lambda: len(teller.acked) >= after or proc.poll() is not None, 60, tick=0.001)
                time.sleep(delay)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    dead_line.start()

            cutter = threading.Thread(target=power_cut, daemon=True)
            cutter.start()
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                if not teller.offer(bodies, window=window):
                    break
            cutter.join(60)
            proc.wait(10)
            dead_line.stop()
            assert proc.returncode == -signal.SIGKILL, "the day ended before the power cut"
            kills.append(len(teller.acked))
            teller.reset()
        finally:
            if round_ == ROUNDS or proc.poll() is None:
                stop_process(proc)
    print(f"SIGKILLed after {kills} ACKs; {ledger}")
    assert len(kills) == ROUNDS


def test_serial_line_cut_mid_frame_and_reopened_repeatedly(tmp_path, broker, centre, factory):
    rng = random.Random(fault_seed())
    cable = Cable(str(tmp_path / "usb-counter_node_2-if00-port0"))
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=cable.link_path)
    bodies = branch_day(160, prefix="cut")
    rounds = 6
    per_round = len(bodies) // (rounds + 1)
    try:
        with Gateway(cfg, pin_factory=factory) as gw:
            link = gw.lines[0].link
            teller = Teller(cable.master)
            teller.send_all(bodies[:per_round])
            cuts = []
            for r in range(rounds):
                victim = bodies[(r + 1) * per_round]
                head, tail = cut_frame(victim, 900 + r, rng.uniform(0.05, 0.95))
                before = gw.lines[0].last_rx
                os.write(cable.master, head)  # the frame is on its way ...
                assert wait_until(lambda: gw.lines[0].last_rx != before, 10, tick=0.005)
                if r % 2 == 0:  # ... and the cable is pulled (the adapter vanishes, reads fail with EIO)
                    cable.pull()
                    assert wait_until(lambda: link.state == "lost", 10)
                    cable.plug()
                else:  # ... or the port is closed under the gateway's reader
                    link._port.close()
                assert wait_until(lambda: link.state == "open" and link.reopens == r + 1, 20), \
                    f"the line was not reopened after cut {r + 1}"
                teller.attach(cable.master)
                # What was not lost in the cut still arrives on the reopened line: the gateway must not
                # take it for an event (no verdict for part of one), nor let it block what follows.
                os.write(cable.master, tail[rng.randint(0, len(tail) - 1):])
                teller.send_all(bodies[(r + 1) * per_round:(r + 2) * per_round])
                cuts.append((len(head), len(head) + len(tail)))
            teller.send_all(bodies)
            ledger = assert_ledger(cfg.store.path, teller, bodies, centre, timeout=60)
            reopens = link.reopens
    finally:
        cable.close()
    assert reopens == rounds
    assert not any(n.get("code") == "conflict" for n in teller.naks)
    print(f"cut after/of bytes {cuts}; {ledger}")


def test_disk_full_on_the_gateway_answers_busy_keeps_every_alert_and_recovers(tmp_path, broker, centre, counter_line,
                                                                               factory, caplog):
    disk = Tmpfs(tmp_path / "data", size="8m")
    why = disk.mount()
    if why:
        pytest.skip(f"no small filesystem to fill here: {why}")
    master, path = counter_line
    caplog.set_level(logging.INFO)
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path)
    cfg = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, path=str(tmp_path / "data" / "gateway.db")))
    bodies = branch_day(200, prefix="full", alert_every=3)
    teller = Teller(master)
    try:
        with Gateway(cfg, pin_factory=factory) as gw:
            teller.send_all(bodies[:60])
            with gateway_db(cfg.store.path) as db:
                kept = {a for (a,) in db.execute("SELECT alert_id FROM alerts")}
            ballast = disk.fill()
            # The counters keep sending; once SQLite cannot grow its files the teller is told "busy".
            left = bodies[60:]
            deadline = time.monotonic() + 60
            while teller.busy == 0 and left and time.monotonic() < deadline:
                left = teller.offer(left, window=5)
            assert teller.busy > 0, f"the store took {len(teller.acked) - 60} more events on a full disk"
            busy_at = len(teller.acked)
            # Nothing already kept was lost, and the reason is logged, naming the store's file.
            with gateway_db(cfg.store.path) as db:
                assert kept <= {a for (a,) in db.execute("SELECT alert_id FROM alerts")}
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert any("busy" in m and cfg.store.path in m and "free space" in m for m in errors), errors
            # A few more tries while the disk is still full: still busy, nothing half-stored.
            still = teller.offer(left[:10], window=5)
            assert len(still) == len(left[:10])
            disk.free()  # space comes back (old logs rotated away)
            teller.send_all(bodies, timeout=60)
            ledger = assert_ledger(cfg.store.path, teller, bodies, centre, timeout=60)
    finally:
        disk.unmount()
    print(f"disk filled with {ballast} bytes of ballast after {busy_at} events; {teller.busy} busy NAKs; {ledger}")


FAKETIME = next((p for p in ("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                             "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
                             "/usr/lib/arm-linux-gnueabihf/faketime/libfaketimeMT.so.1") if os.path.exists(p)), None)


@pytest.mark.skipif(FAKETIME is None, reason="libfaketime is not installed (setup.sh installs it: apt-get install libfaketime)")
def test_wall_clock_stepped_back_an_hour_keeps_seq_order_and_the_ledger(tmp_path, broker, centre, counter_line):
    master, path = counter_line
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path)
    config_path = tmp_path / "gateway.toml"
    # Red alerts left unacknowledged are escalated after 3 s, on either side of the step.
    config_path.write_text(config_toml(cfg) + "[supervisor]\nescalate_after_s = 3\n")
    offset = tmp_path / "faketime.rc"
    offset.write_text("+0\n")
    # The whole gateway process sees the step (time.time(), SQLite, paho), its monotonic clock does not:
    # what an NTP step back or an RTC-less Pi's first sync does to a running gateway.
    env = {"LD_PRELOAD": FAKETIME, "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_CACHE_DURATION": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_DONT_RESET": "1"}
    bodies = branch_day(120, prefix="clk", alert_every=3)
    before, after = bodies[:60], bodies[60:]
    teller = Teller(master)
    proc = start_gateway_process(config_path, env=env, log_path=tmp_path / "gateway.log")
    try:
        assert teller.wait_for_gateway(60), "the gateway did not come up; see gateway.log"
        teller.send_all(before)
        offset.write_text("-3600\n")  # the wall clock steps back an hour
        time.sleep(2.5)  # libfaketime re-reads the offset each second
        teller.send_all(after)
        reds = sum(a["level"] == "red" for a in teller.acked.values())
        # Nobody acknowledges: every red is escalated once, including those raised before the step
        # (by the wall clock they are an hour from being overdue; by the monotonic clock they are not).
        escalated = wait_until(lambda: centre.count("escalation") >= reds, 30, tick=0.1)
        assert escalated, f"{centre.count('escalation')} of {reds} unacknowledged red alerts escalated"
        ledger = assert_ledger(cfg.store.path, teller, bodies, centre, timeout=60)
        with gateway_db(cfg.store.path) as db:
            wall = dict(db.execute("SELECT event_id, received_wall FROM events"))
            mono = dict(db.execute("SELECT event_id, received_mono FROM events"))
            raised = db.execute("SELECT event_id, seq FROM alerts ORDER BY seq").fetchall()
    finally:
        stop_process(proc)
    step = max(wall[b["event_id"]] for b in before) - min(wall[b["event_id"]] for b in after)
    assert step > 3000, f"the gateway's wall clock did not step back (only {step:.0f} s); is libfaketime working?"
    # Monotonic time and seq still follow the order the tellers served customers in ...
    order = [b["event_id"] for b in bodies]
    assert sorted(order, key=mono.get) == order
    assert [e for e, _ in raised] == [e for e in order if e in dict(raised)]
    # ... and the centre stored the alerts in seq order, each once, whatever their wall times say.
    seqs = [r["seq"] for r in centre.records("alert")]
    assert seqs == sorted(seqs) == [s for _, s in raised]
    assert sorted(r["alert_id"] for r in centre.records("escalation")) == sorted(r["alert_id"] for r in centre.records("alert"))
    print(f"wall clock stepped back {step:.0f} s mid-day; {reds} reds escalated once each; {ledger}")


HOUR_OF_ALERTS = 3600  # a busy branch's hour at one alert a second, served here as fast as the line allows


def test_centre_down_for_an_hours_worth_of_alerts_then_drains_in_order(tmp_path, broker, centre, counter_line, factory):
    master, path = counter_line
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path, republish_after_s=30.0)
    bodies = branch_day(HOUR_OF_ALERTS * 5 // 4, prefix="hour", alert_every=1)[:HOUR_OF_ALERTS] \
        + branch_day(HOUR_OF_ALERTS // 4, prefix="hour-green", alert_every=10**9)[1:]
    teller = Teller(master, timeout=5.0)
    with Gateway(cfg, pin_factory=factory) as gw:
        centre.down()  # maintenance at the centre: its intake is off the broker
        t0 = time.monotonic()
        teller.send_all(bodies, timeout=120, window=64)
        served_s = time.monotonic() - t0
        waiting = outbox_open(cfg.store.path, "alert")
        assert waiting == HOUR_OF_ALERTS, f"{waiting} alerts waiting in the outbox, expected {HOUR_OF_ALERTS}"
        # Events for learning wait too, at most two batches made ahead: the rest stay in the event log.
        assert outbox_open(cfg.store.path, "events") <= 2
        t1 = time.monotonic()
        centre.up()  # back: its "online" makes the gateway resend everything unreceipted, in seq order
        assert wait_until(lambda: outbox_open(cfg.store.path) == 0, 90, tick=0.05), \
            f"{outbox_open(cfg.store.path)} alerts still waiting after 90 s"
        drain_s = time.monotonic() - t1
        ledger = assert_ledger(cfg.store.path, teller, bodies, centre, timeout=30)
    rate = HOUR_OF_ALERTS / drain_s
    log.warning("outbox drain after a centre outage: %d alerts in %.2f s = %.0f alerts/s", HOUR_OF_ALERTS, drain_s, rate)
    print(f"{len(bodies)} events served in {served_s:.1f} s with the centre down; {HOUR_OF_ALERTS} alerts drained "
          f"in {drain_s:.2f} s ({rate:.0f} alerts/s); {ledger}")
    seqs = [r["seq"] for r in centre.records("alert")]
    assert seqs == sorted(seqs) and len(seqs) == HOUR_OF_ALERTS


def test_a_row_whose_receipt_was_lost_before_a_clock_step_back_is_sent_again(tmp_path):
    with Store(tmp_path / "gateway.db") as store:
        now = time.time()
        ev = parse_event(branch_day(1, prefix="lost-receipt")[0])
        store.record_verdict(ev, b"{}", "sha", Verdict(ev.event_id, "red", 0.97, ("watchlist",), "Hold", ev.counter),
                             Stamp(now, time.monotonic(), True), model_version="m", watchlist_version=1, gateway_id="gw")
        store.mark_published([row.seq for row in store.outbox_pending(10, republish_after_s=30, now_wall=now)], now)
        # Published; the receipt is lost; 30 s later it is due again ...
        assert store.outbox_pending(10, republish_after_s=30, now_wall=now + 10) == []
        assert len(store.outbox_pending(10, republish_after_s=30, now_wall=now + 31)) == 1
        # ... and when the wall clock has been stepped back an hour, it is due at once, not in an hour.
        assert len(store.outbox_pending(10, republish_after_s=30, now_wall=now - 3600)) == 1
