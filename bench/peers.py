"""Peers, side by side: the same serial-lines-to-MQTT job through counterguard, mqtt-io and the
ThingsBoard IoT Gateway, one after the other against one private mosquitto on loopback.

For each system, a teller line (a real pty) carries counter events, one JSON event per line, and a
broker-side ledger counts which events arrived over MQTT and how often:

* counterguard: ``counterguard run`` with a config; the events travel as wire-protocol frames, each
  one is scored, stored (SQLite, synchronous=FULL) and answered; every event is a red intercept, so
  each one also becomes an alert that the stand-in centre (``centre.receiver``) stores and receipts.
* mqtt-io 2.7.0: its ``serial`` stream module publishes what it reads from the port.
* ThingsBoard IoT Gateway 3.8.5: its serial connector, one telemetry key per line, with its SQLite
  storage; the broker-side ledger answers the one RPC the gateway waits for (``getSessionLimits``).

Two phases per system: as fast as the line takes (lines/s delivered), then a paced stream during
which the broker is SIGKILLed and restarted on the same port (lost and duplicated lines). Peak
resident memory of each system's process is read from /proc before it is stopped.

    .venv/bin/python bench/peers.py [--lines 3000] [--outage-lines 1500] [--rate 250] [--down 3] [--lines-only]

Unless --lines-only, it then runs bench/scoring.py, bench/publish.py and bench/drain.py with their
defaults, so one command reproduces the whole "Peers, side by side" section.

The peers are installed into bench/.venv-peers on first use (see bench/peers/peerenv.py); nothing
of them enters the product's environment. Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench" / "peers"))

from linejob import Ledger, LineWriter, OutageBroker, peak_rss_mb, wait_until  # noqa: E402
from peerenv import machine_line, peer_version, peers_python  # noqa: E402

SETTLE_S = 30.0  # how long to wait for stragglers after the last line, at most


def stop_process(proc) -> None:
    """Ask a program to stop (SIGTERM), and kill it if it has not within 20 s."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class System:
    """One program under test: started on a pty path, fed events, read back through a ledger."""

    name = ""
    version = ""

    def start(self, tmp: Path, tty_path: str, master: int, port: int) -> None: ...
    def send(self, bodies: list[dict]) -> None: ...
    def counts(self) -> dict[str, int]: ...
    def duplicates_on_wire(self) -> int: ...
    def pid(self) -> int: ...
    def stop(self) -> None: ...
    def reset(self) -> None: ...


class PeerProgram(System):
    """A peer reading plain lines from the pty; the ledger is a broker-side subscriber."""

    topics: list[str] = []

    def __init__(self, python: Path):
        self.python = python
        self.proc = None
        self.writer = None
        self.ledger = None
        self.log = None

    def command(self, tmp: Path, tty_path: str, port: int) -> tuple[list[str], dict, Path]: ...

    def start(self, tmp, tty_path, master, port):
        self.ledger = Ledger(port, self.topics, client_id=f"ledger-{self.name}").start()
        argv, env, cwd = self.command(tmp, tty_path, port)
        self.log = tmp / f"{self.name}.log"
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        self.writer = LineWriter(master)
        # The peer may open the port (and flush it) some time after starting: offer warm-up lines
        # until one comes out the other side.
        n = 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start (code {self.proc.returncode}); see {self.log}")
            n += 1
            self.writer.write_line(json.dumps({"event_id": f"warm-{n}"}).encode() + b"\n", timeout=1)
            if wait_until(lambda: any(k.startswith("warm-") for k in self.ledger.counts), 0.5):
                return
        raise RuntimeError(f"{self.name} delivered nothing within 90 s; see {self.log}")

    def send(self, bodies):
        for body in bodies:
            self.writer.write_line(json.dumps(body, separators=(",", ":")).encode() + b"\n")
        self.writer.drain_input()

    def counts(self):
        return self.ledger.counts

    def duplicates_on_wire(self):
        return 0  # counted by the ledger itself

    def pid(self):
        return self.proc.pid

    def reset(self):
        self.ledger.reset()

    def stop(self):
        stop_process(self.proc)
        if self.ledger:
            self.ledger.stop()


