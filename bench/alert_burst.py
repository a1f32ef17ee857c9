"""What a burst of alerts costs the counter line, and how much of it is the link to the centre.

The all-alert job of bench/peers.py (every event a red intercept, the terminal pipelining 64
frames) through a gateway in this process, alternately with the centre connected (a private
mosquitto and the stand-in centre, `counterguard receiver`, in a process of its own, receipting
every alert) and with no broker to reach (the uplink waits to reconnect and sends nothing). On a
branch the broker and the centre run on other machines; here they share the cores with the
gateway, as in bench/peers.py.

    .venv/bin/python bench/alert_burst.py [--alerts 3000] [--rounds 3]

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


def lines_per_s(tmp: Path, port: int, alerts: int) -> float:
    """Lines the counter line takes off the pty per second, every one an alert."""
    from gpiozero.pins.mock import MockFactory

    from counterguard.gateway.counter.terminal import TellerTerminal
    from counterguard.gateway.ops.app import Gateway
    from harness import gateway_config, intercept, pty_pair

    tmp.mkdir(parents=True)
    with pty_pair() as (master, path):
        cfg = gateway_config(tmp, broker_port=port, serial_path=path).with_changes("upload", events=False)
        gw = Gateway(cfg, pin_factory=MockFactory())
        gw.start()
        try:
            terminal = TellerTerminal(master, timeout=5)
            bodies = [intercept(counter=1 + i % 4) for i in range(alerts + 200)]
            terminal.send_many(bodies[:200], window=64)  # warm up
            t0 = time.perf_counter()
            replies = terminal.send_many(bodies[200:], window=64)
            rate = alerts / (time.perf_counter() - t0)
            if any(r is None or r.type != "ACK" for r in replies):
                raise RuntimeError("the gateway did not ACK every alert")
            return rate
        finally:
            gw.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=3000, help="alerts a round (default 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds with the centre and without, alternated (default 3)")
    args = parser.parse_args()

    from counterguard.gateway.link.broker import PrivateBroker, free_port

    rates: dict[str, list[float]] = {"connected": [], "unreachable": []}
    with tempfile.TemporaryDirectory() as tmp, PrivateBroker() as broker:
        tmp = Path(tmp)
        centre = subprocess.Popen([sys.executable, "-m", "counterguard", "receiver", "--port", str(broker.port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            time.sleep(2.0)  # the stand-in centre subscribes before the first alert
            for r in range(args.rounds):
                rates["connected"].append(lines_per_s(tmp / f"connected-{r}", broker.port, args.alerts))
                # nothing listens on a free port: the uplink is refused at once and backs off
                rates["unreachable"].append(lines_per_s(tmp / f"unreachable-{r}", free_port(), args.alerts))
        finally:
            centre.terminate()
            centre.wait(20)

    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{date.today().isoformat()}\n")
    print("| the centre | lines/s taken off the counter line, every one an alert (median) | runs |\n|---|---:|---|")
    names = {"connected": "connected: broker and stand-in centre on this machine, every alert sent and receipted",
             "unreachable": "unreachable: no broker, the alerts wait in the outbox"}
    for key, values in rates.items():
        print(f"| {names[key]} | {statistics.median(values):,.0f} | {', '.join(f'{v:,.0f}' for v in values)} |")


if __name__ == "__main__":
    main()
