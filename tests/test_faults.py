"""Fault injection with real parts: a real mosquitto killed by SIGKILL, gateways killed mid-burst,
a pty pulled mid-frame, a tmpfs that fills up, a wall clock that jumps back and a centre away for an
hour's worth of alerts. Every test ends with the same ledger (fault_support.assert_ledger): events
sent = verdicts stored, alerts raised = alerts stored once at the real centre, outbox empty.
docs/reliability.md says what each fault does and what is asserted."""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time

import pytest
from gpiozero.pins.mock import MockFactory

from gateway.app import Gateway

from conftest import wait_until
from fault_support import (Centre, DeadLine, Teller, Tmpfs, assert_ledger, branch_day, cut_frame, kill_broker, outbox_open,
                           start_gateway_process, stop_process)
from harness import config_toml, gateway_config, pty_pair

log = logging.getLogger("faults")


@pytest.fixture
def centre(tmp_path, broker):
    c = Centre(tmp_path / "centre.db", broker).up()
    yield c
    c.close()


@pytest.fixture
def line():
    with pty_pair() as pair:
        yield pair


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


def test_broker_killed_and_restarted_while_tellers_keep_serving(tmp_path, broker, centre, line, factory):
    master, path = line
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path)
    bodies = branch_day(240, prefix="brk")
    teller = Teller(master)
    with Gateway(cfg, pin_factory=factory) as gw:
        teller.send_all(bodies[:60])
        assert wait_until(lambda: centre.count() > 0, 20), "nothing reached the centre before the fault"
        served = threading.Event()

        def keep_serving():  # the branch does not stop for the broker: events flow during the outage
            teller.send_all(bodies[60:], timeout=90, window=10)
            served.set()

        load = threading.Thread(target=keep_serving, daemon=True)
        load.start()
        assert wait_until(lambda: len(teller.acked) >= 80, 30)
        pid = kill_broker(broker)
        during = len(teller.acked)
        assert wait_until(lambda: not gw.uplink.connected, 20), "the gateway did not notice the broker was gone"
        assert wait_until(lambda: len(teller.acked) >= during + 60, 30), "counters stalled while the broker was down"
        acked_in_outage = len(teller.acked) - during
        broker.start()  # same port, a new process with no memory of sessions or retained messages
        load.join(90)
        assert served.is_set()
        ledger = assert_ledger(cfg.store.path, teller, bodies, centre, timeout=60)
    print(f"broker pid {pid} SIGKILLed; {acked_in_outage} events ACKed during the outage; {ledger}")
    assert acked_in_outage >= 60


ROUNDS = 5


def fault_seed() -> int:
    """The seed of this run's random kill points; set COUNTERGUARD_FAULT_SEED to replay a run."""
    seed = int(os.environ.get("COUNTERGUARD_FAULT_SEED") or time.time_ns() % 2**31)
    print(f"fault seed {seed} (COUNTERGUARD_FAULT_SEED={seed} replays it)")
    return seed


def test_gateway_sigkilled_at_random_points_of_a_burst_repeatedly(tmp_path, broker, centre, line):
    master, path = line
    rng = random.Random(fault_seed())
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path)
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(config_toml(cfg))
    bodies = branch_day(400, prefix="kill", alert_every=3)
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
            after, delay = len(teller.acked) + rng.randint(3, 50), rng.uniform(0.0, 0.03)
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