class MqttIo(PeerProgram):
    name = "mqtt-io"
    topics = ["bench/mqtt-io/stream/#"]

    def command(self, tmp, tty_path, port):
        # YAML is a superset of JSON: the config is written as JSON to need no YAML writer here.
        config = {"mqtt": {"host": "127.0.0.1", "port": port, "client_id": "bench-mqtt-io",
                           "topic_prefix": "bench/mqtt-io", "keepalive": 10},
                  "options": {"install_requirements": False},
                  "stream_modules": [{"name": "counter", "module": "serial", "device": tty_path, "baud": 115200,
                                      "read_interval": 0.01}]}
        path = tmp / "mqtt-io.yml"
        path.write_text(json.dumps(config, indent=1))
        return [str(self.python), "-m", "mqtt_io", str(path)], dict(os.environ), tmp


class ThingsBoardGateway(PeerProgram):
    name = "ThingsBoard IoT Gateway"
    topics = ["v1/gateway/telemetry", "v1/devices/me/rpc/request/+"]

    def command(self, tmp, tty_path, port):
        conf = tmp / "tb" / "config"
        conf.mkdir(parents=True)
        package = Path(subprocess.run([str(self.python), "-c", "import thingsboard_gateway, os; "
                                       "print(os.path.dirname(thingsboard_gateway.__file__))"],
                                      capture_output=True, text=True, check=True).stdout.strip())
        shutil.copy(package / "config" / "logs.json", conf / "logs.json")
        main = {"thingsboard": {"host": "127.0.0.1", "port": port, "remoteShell": False, "remoteConfiguration": False,
                                "statistics": {"enable": False, "statsSendPeriodInSeconds": 60,
                                               "customStatsSendPeriodInSeconds": 3600},
                                "deviceFiltering": {"enable": False}, "maxPayloadSizeBytes": 8196,
                                "minPackSendDelayMS": 50, "minPackSizeToSend": 500,
                                "checkConnectorsConfigurationInSeconds": 60, "handleDeviceRenaming": True,
                                "security": {"type": "accessToken", "accessToken": "bench"}, "qos": 1,
                                "reportStrategy": {"type": "ON_RECEIVED"},
                                "checkingDeviceActivity": {"checkDeviceInactivity": False}},
                "storage": {"type": "sqlite", "data_file_path": str(tmp / "tb" / "data") + "/",
                            "messages_ttl_check_in_hours": 1, "messages_ttl_in_days": 7,
                            "max_read_records_count": 1000},
                "grpc": {"enabled": False},
                "connectors": [{"type": "serial", "name": "counter line", "configuration": "serial.json",
                                "class": "SerialConnector"}]}
        serial = {"name": "counter line", "logLevel": "INFO", "uplinkQueueSize": 100000,
                  "devices": [{"name": "counter-1", "type": "teller", "port": tty_path, "baudrate": 115200,
                               "converter": "SerialUplinkConverter", "delimiter": "\n",
                               "telemetry": [{"type": "string", "key": "line", "untilDelimiter": "\n"}]}]}
        (conf / "tb_gateway.json").write_text(json.dumps(main, indent=1))
        (conf / "serial.json").write_text(json.dumps(serial, indent=1))
        env = dict(os.environ, TB_GW_CONFIG_DIR=str(conf) + "/")
        return [str(self.python), "-m", "thingsboard_gateway.tb_gateway"], env, tmp / "tb"


