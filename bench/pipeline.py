"""Gateway benchmarks: throughput through the whole pipeline with durable storage, frame-to-lamp
latency, resident memory and cold start. Real parts throughout: a pty counter line, the bundled
TFLite model, SQLite with synchronous=FULL, gpiozero mock pins, a private mosquitto with a receiver.

    .venv/bin/python bench/pipeline.py [--events 20000]

Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def customer(i: int) -> str:
    """One of 5,000 customers' accounts: a branch sees most accounts once or twice a day."""
    return f"62220202{i % 5000:011d}"


def mixed_events(n: int) -> list[dict]:
    """A realistic mix for throughput: one in 50 events is the intercept (a red alert)."""
    from harness import event, intercept

    return [intercept(counter=1 + i % 4) if i % 50 == 0
            else event(counter=1 + i % 4, amount=200 + i % 9000, account=customer(i)) for i in range(n)]


def _stat_cpu(stat: Path) -> float:
    """User + system CPU seconds from a /proc stat file (a process's or one of its threads')."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, every thread included."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by thread name."""
    import threading

    out: dict[str, float] = {}
    for t in threading.enumerate():
        try:
            out[t.name] = _stat_cpu(Path(f"/proc/self/task/{t.native_id}/stat"))
        except (FileNotFoundError, TypeError):
            continue
    return out


def upload_settled(db_path: Path, batch_events: int = 500, timeout: float = 120.0) -> bool:
    """Wait until the gateway has put every full batch of scored events in the outbox and the centre
    has receipted every outbox row, so the CPU time read after it includes all the upload's work for
    the run (batches wait for the counters to go quiet). False if that took longer than ``timeout``."""
    import sqlite3

    from counterguard.gateway.store.db import UPLOADED_THROUGH

    deadline = time.monotonic() + timeout
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        while time.monotonic() < deadline:
            open_rows = conn.execute("SELECT count(*) FROM outbox WHERE receipted_wall IS NULL").fetchone()[0]
            through = conn.execute("SELECT value FROM meta WHERE key = ?", (UPLOADED_THROUGH,)).fetchone()
            last = conn.execute("SELECT max(e.rowid) FROM events e JOIN verdicts v USING (event_id)").fetchone()[0]
            # what is left is less than a batch, which waits for upload.interval_s, not for quiet counters
            if open_rows == 0 and (last or 0) - int(through[0] if through else 0) < batch_events:
                return True
            time.sleep(0.1)
        return False
    finally:
        conn.close()


def upload_threads(tmp: Path, port: int, n: int, window: int, upload: bool) -> tuple[float, float, float]:
    """The gateway in this process, each of its threads' CPU time counted apart: (µs an event on the
    counter line, µs an event on the uplink's two threads, its own and the MQTT client's, until the
    upload has caught up; the same during the burst alone). The upload's work is all on the uplink;
    the counter line does the same with it on or off."""
    from gpiozero.pins.mock import MockFactory

    from counterguard.gateway.counter.terminal import TellerTerminal
    from counterguard.gateway.ops.app import Gateway
    from harness import gateway_config, pty_pair

    tmp.mkdir(parents=True, exist_ok=True)
    with pty_pair() as (master, path):
        cfg = gateway_config(tmp, broker_port=port, serial_path=path).with_changes(
            "upload", events=upload, batch_events=500, interval_s=60.0)
        gw = Gateway(cfg, pin_factory=MockFactory())
        gw.start()
        try:
            terminal = TellerTerminal(master, timeout=5)
            bodies = mixed_events(n + 200)
            terminal.send_many(bodies[:200], window=window)  # warm up
            before = thread_cpu()
            terminal.send_many(bodies[200:], window=window)
            burst = thread_cpu()
            time.sleep(0.5)  # the counters go quiet, so the upload builds what waited
            if upload and not upload_settled(Path(cfg.store.path)):
                raise RuntimeError("the upload did not catch up within 2 minutes")
            after = thread_cpu()
        finally:
            gw.stop()
    # the gateway's own MQTT client only: the bench's receiver, in this process too, has one as well
    mine = (f"uplink-{cfg.gateway.id}", f"paho-mqtt-client-{cfg.gateway.id}")

    def spent(names, t0, t1) -> float:
        return sum(cpu - t0.get(name, 0.0) for name, cpu in t1.items() if names(name)) / n * 1e6

    line = spent(lambda name: name.startswith("counter-line ") and name != "counter-line supervisor", before, after)
    return line, spent(mine.__contains__, before, after), spent(mine.__contains__, before, burst)


