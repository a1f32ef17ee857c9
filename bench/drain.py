"""Outbox drain after an outage: a real gateway (``counterguard run``) raises N red alerts over its
counter line while the broker is down, so all N wait in its SQLite outbox; then the broker comes
back with the stand-in centre receipting, and the drain is timed from the broker accepting
connections to the last outbox row closed by a receipt. Goal: at least 2,000 alerts/s.

    .venv/bin/python bench/drain.py [--alerts 20000]

Also reports what the centre received (each alert once, duplicates the centre dropped) and the
gateway process's peak memory. Prints a Markdown table for docs/benchmarks.md.
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

GOAL = 2000


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--alerts", type=int, default=20000, help="alerts queued during the outage")
    args = p.parse_args(argv)

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

            receiver = Receiver("127.0.0.1", broker.port, client_id="bench-drain-centre")
            broker.start()
            t0 = time.monotonic()
            receiver.start()
            drained = wait_until(lambda: store.outbox_depth() == 0, timeout=max(60.0, args.alerts / 200), tick=0.02)
            took = time.monotonic() - t0
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
    print(f"Machine: {machine_line()}. `counterguard run` with synchronous=FULL, private mosquitto on loopback, "
          f"stand-in centre (`centre.receiver`) receipting every {receiver.receipt_every_s * 1000:.0f} ms.\n")
    print("| measure | result | goal |\n|---|---|---|")
    print(f"| alerts queued in the outbox with the broker down | {queued:,} (filled over the counter line in {fill_s:.1f} s) | - |")
    print(f"| drain: broker up to last outbox row receipted | {queued - left:,} in {took:.2f} s = **{rate:,.0f} alerts/s**"
          f"{'' if drained else f' (stopped waiting with {left:,} left)'} | ≥ {GOAL:,}/s |")
    print(f"| alerts at the centre / duplicates it dropped | {centre_alerts:,} / {duplicates:,} | each once |")
    print(f"| gateway peak RSS: after queuing / after draining | {rss_before:.0f} MB / {rss_after:.0f} MB | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
