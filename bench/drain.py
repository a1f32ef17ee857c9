"""Outbox drain after an outage: a real gateway (``counterguard run``) raises N red alerts over its
counter line while the broker is down, so all N wait in its SQLite outbox; then the broker comes
back with the stand-in centre receipting, and the drain is timed from the broker accepting
connections to the last outbox row closed by a receipt, and from the first alert reaching the centre
(the gateway connected and sending, its reconnect back-off behind it) to the same end. Goal: at
least 5,000 alerts/s once connected.

    .venv/bin/python bench/drain.py [--alerts 20000]

Also reports what the centre received (each alert once, duplicates the centre dropped) and the
gateway process's peak memory. Before that, with the gateway in this process so its counter line's
own timings can be read (the stand-in centre in a process of its own): frame-to-lamp times of
single events a teller sends one at a time, first with the uplink idle, then while it drains the
same number of alerts queued during an outage (the counter line and the uplink share the gateway's
process and its store). Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench" / "peers"))

from linejob import peak_rss_mb, wait_until  # noqa: E402
from peerenv import machine_line  # noqa: E402

GOAL = 5000


def _p50_p99(times) -> str:
    times = sorted(times)
    if not times:
        return "no samples"
    return f"{times[len(times) // 2] * 1e3:.2f} ms / {times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3:.2f} ms"


def frame_to_lamp(alerts: int, singles: int) -> dict:
    """The counter line's frame-to-lamp times of single events (one at a time, as a teller sends
    them), with the uplink idle and then while it drains ``alerts`` queued during an outage. The
    stand-in centre runs as its own process, as the real one runs on its own machine."""
    import logging

    from gpiozero.pins.mock import MockFactory

    from counterguard.gateway.counter.terminal import TellerTerminal
    from counterguard.gateway.link.broker import PrivateBroker
    from counterguard.gateway.ops.app import Gateway
    from harness import event, gateway_config, intercept, pty_pair

    logging.getLogger("counterguard.gateway.link.uplink").setLevel(logging.ERROR)  # the outage is on purpose

    def customer(i: int) -> str:
        return f"62220202{i % 5000:011d}"

    with tempfile.TemporaryDirectory(prefix="counterguard-lamp-") as tmp, PrivateBroker() as broker, \
            pty_pair() as (master, tty_path):
        centre = subprocess.Popen([sys.executable, "-m", "counterguard.centre.receiver", "--host", "127.0.0.1",
                                   "--port", str(broker.port), "--client-id", "bench-lamp-centre"],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            cfg = gateway_config(Path(tmp), broker_port=broker.port, serial_path=tty_path, republish_after_s=30.0)
            with Gateway(cfg, pin_factory=MockFactory()) as gw:
                terminal = TellerTerminal(master, timeout=5)
                line = gw.lines[0]
                terminal.send_many([event(counter=1 + i % 4, account=customer(i)) for i in range(500)], window=64)
                wait_until(lambda: gw.store.outbox_depth() == 0, timeout=30, tick=0.05)
                line.latencies.clear()
                for i in range(singles):
                    terminal.send(event(counter=1 + i % 4, account=customer(i)))
                idle = list(line.latencies)
                broker.stop()  # an outage: the alerts wait in the outbox
                terminal.send_many([intercept(counter=1 + i % 4, event_id=f"lamp-{i}") for i in range(alerts)],
                                   window=64)
                broker.start()
                wait_until(lambda: gw.uplink.connected, timeout=30, tick=0.005)
                line.latencies.clear()
                t_drain = time.monotonic()
                sent, left = 0, gw.store.outbox_depth()
                while left and sent < singles * 20:  # single events for as long as the drain lasts
                    terminal.send(event(counter=1 + sent % 4, account=customer(sent)))
                    sent += 1
                    if sent % 20 == 0:
                        left = gw.store.outbox_depth()
                burst = list(line.latencies)
                drain_s = time.monotonic() - t_drain
                drained = f"{len(burst):,} events timed during the drain" + (
                    f", which took {drain_s:.1f} s ({alerts / drain_s:,.0f} alerts/s)" if not left
                    else f", {left:,} rows still queued after them")
                wait_until(lambda: gw.store.outbox_depth() == 0, timeout=60, tick=0.05)
        finally:
            centre.terminate()
            centre.wait(20)
        return {"idle": _p50_p99(idle), "burst": _p50_p99(burst), "drained": drained}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--alerts", type=int, default=20000, help="alerts queued during the outage")
    p.add_argument("--singles", type=int, default=1000, help="single events timed, idle and during the drain")
    args = p.parse_args(argv)
    lamp = frame_to_lamp(args.alerts, args.singles)

    from counterguard.centre.receiver import Receiver
    from counterguard.gateway.link.broker import PrivateBroker
    from counterguard.gateway.store.db import Store
    from counterguard.gateway.counter.terminal import TellerTerminal
    from harness import config_toml, gateway_config, intercept, pty_pair

    with tempfile.TemporaryDirectory(prefix="counterguard-drain-") as tmp, PrivateBroker() as broker, \
            pty_pair() as (master, tty_path):
        tmp = Path(tmp)
        broker.stop()  # the centre's broker is down from the start
        # The product's resend interval (30 s), so a slow receipt cannot be mistaken for a lost one.
        cfg = gateway_config(tmp, broker_port=broker.port, serial_path=tty_path, republish_after_s=30.0)
        (tmp / "gateway.toml").write_text(config_toml(cfg))
        proc = subprocess.Popen([sys.executable, "-m", "counterguard", "run", "-c", str(tmp / "gateway.toml")],
                                cwd=ROOT, stdout=open(tmp / "gateway.log", "wb"), stderr=subprocess.STDOUT)
        receiver = None
        try:
            terminal = TellerTerminal(master, timeout=0.5, retries=180)
            terminal.send(intercept(counter=1, event_id="drain-warm"))
            terminal.timeout = 5
            t_fill = time.monotonic()
            terminal.send_many([intercept(counter=1 + i % 4, event_id=f"drain-{i}") for i in range(args.alerts)])
            fill_s = time.monotonic() - t_fill
            store = Store(cfg.store.path, synchronous="NORMAL")
            queued = store.outbox_depth()
            rss_before = peak_rss_mb(proc.pid)

            arrivals = []  # when each alert first reached the centre: the first says the gateway is sending
            receiver = Receiver("127.0.0.1", broker.port, client_id="bench-drain-centre",
                                on_alert=lambda body: arrivals.append(time.monotonic()))
            broker.start()
            t0 = time.monotonic()
            receiver.start()
            drained = wait_until(lambda: store.outbox_depth() == 0, timeout=max(60.0, args.alerts / 200), tick=0.02)
            t_end = time.monotonic()
            took = t_end - t0
            sending = t_end - arrivals[0] if arrivals else 0.0
            alerts_s = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
            left = store.outbox_depth()
            rss_after = peak_rss_mb(proc.pid)
            centre_alerts = len(receiver.alerts)
            duplicates = receiver.duplicates
            store.close()
        finally:
            proc.terminate()
            proc.wait(20)
            if receiver:
                receiver.stop()

    rate = (queued - left) / took if took else 0.0
    connected_rate = (queued - left) / sending if sending else 0.0
    alerts_rate = (len(arrivals) - 1) / alerts_s if alerts_s else 0.0
    print(f"Machine: {machine_line()}. `counterguard run` with synchronous=FULL, private mosquitto on loopback, "
          f"stand-in centre (`centre.receiver`) receipting every {receiver.receipt_every_s * 1000:.0f} ms.\n")
    print("| measure | result | goal |\n|---|---|---|")
    print(f"| alerts queued in the outbox with the broker down | {queued:,} (filled over the counter line in {fill_s:.1f} s) | - |")
    print(f"| drain: broker up to last outbox row receipted (reconnect back-off included) | {queued - left:,} in "
          f"{took:.2f} s = {rate:,.0f} alerts/s{'' if drained else f' (stopped waiting with {left:,} left)'} | - |")
    print(f"| drain once connected: first alert at the centre to last outbox row receipted | {queued - left:,} in "
          f"{sending:.2f} s = **{connected_rate:,.0f} alerts/s** | ≥ {GOAL:,}/s |")
    print(f"| alerts alone: first to last alert at the centre (event batches for learning follow them) | "
          f"{len(arrivals):,} in {alerts_s:.2f} s = {alerts_rate:,.0f} alerts/s | - |")
    print(f"| alerts at the centre / duplicates it dropped | {centre_alerts:,} / {duplicates:,} | each once |")
    print(f"| frame to lamp, single events, uplink idle: p50 / p99 | {lamp['idle']} | - |")
    print(f"| frame to lamp, single events, while the uplink drains {args.alerts:,} alerts "
          f"({lamp['drained']}): p50 / p99 | {lamp['burst']} | p99 as when idle |")
    print(f"| gateway peak RSS: after queuing / after draining | {rss_before:.0f} MB / {rss_after:.0f} MB | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
