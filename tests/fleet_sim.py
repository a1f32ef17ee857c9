"""A fleet of simulated branch gateways, for tests/test_fleet.py and bench/fleet.py.

Each simulated gateway is lightweight (one paho client, no SQLite, no serial line) but speaks to
the centre exactly as a real one does (docs/mqtt.md): alerts built by core/messages.py with the
gateway's own Event and Verdict types, an in-memory outbox that only the centre's receipts close, a
fresh clean session with a new ``bdseq`` and last will for every connection attempt, the retained
``online`` status and a heartbeat on every connection, everything unreceipted resent in ``seq``
order on each new connection and when the centre announces itself, and the uplink's own ``Backoff``
between attempts.

Hundreds of gateways share one process: a single loop polls all their sockets and drives paho's
``loop_read`` / ``loop_write`` / ``loop_misc`` itself (a thread per client would not fit on a Pi-sized
test machine). ``Fleet`` starts a few such worker processes and talks to them over stdin/stdout in
JSON lines:

    fleet = Fleet("127.0.0.1", broker.port, gateways=1000, processes=4).start()
    fleet.wait_for(lambda t: t["online"] == 1000, timeout=60)
    fleet.raise_alerts(per_gateway=5, over_s=8)
    ...
    reports = fleet.stop()          # per gateway: alerts sent (seq, alert_id), outbox left, connect times

Each worker is ``python tests/fleet_sim.py worker ...``; every time it reports is ``time.monotonic()``,
which on Linux is one clock for every process on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from counterguard.core import messages  # noqa: E402
from counterguard.core.decision import Verdict  # noqa: E402
from counterguard.core.events import Event  # noqa: E402
from counterguard.core.ulid import new_ulid  # noqa: E402
from counterguard.gateway.link.uplink import Backoff  # noqa: E402

CST = timezone(timedelta(hours=8))
REGIONS = ("610100", "610200", "610300", "610400")


def gateway_id(i: int) -> str:
    return f"gw-{i:05d}"


def placement(i: int) -> tuple[str, str]:
    """(region, branch) of simulated gateway ``i``: four regions, ten gateways per branch."""
    return REGIONS[i % len(REGIONS)], f"b{i // 10:04d}"


def alert_body(gateway: str, seq: int, now: float, rng: random.Random) -> tuple[str, str]:
    """(alert_id, body) of a new alert at one of the gateway's four counters, built with the gateway's
    own Event, Verdict and message builders."""
    counter = 1 + seq % 4
    level = "red" if rng.random() < 0.3 else "amber"
    event = Event(event_id=f"t{counter}-{seq:06d}", ts=datetime.now(CST), counter=counter,
                  kind="cash_withdrawal", account=f"62220202{rng.randrange(10**11):011d}",
                  amount=float(rng.choice((5000, 20000, 50000))))
    reasons = ("large_cash", "elderly_customer") if level == "red" else ("large_cash",)
    verdict = Verdict(event.event_id, level, 0.93 if level == "red" else 0.61, reasons, f"{level} warning", counter)
    stamp = SimpleNamespace(wall=time.time(), mono=now, synced=True)
    alert_id = new_ulid()
    return alert_id, messages.alert_body(alert_id, event, verdict, stamp, gateway_id=gateway,
                                         model_version="fraud-mlp-1", watchlist_version=1)


def status_body(gateway: str, state: str, bdseq: int) -> str:
    return messages.status_payload(state, bdseq=bdseq, stamp=SimpleNamespace(wall=time.time(), synced=True),
                                   gateway_id=gateway, fields={"model_version": "fraud-mlp-1", "watchlist_version": 1,
                                                               "software_version": "fleet-sim"})


def heartbeat_body(bdseq: int, now: float, created: list[float]) -> str:
    """A heartbeat for an outbox whose waiting rows were made at wall times ``created``."""
    oldest = min(created, default=None)
    wall = time.time()
    return messages.heartbeat_payload(stamp=SimpleNamespace(wall=wall, mono=now, synced=True), bdseq=bdseq,
                                      outbox_depth=len(created),
                                      oldest_unreceipted_age_s=None if oldest is None else wall - oldest,
                                      fields={"model_version": "fraud-mlp-1", "watchlist_version": 1})


# -- one simulated gateway ------------------------------------------------------------------------
class FleetGateway:
    """One branch gateway's MQTT side, driven by the worker's loop (no threads of its own)."""

    def __init__(self, index: int, host: str, port: int, *, backoff: Backoff, keepalive: int = 30,
                 heartbeat_s: float = 30.0, republish_after_s: float = 30.0, connect_timeout: float = 10.0,
                 window: int = 200):
        self.gateway_id = gateway_id(index)
        self.region, self.branch = placement(index)
        self.topics = messages.Topics(self.region, self.branch, self.gateway_id)
        self.host, self.port = host, port
        self.backoff = backoff
        self.keepalive, self.heartbeat_s = keepalive, heartbeat_s
        self.republish_after_s, self.connect_timeout, self.window = republish_after_s, connect_timeout, window
        self.bdseq = 0
        self.seq = 0
        # seq -> [stored body, created wall time, last sent (monotonic) or None]: closed only by receipts.
        self.outbox: dict[int, list] = {}
        self.sent: list[tuple[int, str, float]] = []  # every alert raised: (seq, alert_id, monotonic time)
        self.client: mqtt.Client | None = None
        self.state = "down"  # down -> connecting -> online -> down ...
        self.next_attempt = 0.0
        self.deadline = 0.0
        self.next_heartbeat = 0.0
        self.connects: list[float] = []  # monotonic time of every accepted connection (CONNACK)
        self.tried: list[float] = []  # when the back-off had scheduled the attempt behind each of them
        self.attempt_due = 0.0
        self.losses: list[float] = []  # monotonic time of every lost connection
        self.attempts = 0
        self.stalls: list[tuple[float, float]] = []  # (when, seconds) of TCP connects that blocked > 0.2 s
        self.refused = 0  # attempts the broker's port refused or did not answer
        self.publishes = 0  # outbox publishes, resends included
        self.centre_announcements = 0  # live "online" from the centre (each one resends the outbox)

    # -- outbox -----------------------------------------------------------------------------------
    def raise_alert(self, now: float, rng: random.Random) -> None:
        """A verdict at one of this branch's counters: the alert is in the outbox before anything is sent."""
        self.seq += 1
        alert_id, body = alert_body(self.gateway_id, self.seq, now, rng)
        self.outbox[self.seq] = [body, time.time(), None]
        self.sent.append((self.seq, alert_id, now))
        if self.state == "online":
            self._publish_pending(now)

    def _publish_pending(self, now: float) -> None:
        """Unsent (or long-unreceipted) rows in seq order, at most ``window`` in flight."""
        wall = time.time()
        in_flight = sum(1 for row in self.outbox.values()
                        if row[2] is not None and now - row[2] < self.republish_after_s)
        for seq in sorted(self.outbox):
            if in_flight >= self.window:
                break
            row = self.outbox[seq]
            if row[2] is not None and now - row[2] < self.republish_after_s:
                continue
            payload = messages.finalise(row[0], seq=seq, region=self.region, branch=self.branch,
                                        historical=wall - row[1] > 10)
            if self.client.publish(self.topics.alert, payload, qos=1).rc != mqtt.MQTT_ERR_SUCCESS:
                return  # the connection is gone; the row stays and goes out on the next one
            row[2] = now
            in_flight += 1
            self.publishes += 1

    def _resend_all(self, now: float) -> None:
        for row in self.outbox.values():
            row[2] = None
        self._publish_pending(now)

    # -- connection -------------------------------------------------------------------------------
    def _status(self, state: str) -> str:
        return status_body(self.gateway_id, state, self.bdseq)

    def _attempt(self, now: float) -> None:
        self.attempts += 1
        self.bdseq += 1  # every attempt is a new session with a will of its own
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.gateway_id, clean_session=True,
                             reconnect_on_failure=False)
        client.connect_timeout = self.connect_timeout
        client.max_inflight_messages_set(self.window)
        client.max_queued_messages_set(0)
        client.will_set(self.topics.status, self._status("offline"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client
        self.attempt_due = self.next_attempt  # the back-off's decision, whatever the loop's lag
        now = time.monotonic()  # the loop's clock may be behind if other connects blocked
        try:
            client.connect(self.host, self.port, keepalive=self.keepalive)
        except (OSError, ValueError):
            self.refused += 1
            self._lost(time.monotonic(), counted=False)
            return
        finally:
            blocked = time.monotonic() - now
            if blocked > 0.2:  # paho's TCP connect blocks: a full accept queue holds up this whole worker
                self.stalls.append((now, blocked))
        self.state = "connecting"
        self.deadline = now + self.connect_timeout

    def _lost(self, now: float, *, counted: bool = True) -> None:
        if counted:
            self.losses.append(now)
        client, self.client = self.client, None
        sock = client.socket() if client is not None else None
        if sock is not None:  # no goodbye (a failed attempt): drop the socket with the client
            try:
                sock.close()
            except OSError:
                pass
        self.state = "down"
        self.next_attempt = now + self.backoff.next()

    def tick(self, now: float) -> None:
        if self.state == "down" and now >= self.next_attempt:
            self._attempt(now)
        elif self.state == "connecting" and now >= self.deadline:
            self._lost(now, counted=False)  # no CONNACK in time: treat it as a failed attempt
        elif self.state == "online":
            if now >= self.next_heartbeat:
                self._heartbeat(now)
            if self.outbox:
                self._publish_pending(now)

    def _heartbeat(self, now: float) -> None:
        self.client.publish(self.topics.heartbeat, heartbeat_body(self.bdseq, now, [row[1] for row in self.outbox.values()]), qos=0)
        self.next_heartbeat = now + self.heartbeat_s

    # -- paho callbacks (called from the worker's loop) -------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if client is not self.client:
            return
        now = time.monotonic()
        if reason_code.is_failure:
            self._lost(now, counted=False)
            return
        self.state = "online"
        self.connects.append(now)
        self.tried.append(self.attempt_due)
        self.backoff.reset()
        client.subscribe([(self.topics.receipt, 0), (messages.CENTRE_STATUS, 0)])  # as the uplink does
        client.publish(self.topics.status, self._status("online"), qos=1, retain=True)
        self._heartbeat(now)
        # Whatever went out on the old connection may be lost with it: all of it again, in order.
        self._resend_all(now)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if client is self.client and self.state != "down":
            self._lost(time.monotonic(), counted=self.state == "online")

    def _on_message(self, client, userdata, msg) -> None:
        if client is not self.client:
            return
        if msg.topic == self.topics.receipt:
            for seq in messages.parse_receipt(msg.payload):
                self.outbox.pop(seq, None)
        elif msg.topic == messages.CENTRE_STATUS:
            # A retained "online" on subscribing is old news (this session already resent); a live one
            # means the centre is back and may have lost what it had not receipted.
            if messages.parse_centre_status(msg.payload) == "online" and not msg.retain:
                self.centre_announcements += 1
                client.publish(self.topics.status, self._status("online"), qos=1, retain=True)
                self._resend_all(time.monotonic())

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None and self.state == "online":
            client.disconnect()
            client.loop_write()
        self.state = "closed"

    def report(self) -> dict:
        return {"gateway_id": self.gateway_id, "region": self.region, "branch": self.branch, "sent": self.sent,
                "outbox": sorted(self.outbox), "connects": self.connects, "tried": self.tried, "losses": self.losses,
                "attempts": self.attempts, "publishes": self.publishes, "bdseq": self.bdseq,
                "stalls": self.stalls, "refused": self.refused,
                "centre_announcements": self.centre_announcements}


# -- a worker process: many gateways, one loop ----------------------------------------------------
def run_worker(args) -> None:
    rng = random.Random(args.seed)
    # Without jitter every gateway waits the whole window (plain exponential back-off): the control case.
    jitter = rng.random if args.jitter else (lambda: 1.0)
    gateways = [FleetGateway(i, args.host, args.port, backoff=Backoff(args.backoff_min, args.backoff_max, jitter),
                             heartbeat_s=args.heartbeat_s, republish_after_s=args.republish_after_s)
                for i in range(args.first, args.first + args.count)]
    start = time.monotonic()
    for gw in gateways:  # a fleet switched on together still does not connect in one instant
        gw.next_attempt = start + rng.random() * args.stagger_s
    due: list[tuple[float, FleetGateway]] = []  # alerts to raise: (when, gateway), soonest last
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    pending = b""
    stopping = False
    next_progress = next_misc = start
    out = sys.stdout

    def emit(kind: str, body) -> None:
        out.write(json.dumps({kind: body}) + "\n")
        out.flush()

    while not stopping:
        now = time.monotonic()
        while due and due[-1][0] <= now:
            due.pop()[1].raise_alert(now, rng)
        for gw in gateways:
            gw.tick(now)
        poller = select.poll()
        poller.register(stdin, select.POLLIN)
        by_fd = {}
        for gw in gateways:
            sock = gw.client.socket() if gw.client is not None else None
            if sock is not None:
                by_fd[sock.fileno()] = gw
                poller.register(sock, select.POLLIN | (select.POLLOUT if gw.client.want_write() else 0))
        for fd, mask in poller.poll(20):
            if fd == stdin:
                try:
                    chunk = os.read(stdin, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    stopping = True  # the parent went away
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    command = json.loads(line)
                    if command.get("stop"):
                        stopping = True
                    elif "raise" in command:
                        t0 = time.monotonic()
                        due += [(t0 + rng.random() * command["over_s"], gw)
                                for gw in gateways for _ in range(command["raise"])]
                        due.sort(key=lambda d: -d[0])
                continue
            gw = by_fd.get(fd)
            if gw is None or gw.client is None:
                continue
            client = gw.client
            if mask & (select.POLLIN | select.POLLERR | select.POLLHUP):
                client.loop_read()
            if gw.client is client and mask & select.POLLOUT:
                client.loop_write()
        if now >= next_misc:  # keepalive pings and dead-connection checks
            for gw in gateways:
                if gw.client is not None:
                    gw.client.loop_misc()
            next_misc = now + 1.0
        if now >= next_progress:
            emit("progress", {"online": sum(gw.state == "online" for gw in gateways),
                              "outbox": sum(len(gw.outbox) for gw in gateways),
                              "raised": sum(gw.seq for gw in gateways), "due": len(due),
                              "connects": sum(len(gw.connects) for gw in gateways)})
            next_progress = now + 0.25
    for gw in gateways:
        gw.close()
    emit("report", [gw.report() for gw in gateways])


# -- the parent's side ----------------------------------------------------------------------------
class Fleet:
    """``gateways`` simulated gateways split over ``processes`` worker processes."""

    def __init__(self, host: str, port: int, *, gateways: int = 1000, processes: int = 4,
                 backoff: tuple[float, float] = (1.0, 120.0), heartbeat_s: float = 30.0,
                 republish_after_s: float = 30.0, stagger_s: float = 2.0, seed: int = 20261125,
                 jitter: bool = True):
        self.host, self.port = host, port
        self.gateways, self.processes = gateways, max(1, min(processes, gateways))
        self.backoff, self.heartbeat_s, self.republish_after_s = backoff, heartbeat_s, republish_after_s
        self.stagger_s, self.seed, self.jitter = stagger_s, seed, jitter
        self._procs: list[subprocess.Popen] = []
        self._progress: dict[int, dict] = {}
        self._reports: dict[int, list] = {}
        self._errors: dict[int, list[str]] = {}
        self._cond = threading.Condition()

    def start(self) -> "Fleet":
        share, extra = divmod(self.gateways, self.processes)
        first = 0
        for p in range(self.processes):
            count = share + (1 if p < extra else 0)
            proc = subprocess.Popen(self.worker_command(p, first, count), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, cwd=ROOT)
            self._procs.append(proc)
            threading.Thread(target=self._read, args=(p, proc), daemon=True).start()
            threading.Thread(target=self._read_errors, args=(p, proc), daemon=True).start()
            first += count
        return self

    def worker_command(self, p: int, first: int, count: int) -> list[str]:
        """The command line of worker ``p``, which simulates gateways ``first`` .. ``first + count - 1``."""
        cmd = [sys.executable, str(Path(__file__).resolve()), "worker", "--host", self.host,
               "--port", str(self.port), "--first", str(first), "--count", str(count),
               "--seed", str(self.seed + p), "--backoff-min", str(self.backoff[0]),
               "--backoff-max", str(self.backoff[1]), "--heartbeat-s", str(self.heartbeat_s),
               "--republish-after-s", str(self.republish_after_s), "--stagger-s", str(self.stagger_s)]
        return cmd if self.jitter else cmd + ["--no-jitter"]

    def _read(self, p: int, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            message = json.loads(line)
            with self._cond:
                if "progress" in message:
                    self._progress[p] = message["progress"]
                else:
                    self._reports[p] = message["report"]
                self._cond.notify_all()

    def _read_errors(self, p: int, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            with self._cond:
                self._errors.setdefault(p, []).append(line.rstrip())

    def pids(self) -> list[int]:
        """The worker processes' ids (to read the CPU time they used)."""
        return [proc.pid for proc in self._procs]

    def errors(self) -> str:
        with self._cond:
            return "\n".join(f"worker {p}: {line}" for p, lines in self._errors.items() for line in lines[-20:])

    def totals(self) -> dict:
        """The fleet's latest progress summed over the worker processes."""
        with self._cond:
            keys = {k for progress in self._progress.values() for k in progress}
            return {k: sum(p.get(k, 0) for p in self._progress.values()) for k in keys} | {
                "workers": len(self._progress)}

    def wait_for(self, predicate, timeout: float) -> bool:
        """Wait (bounded) until ``predicate(totals)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self._progress) == len(self._procs) and predicate(self.totals()):
                return True
            if time.monotonic() >= deadline or any(p.poll() is not None for p in self._procs):
                return False
            with self._cond:
                self._cond.wait(0.1)

    def _send(self, command: dict) -> None:
        for proc in self._procs:
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()

    def raise_alerts(self, per_gateway: int, over_s: float) -> int:
        """Every gateway raises ``per_gateway`` alerts at random moments over the next ``over_s`` seconds."""
        self._send({"raise": per_gateway, "over_s": over_s})
        return per_gateway * self.gateways

    def stop(self, timeout: float = 60.0) -> list[dict]:
        """End every worker; returns one report per gateway."""
        for proc in self._procs:
            try:
                proc.stdin.write(json.dumps({"stop": True}) + "\n")
                proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        with self._cond:
            # A worker that has ended may still have its report in the pipe, not yet parsed by its reader.
            self._cond.wait_for(lambda: len(self._reports) == len(self._procs), max(5.0, deadline - time.monotonic()))
            missing = [p for p in range(len(self._procs)) if p not in self._reports]
            if missing:
                raise RuntimeError(f"fleet worker(s) {missing} ended without a report:\n{self.errors()}")
            return [gw for p in sorted(self._reports) for gw in self._reports[p]]

    def kill(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


# -- the centre, as deployed ----------------------------------------------------------------------
class Centre:
    """``counterguard centre run`` in its own process (intake workers, SQLite store, no dashboard)."""

    def __init__(self, host: str, port: int, store: str, *, workers: int = 2):
        self.store_path = store
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "counterguard", "centre", "run", "--host", host, "--port", str(port),
             "--store", store, "--workers", str(workers), "--no-dashboard", "--report-every", "1"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._started = threading.Event()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.errors), daemon=True).start()

    def _pump(self, stream, into) -> None:
        for line in stream:
            into.append(line.rstrip())
            if line.startswith("counterguard centre:"):
                self._started.set()

    def wait_started(self, timeout: float = 30.0) -> None:
        if not self._started.wait(timeout):
            raise RuntimeError("the centre did not start:\n" + "\n".join(self.errors[-20:]))

    def counts(self) -> dict:
        """The centre's latest stored / duplicates / quarantined totals (printed every second)."""
        for line in reversed(self.lines):
            if line.startswith("{"):
                return json.loads(line)
        return {"stored": 0, "duplicates": 0, "quarantined": 0}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# -- reading the run ------------------------------------------------------------------------------
def reconnect_delays(reports: list[dict], stopped_at: float, restarted_at: float) -> list[float | None]:
    """For each gateway, seconds from the broker being started again to its first session after the
    outage began (None for a gateway that never came back)."""
    delays = []
    for gw in reports:
        after = [t for t in gw["connects"] if t > stopped_at]
        delays.append(min(after) - restarted_at if after else None)
    return delays


def waits_after_loss(reports: list[dict], stopped_at: float) -> list[float | None]:
    """For each gateway, seconds from losing the broker to the moment its back-off had chosen for the
    attempt that got it back in: the back-off's own doing, whatever the broker and the machine (a
    worker process starts the attempts due at once one after the other) then take."""
    waits = []
    for gw in reports:
        lost = [t for t in gw["losses"] if t >= stopped_at]
        back = [a for a, c in zip(gw["tried"], gw["connects"]) if c > stopped_at]
        waits.append(min(back) - min(lost) if lost and back else None)
    return waits


def spread_problems(delays: list[float], waits: list[float]) -> list[str]:
    """Why these reconnects do not look spread by a jittered back-off (empty when they do). Without
    jitter every gateway waits the same 1 + 2 + 4 ... seconds after the loss and they all come back
    in one wave."""
    n = len(delays)
    problems = []
    first = sum(d < 1.0 for d in delays)
    if first >= n / 2:
        problems.append(f"{first} of {n} reconnected within the first second")
    slots: dict[int, int] = {}
    for d in delays:
        slots[int(d * 10)] = slots.get(int(d * 10), 0) + 1
    if max(slots.values()) >= n * 0.15:  # a loaded machine bunches some; a wave puts far more in one slice
        problems.append(f"{max(slots.values())} of {n} reconnected within one 100 ms")
    iqr = percentile(waits, 0.75) - percentile(waits, 0.25)
    if iqr < 1.0:
        problems.append(f"the waits from losing the broker to the successful attempt differ by only {iqr:.2f} s "
                        "between the quartiles (lockstep)")
    return problems


def histogram(values: list[float], *, bin_s: float = 0.5, width: int = 50) -> str:
    """A text histogram of reconnect delays, one line per ``bin_s`` seconds."""
    if not values:
        return "(no values)"
    bins = [0] * (int(max(values) / bin_s) + 1)
    for v in values:
        bins[int(v / bin_s)] += 1
    top = max(bins)
    lines = []
    for i, n in enumerate(bins):
        bar = "#" * (round(n / top * width) if n else 0)
        lines.append(f"{i * bin_s:5.1f}-{(i + 1) * bin_s:<5.1f} s {n:5d} {bar}")
    return "\n".join(lines)


def cpu_s(pids) -> float:
    """CPU seconds (user + system) the live processes ``pids`` have used since they started."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]




def ensure_fd_limit(gateways: int) -> int:
    """The broker holds one socket per gateway: raise this process's open-file limit (inherited by
    the broker it starts) to fit, or say what to change."""
    import resource

    need = gateways + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise RuntimeError(f"{gateways} gateways need about {need} open files in the broker, but the hard "
                               f"limit (ulimit -Hn) is {hard}; raise it (e.g. LimitNOFILE= or limits.conf)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        soft = need
    return soft


def fleet_view(store: str) -> list[dict]:
    """What the centre's staff see: ``counterguard centre fleet --json``."""
    done = subprocess.run([sys.executable, "-m", "counterguard", "centre", "fleet", "--store", store, "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"counterguard centre fleet failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


@dataclass
class FleetRun:
    """What one rehearsal recorded (times are ``time.monotonic()``)."""

    gateways: int
    alerts: int  # alerts the fleet was asked to raise
    reports: list[dict]  # one per gateway (FleetGateway.report)
    started_at: float
    online_at: float  # the whole fleet connected
    stopped_at: float  # broker stopped
    restarted_at: float  # broker started again
    back_at: float | None  # every gateway connected again
    drained_at: float | None  # every alert raised and every outbox empty
    stored_at: float | None  # the centre holds as many alerts as were raised
    centre_counts: dict = field(default_factory=dict)
    centre_errors: list[str] = field(default_factory=list)
    fleet_errors: str = ""

    def delays(self) -> list[float | None]:
        return reconnect_delays(self.reports, self.stopped_at, self.restarted_at)

    def waits(self) -> list[float | None]:
        return waits_after_loss(self.reports, self.stopped_at)

    def sent(self) -> dict[tuple[str, int], str]:
        """(gateway_id, seq) -> alert_id of every alert raised."""
        return {(gw["gateway_id"], seq): alert_id for gw in self.reports for seq, alert_id, _ in gw["sent"]}

    def raised_during_outage(self) -> int:
        return sum(1 for gw in self.reports for _, _, t in gw["sent"] if self.stopped_at <= t < self.restarted_at)


def rehearse_broker_restart(broker, store: str, *, gateways: int = 1000, processes: int = 4, per_gateway: int = 5,
                            outage_s: float = 4.0, backoff: tuple[float, float] = (1.0, 120.0), jitter: bool = True,
                            centre_workers: int = 2, timeout: float = 90.0, say=lambda line: None) -> FleetRun:
    """The fleet and the centre on ``broker`` (a PrivateBroker): every gateway connects, alerts flow,
    the broker is stopped once a quarter of them are raised and started again ``outage_s`` later,
    alerts keep coming before, during and after; returns when every outbox is empty and the centre
    holds every alert, or after ``timeout`` seconds of any phase (the run says which phase it reached)."""
    from counterguard.centre.store import open_store

    ensure_fd_limit(gateways)
    centre = Centre(broker.host, broker.port, store, workers=centre_workers)
    fleet = None
    try:
        centre.wait_started()
        started_at = time.monotonic()
        fleet = Fleet(broker.host, broker.port, gateways=gateways, processes=processes, backoff=backoff,
                      jitter=jitter).start()
        if not fleet.wait_for(lambda t: t["online"] == gateways, timeout):
            raise RuntimeError(f"the fleet did not come online within {timeout:.0f} s: {fleet.totals()}\n"
                               f"{fleet.errors()}")
        online_at = time.monotonic()
        say(f"{gateways} gateways online in {online_at - started_at:.1f} s")
        alerts = fleet.raise_alerts(per_gateway, over_s=outage_s + 6.0)
        fleet.wait_for(lambda t: t["raised"] >= alerts // 4, timeout)
        stopped_at = time.monotonic()
        broker.stop()
        say(f"broker stopped with {fleet.totals()['raised']} of {alerts} alerts raised")
        time.sleep(outage_s)  # the outage itself
        restarted_at = time.monotonic()
        broker.start()
        say(f"broker started again after {restarted_at - stopped_at:.1f} s")
        back = fleet.wait_for(lambda t: t["online"] == gateways, timeout)
        back_at = time.monotonic() if back else None
        drained = fleet.wait_for(lambda t: t["online"] == gateways and t["due"] == 0 and t["outbox"] == 0, timeout)
        drained_at = time.monotonic() if drained else None
        with open_store(store) as reader:
            deadline = time.monotonic() + timeout
            while reader.count("alert") < alerts and time.monotonic() < deadline:
                time.sleep(0.2)
            stored_at = time.monotonic() if reader.count("alert") >= alerts else None
        reports = fleet.stop()
        time.sleep(1.5)  # one more of the centre's once-a-second counts
        return FleetRun(gateways, alerts, reports, started_at, online_at, stopped_at, restarted_at, back_at,
                        drained_at, stored_at, centre.counts(), centre.errors[-20:], fleet.errors())
    finally:
        if fleet is not None:
            fleet.kill()
        centre.stop()


def worker_arguments(w: argparse.ArgumentParser) -> None:
    """The options every worker process takes from ``Fleet.worker_command``."""
    w.add_argument("--first", type=int, required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--backoff-min", type=float, default=1.0)
    w.add_argument("--backoff-max", type=float, default=120.0)
    w.add_argument("--heartbeat-s", type=float, default=30.0)
    w.add_argument("--republish-after-s", type=float, default=30.0)
    w.add_argument("--stagger-s", type=float, default=2.0)
    w.add_argument("--no-jitter", dest="jitter", action="store_false")


def _main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="one fleet worker process (started by Fleet)")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--host", required=True)
    w.add_argument("--port", type=int, required=True)
    worker_arguments(w)
    run_worker(parser.parse_args(argv))


if __name__ == "__main__":
    _main()