def own_process(tmp: Path, port: int, n: int, window: int, upload: bool = True) -> tuple[float, float, float, float]:
    """The gateway as it runs in a branch, `counterguard run` in its own process: seconds from start
    to the first verdict back over the line; events/s for ``n`` pipelined events; its peak resident
    memory (MB) after them; the CPU time it spent on them, in µs an event (its threads together, the
    uplink's included, half a second after the last ACK). ``upload``: events for learning on, with
    the product's batch settings."""
    from counterguard.gateway.counter.terminal import TellerTerminal
    from harness import config_toml, event, gateway_config, pty_pair

    tmp.mkdir(parents=True, exist_ok=True)
    with pty_pair() as (master, path):
        cfg = gateway_config(tmp, broker_port=port, serial_path=path).with_changes(
            "upload", events=upload, batch_events=500, interval_s=60.0)
        (tmp / "run.toml").write_text(config_toml(cfg))
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "counterguard", "run", "-c", str(tmp / "run.toml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            terminal = TellerTerminal(master, timeout=0.2, retries=200)
            terminal.send(event())
            started = time.monotonic() - t0
            terminal.timeout = 5
            bodies = mixed_events(n + 200)
            terminal.send_many(bodies[:200], window=window)  # warm up
            cpu0 = cpu_seconds(proc.pid)
            t1 = time.perf_counter()
            terminal.send_many(bodies[200:], window=window)
            rate = n / (time.perf_counter() - t1)
            time.sleep(0.5)  # the counters go quiet, so the upload builds what waited
            if upload and not upload_settled(Path(cfg.store.path)):
                raise RuntimeError("the upload did not catch up within 2 minutes")
            cpu = (cpu_seconds(proc.pid) - cpu0) / n * 1e6
            status = Path(f"/proc/{proc.pid}/status").read_text()
            hwm = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024
            return started, rate, hwm, cpu
        finally:
            proc.terminate()
            proc.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--upload-rounds", type=int, default=3,
                        help="runs with event upload on and off, alternated, to measure its cost (default 3 each)")
    args = parser.parse_args()

    from gpiozero.pins.mock import MockFactory

    from counterguard.centre.receiver import Receiver
    from counterguard.gateway.ops.app import Gateway
    from counterguard.gateway.link.broker import PrivateBroker
    from counterguard.gateway.counter.terminal import TellerTerminal
    from harness import event, gateway_config, pty_pair

    rows = []
    with tempfile.TemporaryDirectory() as tmp, PrivateBroker() as broker:
        tmp = Path(tmp)
        receiver = Receiver("127.0.0.1", broker.port)
        receiver.start()
        (tmp / "own").mkdir()
        started, rate, hwm, cpu = own_process(tmp / "own", broker.port, args.events, args.window)
        rows.append(("pipeline throughput: `counterguard run` in its own process, durable (synchronous=FULL), "
                     f"pty, terminal pipelining {args.window} frames, 1 in 50 events a red alert",
                     f"{rate:,.0f} events/s", "≥ 5,000 events/s"))
        rows.append(("cold start, `counterguard run` to first verdict over the line", f"{started:.2f} s", "≤ 2 s"))
        rows.append((f"resident memory of the gateway process, peak after {args.events + 201:,} events",
                     f"{hwm:.0f} MB", "≤ 80 MB"))
        # Events for learning: the same run with the upload on and off, alternated (the machine drifts).
        on, off, cpu_on, cpu_off = [rate], [], [cpu], []
        for r in range(args.upload_rounds):
            run = own_process(tmp / f"off-{r}", broker.port, args.events, args.window, upload=False)
            off.append(run[1])
            cpu_off.append(run[3])
            if r + 1 < args.upload_rounds or not on:
                run = own_process(tmp / f"on-{r}", broker.port, args.events, args.window, upload=True)
                on.append(run[1])
                cpu_on.append(run[3])
        if off:
            c_on, c_off = statistics.median(cpu_on), statistics.median(cpu_off)
            rows.append((f"event upload's cost in the gateway's CPU time ({len(cpu_on)} and {len(cpu_off)} runs; "
                         "medians)", f"{c_on:.0f} / {c_off:.0f} µs an event = {(c_on - c_off) / c_off:+.1%}"
                         f" (runs on: {', '.join(f'{x:.0f}' for x in cpu_on)}; "
                         f"off: {', '.join(f'{x:.0f}' for x in cpu_off)})", "≤ 5 % cost"))
            med_on, med_off = statistics.median(on), statistics.median(off)
            rows.append((f"event upload's cost: throughput with upload on / off ({len(on)} and {len(off)} runs, "
                         "alternated; medians)", f"{med_on:,.0f} / {med_off:,.0f} events/s = "
                         f"{(med_off - med_on) / med_off:+.1%} cost"
                         f" (runs on: {', '.join(f'{x:,.0f}' for x in on)}; off: {', '.join(f'{x:,.0f}' for x in off)})",
                         "≤ 5 % cost"))
        # The same split by thread, in this process: the uplink's CPU with the upload on and off.
        per_thread = {True: [], False: []}
        for r in range(args.upload_rounds):
            for upload in (False, True):
                per_thread[upload].append(upload_threads(tmp / f"threads-{r}-{upload}", broker.port, args.events,
                                                         args.window, upload))
        line = statistics.median(x[0] for rounds in per_thread.values() for x in rounds)
        up_on = statistics.median(x[1] for x in per_thread[True])
        up_off = statistics.median(x[1] for x in per_thread[False])
        rows.append((f"event upload's cost by thread ({args.upload_rounds} runs each, gateway in this process; "
                     "medians): uplink with upload on / off until the upload has caught up, against the counter "
                     "line's own CPU", f"uplink {up_on:.1f} / {up_off:.1f} µs an event, counter line {line:.0f} µs "
                     f"an event: upload {(up_on - up_off) / (line + up_off):+.1%} of the gateway's CPU "
                     f"(uplink on: {', '.join(f'{x[1]:.1f}' for x in per_thread[True])}; "
                     f"off: {', '.join(f'{x[1]:.1f}' for x in per_thread[False])})", "-"))
        in_on = statistics.median(x[2] for x in per_thread[True])
        in_off = statistics.median(x[2] for x in per_thread[False])
        rows.append(("the same during the burst alone (batches wait for the counters to go quiet)",
                     f"uplink {in_on:.1f} / {in_off:.1f} µs an event: upload {(in_on - in_off) / (line + in_off):+.1%}"
                     f" of the gateway's CPU (on: {', '.join(f'{x[2]:.1f}' for x in per_thread[True])}; "
                     f"off: {', '.join(f'{x[2]:.1f}' for x in per_thread[False])})", "≤ 5 % cost"))
        with pty_pair() as (master, path):
            gw = Gateway(gateway_config(tmp, broker_port=broker.port, serial_path=path), pin_factory=MockFactory())
            gw.start()
            terminal = TellerTerminal(master, timeout=5)
            terminal.send_many(mixed_events(2000), window=args.window)  # some history in the store
            # Latency: one event at a time, as a counter really sends them.
            gw.lines[0].latencies.clear()
            for i in range(2000):
                terminal.send(event(counter=1 + i % 4, account=customer(i)))
            lat = sorted(gw.lines[0].latencies)
            p50 = statistics.median(lat) * 1e3
            p99 = lat[int(len(lat) * 0.99)] * 1e3
            rows.append(("gateway time, frame's last byte read → ACK written and lamp set (single events)",
                         f"p50 {p50:.3f} ms, p99 {p99:.3f} ms", "p99 ≤ 2 ms"))
            depth_wait = time.monotonic() + 60
            while gw.store.outbox_depth() and time.monotonic() < depth_wait:
                time.sleep(0.1)
            gw.stop()
        receiver.stop()

    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.platform()}; {date.today().isoformat()}\n")
    print("| measure | result | goal |\n|---|---|---|")
    for name, result, goal in rows:
        print(f"| {name} | {result} | {goal} |")


if __name__ == "__main__":
    main()
