"""A whole clustered centre broker on one machine: ``counterguard centre cluster up --nodes 3``.

Three nats-server nodes (Debian's ``nats-server`` package) with JetStream and MQTT, their ports
and data under one folder, for a developer's machine and CI; production runs the same configs on
three hosts (docs/cluster.md). ``up`` creates what is missing and starts what is not running:

    DIR/ca/           the centre CA (made once, unless --ca names an existing one)
    DIR/broker/       n1.conf.. nN.conf, the broker certificate, JetStream data nN/, logs nN.log
    DIR/centre/       the launcher's own centre worker certificate (centre.crt, centre.key)
    DIR/centre.toml   a centre config for 'counterguard centre serve --config DIR/centre.toml'
    DIR/cluster.json  nodes and ports, for 'status' and 'down'

Node i (from 0) listens on base+10i (NATS, centre workers), base+10i+1 (MQTT with mTLS, gateways),
base+10i+2 (routes) and base+10i+3 (monitoring: /healthz), all on 127.0.0.1. ``down`` stops
them (data kept); ``status`` says which node answers. After issuing a gateway certificate, run
``up`` again: it rewrites the permissions and reloads the running nodes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


DEFAULT_DIR = "centre-cluster"
DEFAULT_BASE_PORT = 14200


def node_ports(base_port: int, index: int):
    """(nats, mqtt, route, monitor) of node ``index``: the layout provisioning/nats_config.py writes."""
    p = base_port + 10 * index
    return Ports(client=p, mqtt=p + 1, route=p + 2, monitor=p + 3)


@dataclass(frozen=True)
class Ports:
    client: int
    mqtt: int
    route: int
    monitor: int


class ClusterError(RuntimeError):
    """The cluster cannot be started, stopped or read; the message says what to do."""


def find_nats_server() -> str:
    found = shutil.which("nats-server") or next((p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server")
                                                 if os.access(p, os.X_OK)), None)
    if not found:
        raise ClusterError("nats-server is not installed: run ./setup.sh (or 'apt-get install nats-server')")
    return found


@dataclass
class Cluster:
    dir: Path
    nodes: int = 3
    base_port: int = DEFAULT_BASE_PORT

    @classmethod
    def load(cls, directory) -> "Cluster":
        d = Path(directory)
        try:
            meta = json.loads((d / "cluster.json").read_text())
        except FileNotFoundError:
            raise ClusterError(f"{d}: no cluster here; start one with 'counterguard centre cluster up --dir {d}'") from None
        return cls(d, int(meta["nodes"]), int(meta["base_port"]))

    # -- where things are ------------------------------------------------------------------------
    @property
    def broker_dir(self) -> Path:
        return self.dir / "broker"

    def conf(self, i: int) -> Path:
        return self.broker_dir / f"n{i + 1}.conf"

    def pid_file(self, i: int) -> Path:
        return self.broker_dir / f"n{i + 1}.pid"

    def log_file(self, i: int) -> Path:
        return self.broker_dir / f"n{i + 1}.log"

    def mqtt_hosts(self) -> str:
        """The gateways' ``mqtt.host``: every node's MQTT listener."""
        return ", ".join(f"127.0.0.1:{node_ports(self.base_port, i).mqtt}" for i in range(self.nodes))

    def servers(self) -> list[str]:
        """The centre workers' NATS URLs."""
        return [f"tls://127.0.0.1:{node_ports(self.base_port, i).client}" for i in range(self.nodes)]

    def worker_tls(self) -> dict:
        c = self.dir / "centre"
        return {"ca_certs": str(self.broker_dir / "ca.crt"), "certfile": str(c / "centre.crt"),
                "keyfile": str(c / "centre.key")}

    # -- making -----------------------------------------------------------------------------------
    def prepare(self, ca_dir=None) -> None:
        """The CA, the launcher's worker certificate, the node configs and centre.toml (idempotent).
        The certificates and configs are provisioning's (a separate process: the centre never holds
        the CA key in memory)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "counterguard.provisioning.nats_config", str(self.dir),
                               str(self.nodes), str(self.base_port), str(ca_dir or "")],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise ClusterError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else
                               f"writing the node configs failed (exit {done.returncode})")
        ca_path = done.stdout.strip()
        (self.dir / "cluster.json").write_text(json.dumps({"nodes": self.nodes, "base_port": self.base_port,
                                                           "ca": ca_path}) + "\n")
        tls = self.worker_tls()
        servers = ", ".join(f'"{s}"' for s in self.servers())
        (self.dir / "centre.toml").write_text(
            "# The centre on this cluster: counterguard centre serve --config THIS_FILE\n"
            f'[broker]\nengine = "jetstream"\nservers = [{servers}]\n'
            f'ca = "{Path(tls["ca_certs"]).resolve()}"\ncert = "{Path(tls["certfile"]).resolve()}"\n'
            f'key = "{Path(tls["keyfile"]).resolve()}"\n\n'
            f'[store]\nurl = "{(self.dir / "centre.db").resolve()}"   # or postgresql://... for several hosts\n')

    # -- running ----------------------------------------------------------------------------------
    def pid(self, i: int) -> int | None:
        try:
            pid = int(self.pid_file(i).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        try:  # a pid reused by another program is not our node
            if b"nats-server" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return None
        except OSError:
            pass
        return pid

    def healthy(self, i: int) -> bool:
        url = f"http://127.0.0.1:{node_ports(self.base_port, i).monitor}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return json.loads(r.read()).get("status") == "ok"
        except (OSError, ValueError):
            return False

    def start_node(self, i: int) -> None:
        if self.pid(i):
            os.kill(self.pid(i), signal.SIGHUP)  # running: read the new permissions
            return
        log = open(self.log_file(i), "ab")
        try:
            subprocess.Popen([find_nats_server(), "-c", str(self.conf(i))], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()

    def kill_node(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Stop node i at once (fault tests); its data stays."""
        pid = self.pid(i)
        if pid:
            os.kill(pid, sig)
            _wait(lambda: self.pid(i) is None, 10)

    def wait_healthy(self, timeout: float = 30.0, nodes=None) -> bool:
        nodes = range(self.nodes) if nodes is None else nodes
        return _wait(lambda: all(self.healthy(i) for i in nodes), timeout)

    def up(self, ca_dir=None, timeout: float = 30.0) -> None:
        find_nats_server()
        self.prepare(ca_dir)
        for i in range(self.nodes):
            self.start_node(i)
        if not self.wait_healthy(timeout):
            bad = [f"n{i + 1}" for i in range(self.nodes) if not self.healthy(i)]
            raise ClusterError(f"node(s) {', '.join(bad)} did not come up within {timeout:.0f} s; "
                               f"see {self.broker_dir}/n*.log")
        for i in range(self.nodes):
            if not _wait(lambda: self.mqtt_ready(i), timeout):
                raise ClusterError(f"node n{i + 1} does not take MQTT sessions; see {self.log_file(i)}")
        # Those first sessions made the replicated MQTT streams: healthy again once every replica has them.
        if not self.wait_healthy(timeout):
            bad = [f"n{i + 1}" for i in range(self.nodes) if not self.healthy(i)]
            raise ClusterError(f"node(s) {', '.join(bad)} did not settle after the MQTT streams were made within "
                               f"{timeout:.0f} s; see {self.broker_dir}/n*.log")

    def mqtt_ready(self, i: int, timeout: float = 10.0) -> bool:
        """Node i accepts an MQTT session (with the launcher's centre certificate). The first MQTT
        session on a new cluster makes nats-server create its replicated MQTT streams; gateways
        racing for that on a fresh cluster time out, so ``up`` makes them first."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        tls = self.worker_tls()
        done = threading.Event()
        result = {}
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cluster-check-n{i + 1}", clean_session=True)
        client.tls_set(ca_certs=tls["ca_certs"], certfile=tls["certfile"], keyfile=tls["keyfile"])
        client.on_connect = lambda c, u, f, rc, p: (result.update(ok=not rc.is_failure), done.set())
        try:
            client.connect("127.0.0.1", node_ports(self.base_port, i).mqtt)
        except OSError:
            return False
        client.loop_start()
        try:
            return done.wait(timeout) and result.get("ok", False)
        finally:
            client.disconnect()
            client.loop_stop()

    def down(self, timeout: float = 10.0) -> None:
        for i in range(self.nodes):
            pid = self.pid(i)
            if pid:
                os.kill(pid, signal.SIGTERM)
        if not _wait(lambda: all(self.pid(i) is None for i in range(self.nodes)), timeout):
            for i in range(self.nodes):
                self.kill_node(i)

    def status(self, settle_s: float = 5.0) -> list[dict]:
        """Each node's state. A running node's health check fails for a moment while one of its
        replicated streams catches up with a new leader, so a running node that is not ready is
        asked again for up to ``settle_s`` before it is reported so."""
        rows = []
        for i in range(self.nodes):
            p = node_ports(self.base_port, i)
            healthy = self.healthy(i) or (bool(self.pid(i)) and _wait(lambda: self.healthy(i), settle_s))
            rows.append({"node": f"n{i + 1}", "pid": self.pid(i), "healthy": healthy,
                         "mqtt": p.mqtt, "nats": p.client, "monitor": p.monitor})
        return rows


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


# -- the command ---------------------------------------------------------------------------------
def command(args) -> int:
    """``counterguard centre cluster up|down|status``."""
    try:
        if args.action == "up":
            c = Cluster(Path(args.dir), nodes=args.nodes, base_port=args.base_port)
            c.up(ca_dir=args.ca)
            print(f"counterguard centre cluster: {c.nodes} nodes up in {c.dir}")
            print(f"  gateways:  [mqtt] host = \"{c.mqtt_hosts()}\" (with certificates from {c.dir}/ca)")
            print(f"  centre:    counterguard centre serve --config {c.dir}/centre.toml")
            return 0
        c = Cluster.load(args.dir)
        if args.action == "down":
            c.down()
            print(f"counterguard centre cluster: stopped {c.nodes} nodes in {c.dir} (data kept)")
            return 0
        rows = c.status()
        for r in rows:
            state = "healthy" if r["healthy"] else ("running, not ready" if r["pid"] else "stopped")
            print(f"{r['node']}  {state:<18} mqtt 127.0.0.1:{r['mqtt']}  nats {r['nats']}  pid {r['pid'] or '-'}")
        return 0 if all(r["healthy"] for r in rows) else 1
    except ClusterError as exc:
        print(f"counterguard centre cluster: {exc}")
        return 2


def add_parser(cmds) -> None:
    p = cmds.add_parser("cluster", help="run a clustered centre broker (NATS, 3 nodes) on this machine",
                        description="Start, stop or check a NATS JetStream + MQTT cluster with the centre's "
                                    "certificates and per-gateway permissions, ports and data under one "
                                    "folder (docs/cluster.md).")
    p.add_argument("action", choices=("up", "down", "status"),
                   help="up: start the nodes (making configs and certificates on first use); down: stop them; "
                        "status: one line per node, exit 1 unless all are healthy")
    p.add_argument("--nodes", type=int, default=3, help="nodes to run (default 3; 3 survives one lost node)")
    p.add_argument("--dir", default=DEFAULT_DIR, help=f"the cluster's folder (default ./{DEFAULT_DIR})")
    p.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                   help=f"first port; node i uses base+10i .. base+10i+3 (default {DEFAULT_BASE_PORT})")
    p.add_argument("--ca", help="an existing centre CA folder (default: DIR/ca, made on first 'up')")
    p.set_defaults(func=command)