class Counterguard(System):
    """The real gateway as its own process (``counterguard run``) and the stand-in centre."""

    name = "counterguard"

    def __init__(self):
        self.proc = None
        self.receiver = None
        self.terminal = None

    def start(self, tmp, tty_path, master, port):
        from counterguard.centre.receiver import Receiver
        from counterguard.gateway.counter.terminal import TellerTerminal
        from harness import config_toml, gateway_config

        self.receiver = Receiver("127.0.0.1", port, client_id="bench-centre")
        self.receiver.start()
        cfg = gateway_config(tmp, broker_port=port, serial_path=tty_path)
        (tmp / "counterguard.toml").write_text(config_toml(cfg))
        self.proc = subprocess.Popen([sys.executable, "-m", "counterguard", "run", "-c", str(tmp / "counterguard.toml")],
                                     cwd=ROOT, stdout=open(tmp / "counterguard.log", "wb"), stderr=subprocess.STDOUT)
        self.terminal = TellerTerminal(master, timeout=0.5, retries=180)
        self.send([warm(0)])
        self.terminal.timeout, self.terminal.retries = 5, 5

    def send(self, bodies):
        replies = self.terminal.send_many(bodies, window=64)
        bad = [r for r in replies if r is None or r.type != "ACK"]
        if bad:
            raise RuntimeError(f"counterguard did not ACK {len(bad)} of {len(bodies)} events: {bad[:3]}")

    def counts(self):
        counts: dict[str, int] = {}
        for alert in self.receiver.alerts:
            counts[alert["event_id"]] = counts.get(alert["event_id"], 0) + 1
        return counts

    def duplicates_on_wire(self):
        return self.receiver.duplicates

    def pid(self):
        return self.proc.pid

    def reset(self):
        pass  # event ids are unique per phase; the receiver's records accumulate

    def stop(self):
        stop_process(self.proc)
        if self.receiver:
            self.receiver.stop()


def warm(i: int) -> dict:
    from harness import intercept

    return intercept(counter=1, event_id=f"warm-{i}")


def bodies(prefix: str, n: int) -> list[dict]:
    """n red intercepts with ids ``prefix-i`` on four counters: each must become one alert."""
    from harness import intercept

    return [intercept(counter=1 + i % 4, event_id=f"{prefix}-{i}") for i in range(n)]


def settle(system: System, ids: list[str], timeout: float = SETTLE_S) -> None:
    """Wait until every line has arrived, or nothing new has come for 8 s, or the timeout."""
    deadline = time.monotonic() + timeout
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        counts = system.counts()
        got = sum(1 for i in ids if counts.get(i))
        if got == len(ids):
            return
        if got != last:
            last, quiet_since = got, time.monotonic()
        elif time.monotonic() - quiet_since > 8:
            return
        time.sleep(0.1)


def ledger(system: System, ids: list[str]) -> dict:
    counts = dict(system.counts())
    delivered = sum(1 for i in ids if counts.get(i))
    return {"sent": len(ids), "delivered": delivered, "lost": len(ids) - delivered,
            "duplicates": sum(counts[i] - 1 for i in ids if counts.get(i, 0) > 1) + system.duplicates_on_wire()}


