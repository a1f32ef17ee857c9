"""Counter-node firmware budget: heap on the MicroPython unix port and the size of the compiled modules.

    .venv/bin/python bench/firmware.py [--burst 500] [--capacity 200]

Runs the firmware (firmware/unix_main.py, the board's bridge, journal and codec) between real ptys,
with the test suite's teller terminal and answering gateway, through three scenes:

- burst: the terminal sends ``--burst`` ordinary events as fast as the line takes them, the gateway
  answers each;
- full queue: the gateway is silent while the terminal fills the queue (``--capacity`` events of
  almost 1 KiB each, the largest there can be), then answers and the queue drains;
- restart: the node is reset with that full queue in flash, reads it back and delivers it.

For each scene it reports the peak live heap (``gc.collect()`` then ``gc.mem_alloc()`` after every
main-loop turn) and the smallest ``-X heapsize`` the scene completes in. The unix port is 64-bit:
its objects are up to twice the size of a Pico's, so these are upper bounds for a board. Then it
compiles the device modules with mpy-cross for the RP2040 exactly as ``counterguard firmware flash``
does and lists their sizes. Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from machine_info import cpu_name  # noqa: E402
from firmware_harness import FIRMWARE, MICROPYTHON, MPY_CROSS, FakeGateway, Pty, TerminalSide  # noqa: E402
from harness import event  # noqa: E402

# Runs inside MicroPython: the node exactly as unix_main.py builds it, with the heap sampled after
# every loop turn when asked; stops when the bench creates STATE/stop.
DRIVER = """
import gc, json, os, sys
sys.path.insert(0, %(firmware)r)
import unix_main
bridge, wait = unix_main.build(unix_main.parse(%(args)r))
sample = %(sample)r
gc.collect()
baseline = gc.mem_alloc()
peak = baseline
bridge.start()
turns = 0
while True:
    bridge.step()
    turns += 1
    if sample:
        gc.collect()
        used = gc.mem_alloc()
        if used > peak:
            peak = used
    if turns %% 20 == 0:
        try:
            os.stat(%(stop)r)
            break
        except OSError:
            pass
    wait(10)
