"""What the fault-injection suite (tests/test_faults.py) shares: the real centre intake on a SQLite
file, a teller terminal that keeps resending until every event has its ACK, the ways faults are
injected (SIGKILL by PID, a small tmpfs that fills up, a pty pulled mid-frame) and the ledger every
fault test ends with."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import termios
import tty
import threading
import time
from dataclasses import dataclass, field

from counterguard.centre.ingest import IngestWorker
from counterguard.centre.store import open_store
from counterguard.core import wire
from counterguard.gateway.counter.terminal import TellerTerminal, TerminalError

from conftest import wait_until
from harness import event, intercept, mule


# -- traffic -----------------------------------------------------------------------------------------
def branch_day(n: int, *, prefix: str, alert_every: int = 4) -> list[dict]:
    """``n`` events across four counters; every ``alert_every``-th is an alert (red intercept, or a
    watchlisted mule cashing out), the rest ordinary withdrawals. Event ids start with ``prefix``."""
    bodies = []
    for i in range(n):
        counter = 1 + i % 4
        eid = f"{prefix}-{i:05d}"
        if i % alert_every == 0:
            bodies.append(mule(counter=counter, event_id=eid) if i % (2 * alert_every) else
                          intercept(counter=counter, event_id=eid))
        else:
            bodies.append(event(counter=counter, amount=200 + i % 900, event_id=eid,
                                account=f"62220202{i % 97:011d}"))
    return bodies


class Teller:
    """A teller terminal on the master side of a pty that resends every event until it has an ACK.

    ``acked`` maps event_id -> ACK body (what the teller was told); a resend must get the same ACK.
    ``busy`` counts ``busy`` NAKs (the gateway could not store the event and asked for a resend)."""

    def __init__(self, fd: int, *, timeout: float = 1.0):
        self.terminal = TellerTerminal(fd, timeout=timeout, retries=0)
        self.acked: dict[str, dict] = {}
        self.busy = 0
        self.naks: list[dict] = []
        self.lost_replies = 0

    def attach(self, fd: int) -> None:
        """The same teller on a re-plugged line (a new pty); what it was told is kept."""
        self.terminal = TellerTerminal(fd, timeout=self.terminal.timeout, retries=0)

    def offer(self, bodies: list[dict], window: int = 20) -> list[dict]:
        """One try at each of ``bodies`` not yet ACKed; returns those still not ACKed."""
        todo = [b for b in bodies if b["event_id"] not in self.acked]
        left = []
        for start in range(0, len(todo), window):
            chunk = todo[start:start + window]
            try:
                replies = self.terminal.send_many(chunk, window=window)
            except TerminalError:
                # No answer (the gateway or the line is away): stop here and let the caller decide;
                # some of the chunk may have been stored, and a resend gets the same ACK back.
                self.lost_replies += 1
                self.reset()
                return left + todo[start:]
            for body, reply in zip(chunk, replies):
                if reply.type == "ACK":
                    earlier = self.acked.setdefault(body["event_id"], reply.body)
                    assert earlier == reply.body, f"{body['event_id']}: a resend got a different ACK"
                else:
                    self.naks.append(reply.body)
                    self.busy += reply.body.get("code") == "busy"
                    left.append(body)
        return left

    def send_all(self, bodies: list[dict], *, timeout: float = 60.0, window: int = 20, pause: float = 0.2) -> None:
        """Resend until every event is ACKed (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        left = bodies
        while True:
            left = self.offer(left, window)
            if not left:
                return
            assert time.monotonic() < deadline, f"{len(left)} event(s) never ACKed, e.g. {left[0]['event_id']}"
            time.sleep(pause)

    def reset(self) -> None:
        """Forget half-read frames (after the gateway or the line went away)."""
        self.terminal.decoder.reset()
        self.terminal.pending.clear()

    def wait_for_gateway(self, timeout: float = 60.0) -> bool:
        """True once the gateway's heartbeat arrives on the line (it is up and reading)."""
        self.terminal.heartbeats = 0
        deadline = time.monotonic() + timeout
        while self.terminal.heartbeats == 0 and time.monotonic() < deadline:
            self.terminal.read(0.1)
        return self.terminal.heartbeats > 0


def cut_frame(body: dict, seq: int, at: float) -> tuple[bytes, bytes]:
    """An EVT frame split at fraction ``at`` of its length: (what got through, what was lost)."""
    frame = wire.encode_frame("EVT", seq, body)
    n = max(1, min(len(frame) - 2, int(len(frame) * at)))
    return frame[:n], frame[n:]


# -- the centre --------------------------------------------------------------------------------------
class Centre:
    """The real centre intake (centre/ingest.py) storing to its SQLite file; ``down()``/``up()`` take it
    off the broker and back, as a centre maintenance window would."""

    def __init__(self, path, broker):
        self.path = str(path)
        self.broker = broker
        self.worker: IngestWorker | None = None
        self.reader = None

    def up(self) -> "Centre":
        self.worker = IngestWorker(open_store(self.path), host=self.broker.host, port=self.broker.port,
                                   client_id="centre-faults").start(timeout=30)
        if self.reader is None:
            self.reader = open_store(self.path)
        return self

    def down(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker.store.close()
            self.worker = None

    def close(self) -> None:
        self.down()
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def records(self, kind: str = "alert") -> list[dict]:
        """Every stored record of ``kind``, in the order the centre stored them."""
        out, after = [], 0
        while True:
            page = self.reader.records(after=after, kind=kind, limit=2000)
            if not page:
                return out
            out += page
            after = page[-1]["id"]

    def count(self, kind: str = "alert") -> int:
        return self.reader.count(kind)

    def events(self) -> list[dict]:
        """Every event uploaded for learning, in event-time order."""
        return self.reader.events()


# -- the ledger ------------------------------------------------------------------------------------
@dataclass
class Ledger:
    sent: int
    verdicts: int
    alerts_raised: int
    alerts_at_centre: int
    outbox_open: int
    levels: dict = field(default_factory=dict)
    events_at_centre: int = 0

    def __str__(self) -> str:
        return (f"events sent {self.sent} = verdicts stored {self.verdicts} = uploaded to the centre "
                f"{self.events_at_centre} (each once); alerts raised {self.alerts_raised} = "
                f"alerts at the centre {self.alerts_at_centre} (each once); outbox open {self.outbox_open}; "
                f"levels {self.levels}")


def gateway_db(path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    db.execute("PRAGMA busy_timeout=30000")
    return db


def outbox_open(path, kind: str | None = None) -> int:
    """Unreceipted outbox rows (of one kind: alert, ack, outcome, escalation, events)."""
    with gateway_db(path) as db:
        if kind is None:
            return db.execute("SELECT count(*) FROM outbox WHERE receipted_wall IS NULL").fetchone()[0]
        return db.execute("SELECT count(*) FROM outbox WHERE receipted_wall IS NULL AND kind = ?", (kind,)).fetchone()[0]


def assert_ledger(store_path, teller: Teller, bodies: list[dict], centre: Centre, *, timeout: float = 60.0) -> Ledger:
    """The books every fault test must balance:
    every event sent was ACKed and has exactly the verdict the teller was told; every amber/red
    verdict raised exactly one alert; the centre stored each alert once (no duplicates, none missing);
    the gateway's outbox is empty (everything receipted)."""
    sent = {b["event_id"] for b in bodies}
    assert set(teller.acked) == sent, f"{len(sent - set(teller.acked))} event(s) were never ACKed"
    with gateway_db(store_path) as db:
        verdicts = dict(db.execute("SELECT event_id, level FROM verdicts"))
        raised = db.execute("SELECT alert_id, event_id, seq FROM alerts").fetchall()
    assert verdicts == {e: teller.acked[e]["level"] for e in sent}, "verdicts on disk differ from what tellers were told"
    expected_alerts = {e for e in sent if teller.acked[e]["level"] != "green"}
    assert sorted(e for _, e, _ in raised) == sorted(expected_alerts), "an alert is missing or was raised twice"
    alert_ids = {a for a, _, _ in raised}
    ok = wait_until(lambda: centre.count("alert") >= len(alert_ids) and outbox_open(store_path) == 0, timeout, tick=0.1)
    at_centre = centre.records("alert")
    assert ok, (f"after {timeout:.0f} s the centre has {len(at_centre)} of {len(alert_ids)} alerts and "
                f"{outbox_open(store_path)} outbox row(s) are open")
    ids = [r["alert_id"] for r in at_centre]
    assert len(ids) == len(set(ids)), "an alert was stored twice at the centre"
    assert set(ids) == alert_ids
    keys = [(r["gateway_id"], r["seq"]) for kind in ("alert", "ack", "outcome", "escalation") for r in centre.records(kind)]
    assert len(keys) == len(set(keys)), "a record was stored twice at the centre"
    # Events for learning: every verdict reaches the centre once, with the level the teller was told,
    # and no account number in clear.
    ok = wait_until(lambda: centre.reader.event_count() >= len(sent) and outbox_open(store_path) == 0, timeout, tick=0.2)
    uploaded = centre.events()
    assert ok, f"after {timeout:.0f} s the centre has {len(uploaded)} of {len(sent)} events for learning"
    assert sorted(e["event_id"] for e in uploaded) == sorted(sent), "an event is missing or was stored twice"
    assert {e["event_id"]: e["level"] for e in uploaded} == verdicts
    accounts = {b["account"] for b in bodies}
    assert not accounts & {e["account_hash"] for e in uploaded}
    assert all(e["account_hash"] and len(e["account_hash"]) == 64 and e["features"] for e in uploaded)
    levels: dict = {}
    for v in verdicts.values():
        levels[v] = levels.get(v, 0) + 1
    return Ledger(len(sent), len(verdicts), len(alert_ids), len(ids), outbox_open(store_path), levels, len(uploaded))


# -- faults ----------------------------------------------------------------------------------------
def kill_broker(broker) -> int:
    """SIGKILL the private mosquitto by its PID (no clean disconnects, no retained state saved)."""
    proc = broker._proc
    assert proc is not None and proc.poll() is None, "the broker is not running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    return proc.pid


def start_gateway_process(config_path, *, env: dict | None = None, log_path=None,
                          verbose: bool = False) -> subprocess.Popen:
    """``counterguard run --config FILE`` as its own process (so it can be SIGKILLed); ``verbose``
    logs debug detail too."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    err = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, "-m", "counterguard", *(["-v"] if verbose else []), "run",
                                 "--config", str(config_path)],
                                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, env=full_env)
    finally:
        if log_path:
            err.close()


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Tmpfs:
    """A small tmpfs mounted for the gateway's data directory, so its disk can really fill up.

    ``fill()`` writes a ballast file until the filesystem says ENOSPC; ``free()`` deletes it."""

    def __init__(self, path, size: str = "8m"):
        self.path = path
        self.size = size
        self.mounted = False
        self.ballast = os.path.join(str(path), "ballast")

    def mount(self) -> str | None:
        """Mounts it; returns None, or why it cannot be done here (not root, no mount permission)."""
        os.makedirs(self.path, exist_ok=True)
        if os.geteuid() != 0:
            return "mounting a tmpfs needs root"
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.path)],
                                capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            return f"mount -t tmpfs failed: {result.stderr.strip()}"
        self.mounted = True
        return None

    def fill(self) -> int:
        written = 0
        chunk = b"\0" * 65536
        with open(self.ballast, "ab", buffering=0) as f:
            while True:
                try:
                    written += f.write(chunk)
                except OSError:
                    break
        with open(self.ballast, "ab", buffering=0) as f:  # the last few bytes a big write could not take
            while True:
                try:
                    written += f.write(b"\0" * 512)
                except OSError:
                    return written

    def free(self) -> None:
        if os.path.exists(self.ballast):
            os.unlink(self.ballast)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30)
            self.mounted = False


class DeadLine:
    """While the gateway is dead, what the teller sends is lost, as on a real serial wire (a pty would
    otherwise buffer it and block the teller once 4 KiB are waiting): the unread input is flushed."""

    def __init__(self, slave_path: str):
        self.slave_path = slave_path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "DeadLine":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        fd = os.open(self.slave_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            while not self._stop.wait(0.02):
                termios.tcflush(fd, termios.TCIFLUSH)
        finally:
            os.close(fd)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


class Cable:
    """A pty standing in for the counter's USB serial adapter, reached through a stable symlink (as
    /dev/serial/by-id/... is). ``pull()`` hangs the line up (the gateway's read fails with EIO);
    ``plug()`` gives a fresh pty behind the same name."""

    def __init__(self, link_path: str):
        self.link_path = link_path
        self.master = self._slave = None
        self.plug()

    def plug(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tmp = self.link_path + ".new"
        os.symlink(os.ttyname(self._slave), tmp)
        os.replace(tmp, self.link_path)

    def pull(self) -> None:
        os.close(self.master)
        os.close(self._slave)
        self.master = self._slave = None

    def close(self) -> None:
        if self.master is not None:
            self.pull()