def run_system(system: System, broker: OutageBroker, args, tmp: Path) -> dict:
    from harness import pty_pair

    result = {"system": system.name, "version": system.version}
    with pty_pair() as (master, tty_path):
        try:
            system.start(tmp, tty_path, master, broker.port)
            # Phase 1: as fast as the line takes.
            clean = bodies("clean", args.lines)
            ids = [b["event_id"] for b in clean]
            t0 = time.monotonic()
            system.send(clean)
            written = time.monotonic() - t0
            settle(system, ids)
            result["clean"] = ledger(system, ids)
            elapsed = _last_arrival(system, ids, t0)
            result["clean"]["lines_per_s"] = result["clean"]["delivered"] / elapsed if elapsed else 0.0
            result["clean"]["written_s"] = written
            # Phase 2: a paced stream with the broker SIGKILLed a third of the way in.
            system.reset()
            paced = bodies("outage", args.outage_lines)
            ids = [b["event_id"] for b in paced]
            chunk = max(1, args.rate // 20)
            kill_at, restarted = len(paced) // 3, False
            killed_at = None
            for start in range(0, len(paced), chunk):
                tick = time.monotonic()
                if start >= kill_at and killed_at is None:
                    broker.kill()
                    killed_at = time.monotonic()
                if killed_at and not restarted and time.monotonic() - killed_at >= args.down:
                    broker.start()
                    restarted = True
                system.send(paced[start:start + chunk])
                time.sleep(max(0.0, 0.05 - (time.monotonic() - tick)))
            if not restarted:
                time.sleep(max(0.0, args.down - (time.monotonic() - killed_at)))
                broker.start()
            settle(system, ids)
            result["outage"] = ledger(system, ids)
            result["peak_rss_mb"] = peak_rss_mb(system.pid())
        except Exception as e:  # a peer that cannot run is reported, not hidden
            result["error"] = f"{type(e).__name__}: {e}"
            if not broker.running:
                broker.start()
        finally:
            system.stop()
    return result


def _last_arrival(system: System, ids: list[str], t0: float) -> float:
    # Peers: the ledger stamps each arrival; counterguard: the receiver's records carry no local
    # arrival time, so settle() returning is the end (it polls every 0.1 s).
    ledger_ = getattr(system, "ledger", None)
    if ledger_ is not None and ledger_.last_arrival:
        return ledger_.last_arrival - t0
    return time.monotonic() - t0


def table(results: list[dict]) -> str:
    out = ["| system | lines/s delivered | clean run: lost / duplicated | broker killed mid-stream: "
           "delivered / lost / duplicated | peak RSS |", "|---|---:|---|---|---:|"]
    for r in results:
        name = f"{r['system']} {r['version']}".strip()
        if "error" in r and "clean" not in r:
            out.append(f"| {name} | did not run: {r['error']} | | | |")
            continue
        c, o = r["clean"], r.get("outage")
        outage = f"{o['delivered']:,} of {o['sent']:,} / {o['lost']:,} / {o['duplicates']:,}" if o else r.get("error", "")
        rss = f"{r['peak_rss_mb']:.0f} MB" if r.get("peak_rss_mb") else "-"
        out.append(f"| {name} | {c['lines_per_s']:,.0f} ({c['delivered']:,} of {c['sent']:,}) | "
                   f"{c['lost']:,} / {c['duplicates']:,} | {outage} | {rss} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=3000, help="events in the as-fast-as-possible phase")
    p.add_argument("--outage-lines", type=int, default=1500, help="events in the paced phase with the outage")
    p.add_argument("--rate", type=int, default=250, help="events/s in the paced phase")
    p.add_argument("--down", type=float, default=3.0, help="seconds the broker stays down")
    p.add_argument("--lines-only", action="store_true",
                   help="only the serial-lines-to-MQTT comparison (default: then scoring, publish and drain too)")
    p.add_argument("--only", choices=["counterguard", "mqtt-io", "thingsboard"], action="append",
                   help="run only these systems (default: all three)")
    args = p.parse_args(argv)

    python = peers_python()
    systems = []
    if not args.only or "counterguard" in args.only:
        cg = Counterguard()
        from importlib.metadata import version
        cg.version = version("counterguard")
        systems.append(cg)
    if not args.only or "mqtt-io" in args.only:
        m = MqttIo(python)
        m.version = peer_version(python, "mqtt-io")
        systems.append(m)
    if not args.only or "thingsboard" in args.only:
        t = ThingsBoardGateway(python)
        t.version = peer_version(python, "thingsboard-gateway")
        systems.append(t)

    results = []
    with tempfile.TemporaryDirectory(prefix="counterguard-peers-") as tmp, OutageBroker(persistence=True) as broker:
        for system in systems:
            d = Path(tmp) / system.name.split()[0].lower()
            d.mkdir()
            print(f"running {system.name} ...", file=sys.stderr, flush=True)
            results.append(run_system(system, broker, args, d))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(f"Machine: {machine_line()}. mosquitto on loopback (persistence, autosave every 1 s). "
          f"{args.lines:,} events as fast as the line takes; then {args.outage_lines:,} at {args.rate}/s with the "
          f"broker SIGKILLed a third of the way in and restarted {args.down:g} s later.\n")
    print(table(results))
    if not args.lines_only:
        for script in ("scoring.py", "publish.py", "drain.py"):
            print(f"\n`bench/{script}`\n", flush=True)
            subprocess.run([sys.executable, str(ROOT / "bench" / script)], cwd=ROOT, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