print(json.dumps({"baseline": baseline, "peak": peak, "turns": turns}))
"""

FAST = ["--heartbeat-ms", "300", "--silent-ms", "1200", "--reply-timeout-ms", "500", "--backoff-max-ms", "1000"]


class Bench:
    def __init__(self, tmp: Path, capacity: int):
        self.tmp = tmp
        self.capacity = capacity

    def start(self, state: Path, terminal_pty: Pty, gateway_pty: Pty, heap: str | None, sample: bool):
        args = ["--terminal", terminal_pty.path, "--gateway", gateway_pty.path, "--state", str(state),
                "--capacity", str(self.capacity)] + FAST
        script = self.tmp / "driver.py"
        script.write_text(DRIVER % {"firmware": str(FIRMWARE), "args": args, "sample": sample,
                                    "stop": str(state / "stop")})
        cmd = [MICROPYTHON] + (["-X", f"heapsize={heap}"] if heap else []) + [str(script)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def scene(self, name: str, heap: str | None = None, sample: bool = True, burst: int = 500) -> dict | None:
        """Run one scene; its heap figures, or None if the node did not get through it."""
        state = self.tmp / f"{name}-{heap}-{sample}"
        state.mkdir()
        terminal_pty, gateway_pty = Pty(), Pty()
        gateway = FakeGateway(gateway_pty.master).start()
        terminal = TerminalSide(terminal_pty.master)
        procs = []
        try:
            if name == "burst":
                procs.append(self.start(state, terminal_pty, gateway_pty, heap, sample))
                bodies = [event() for _ in range(burst)]
                self._deliver(terminal, bodies, procs[-1])
            else:
                gateway.answering = False
                procs.append(self.start(state, terminal_pty, gateway_pty, heap, sample))
                bodies = [event(note="x" * 700) for _ in range(self.capacity)]
                self._send(terminal, bodies, procs[-1], "queued")
                if name == "restart":
                    procs[-1].kill()
                    procs[-1].wait(10)
                    mark = len(terminal.lines)
                    gateway.answering = True
                    procs.append(self.start(state, terminal_pty, gateway_pty, heap, sample))
                    self._wait(terminal, {b["event_id"] for b in bodies}, procs[-1], mark)
                else:
                    gateway.answering = True
                    self._wait(terminal, {b["event_id"] for b in bodies}, procs[-1], 0)
            (state / "stop").touch()
            out, err = procs[-1].communicate(timeout=30)
            if procs[-1].returncode != 0:
                return None
            return json.loads(out.strip().splitlines()[-1])
        except (AssertionError, subprocess.TimeoutExpired, ValueError):
            return None
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            gateway.stop()
            terminal_pty.close()
            gateway_pty.close()

    def _send(self, terminal, bodies, proc, until):
        # The terminal writes from a thread while this one reads the replies, so neither side's pty
        # buffer fills up.
        def write():
            try:
                for body in bodies:
                    terminal.send(body)
            except OSError:
                pass  # the node died (a heap too small) and the scene is being torn down

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        self._wait(terminal, {b["event_id"] for b in bodies}, proc, 0, until)
        writer.join(30)

    def _deliver(self, terminal, bodies, proc):
        self._send(terminal, bodies, proc, "verdict")

    def _wait(self, terminal, ids, proc, start, type_="verdict"):
        deadline = time.monotonic() + 120
        left = set(ids)
        seen = start
        while left:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"node stopped or stalled with {len(left)} events left")
            try:
                terminal.wait_for(lambda l: False, 0.2, seen)
            except AssertionError:
                pass
            for line in terminal.lines[seen:]:
                if line.get("type") == type_:
                    left.discard(line.get("event_id"))
            seen = len(terminal.lines)

    def smallest_heap(self, name: str, burst: int) -> int | None:
        """The smallest heap (KiB, in 8 KiB steps) in which the scene still completes."""
        lo, hi = 8, 512
        if self.scene(name, f"{hi}K", sample=False, burst=burst) is None:
            return None
        while hi - lo > 8:
            mid = (lo + hi) // 2 // 8 * 8
            if self.scene(name, f"{mid}K", sample=False, burst=burst) is not None:
                hi = mid
            else:
                lo = mid
        return hi


def mpy_sizes(tmp: Path) -> dict[str, int]:
    from counterguard.provisioning.flash import build

    out = tmp / "mpy"
    build(out, counter=1, baud=115200, light="neopixel", capacity=200, chip="rp2040", mpy_cross=MPY_CROSS)
    return {p.name: p.stat().st_size for p in sorted((out / "counterguard_node").glob("*.mpy"))}


def machine() -> str:
    model = cpu_name()
    version = subprocess.run([MICROPYTHON, "-c", "import sys; print('%d.%d.%d' % sys.implementation.version[:3])"],
                             capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.machine()}, MicroPython unix port {version}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=500, help="events in the burst scene (default 500)")
    parser.add_argument("--capacity", type=int, default=200, help="the node's queue bound (default 200)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="counterguard-bench-fw-") as tmp:
        bench = Bench(Path(tmp), args.capacity)
        scenes = {"burst": f"burst of {args.burst} events, gateway answering",
                  "full": f"queue filled to {args.capacity} events of about 1 KiB, then drained",
                  "restart": f"reset with {args.capacity} events of about 1 KiB in flash, read back and sent"}
        for name, what in scenes.items():
            t0 = time.monotonic()
            measured = bench.scene(name, burst=args.burst)
            if measured is None:
                print(f"{name}: the node did not get through the scene", file=sys.stderr)
                return 1
            seconds = time.monotonic() - t0
            smallest = bench.smallest_heap(name, args.burst)
            rows.append((what, measured, smallest, seconds))
            print(f"{name}: {measured}, smallest heap {smallest} KiB, {seconds:.1f} s", file=sys.stderr)
        sizes = mpy_sizes(Path(tmp))
    print("## Counter node firmware\n")
    print(f"Machine: {machine()}. Date: {date.today().isoformat()}. Command: `.venv/bin/python bench/firmware.py "
          f"--burst {args.burst} --capacity {args.capacity}`.\n")
    print("Heap on the MicroPython unix port (64-bit, so objects are up to twice a Pico's size): live heap "
          "once started (code imported, journal read back), peak live heap sampled after every main-loop turn, and the smallest `-X heapsize` "
          "the scene completes in (8 KiB steps; it includes room for garbage between collections).\n")
    print("| scene | started | peak live heap | smallest heap that works |")
    print("|---|---:|---:|---:|")
    for what, m, smallest, _ in rows:
        print(f"| {what} | {m['baseline'] / 1024:.1f} KiB | {m['peak'] / 1024:.1f} KiB | {smallest} KiB |")
    print("\nCompiled modules (`mpy-cross -march=armv6m`, as `counterguard firmware flash` installs them):\n")
    print("| module | .mpy bytes |")
    print("|---|---:|")
    for name, size in sizes.items():
        print(f"| {name} | {size:,} |")
    print(f"| **total** | **{sum(sizes.values()):,}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
