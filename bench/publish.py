"""paho-mqtt (the client the gateway's uplink uses) against Debian's ``mosquitto_pub``: how fast each
gets N alert-sized messages through a private mosquitto on loopback to a subscriber, at QoS 0 and
QoS 1, and the publisher process's peak memory. ``mosquitto_pub -l`` publishes one message per
stdin line from one connection, the fair match for one client publishing many messages.

    .venv/bin/python bench/publish.py [--messages 20000]

``mosquitto_pub`` comes with Debian's mosquitto-clients, which setup.sh does not install (the
product does not need it): ``apt-get install mosquitto-clients`` for this benchmark.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "peers"))
sys.path.insert(0, str(ROOT / "tests"))

from linejob import peak_rss_mb  # noqa: E402
from peerenv import machine_line  # noqa: E402

PUBLISHER = ROOT / "bench" / "peers" / "paho_publisher.py"


class Counter:
    """Subscriber counting arrivals on one topic, stamping the last one."""

    def __init__(self, port: int, topic: str, qos: int):
        self.n = 0
        self.last = 0.0
        self.done = threading.Event()
        self.expect = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-counter-{topic.replace('/', '-')}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos)
        self.client.loop_start()
        time.sleep(0.3)  # let the SUBACK through before anyone publishes

    def _on_message(self, client, userdata, msg) -> None:
        self.n += 1
        self.last = time.monotonic()
        if self.n >= self.expect:
            self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def timed(argv: list[str], counter: Counter, n: int, stdin_file=None) -> dict:
    counter.expect = n
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=stdin_file or subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    # Sampled from /proc while it runs: a forked child's ru_maxrss would still count the
    # Python parent it was forked from, even after exec.
    hwm = 0.0
    while proc.poll() is None:
        hwm = max(hwm, peak_rss_mb(proc.pid) or 0.0)
        time.sleep(0.01)
    counter.done.wait(60)
    took = (counter.last or time.monotonic()) - t0
    return {"received": counter.n, "sent": n, "per_s": counter.n / took if took > 0 else 0.0,
            "peak_rss_mb": hwm, "exit": proc.returncode,
            "stderr": proc.stderr.read().decode(errors="replace").strip()[-200:]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=3, help="runs of each; the median is shown")
    args = p.parse_args(argv)

    from counterguard.gateway.link.broker import PrivateBroker
    from harness import intercept

    # An alert-sized payload: one line of JSON, as mosquitto_pub -l needs.
    payload = json.dumps({"type": "alert", "level": "red", "reasons": ["elderly_large_cash", "on_phone"],
                          "event": intercept(event_id="bench-0")}, separators=(",", ":")).encode()
    mosquitto_pub = shutil.which("mosquitto_pub")
    rows = []
    with tempfile.TemporaryDirectory(prefix="counterguard-publish-") as tmp, PrivateBroker() as broker:
        single = Path(tmp) / "payload.bin"
        single.write_bytes(payload)
        lines = Path(tmp) / "lines.txt"
        lines.write_bytes((payload + b"\n") * args.messages)
        for qos in (0, 1):
            runs = {"paho-mqtt": [], "mosquitto_pub -l": []}
            for attempt in range(args.repeat):
                topic = f"bench/paho/q{qos}/{attempt}"
                counter = Counter(broker.port, topic, qos)
                runs["paho-mqtt"].append(timed([sys.executable, str(PUBLISHER), str(broker.port), topic,
                                                str(args.messages), str(qos), str(single)], counter, args.messages))
                counter.close()
                if mosquitto_pub:
                    topic = f"bench/mosquitto_pub/q{qos}/{attempt}"
                    counter = Counter(broker.port, topic, qos)
                    with open(lines, "rb") as stdin:
                        runs["mosquitto_pub -l"].append(timed([mosquitto_pub, "-h", "127.0.0.1", "-p", str(broker.port),
                                                               "-t", topic, "-q", str(qos), "-l"],
                                                              counter, args.messages, stdin))
                    counter.close()
            labels = {"paho-mqtt": f"paho-mqtt {version('paho-mqtt')}", "mosquitto_pub -l": "mosquitto_pub -l (mosquitto-clients)"}
            for name, results in runs.items():
                if results:  # the median run by rate; the worst delivery count of any run
                    median = sorted(results, key=lambda r: r["per_s"])[len(results) // 2]
                    median["received"] = min(r["received"] for r in results)
                    rows.append((labels[name], qos, median))
    print(f"Machine: {machine_line()}. {args.messages:,} messages of {len(payload)} bytes, publisher -> private "
          f"mosquitto -> one subscriber, all on loopback; timed from starting the publisher to the last arrival; median of {args.repeat} runs.\n")
    print("| publisher | QoS | delivered | messages/s | peak RSS of the publisher |\n|---|---:|---:|---:|---:|")
    for name, qos, r in rows:
        print(f"| {name} | {qos} | {r['received']:,} of {r['sent']:,} | {r['per_s']:,.0f} | {r['peak_rss_mb']:.1f} MB |")
    if not mosquitto_pub:
        print("\nmosquitto_pub is not installed (setup.sh does not install mosquitto-clients); "
              "apt-get install mosquitto-clients to compare.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
