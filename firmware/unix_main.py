"""Run the counter node on the MicroPython unix port, with ttys instead of the board's ports.

    micropython unix_main.py --terminal /dev/pts/3 --gateway /dev/pts/4 --state ./node-state \\
        [--counter 3] [--capacity 200] [--heartbeat-ms 2000] [--silent-ms 6000] \\
        [--reply-timeout-ms 2000] [--backoff-max-ms 16000] [--light FILE]

The bridge, journal and codec are the ones that run on the board; only the ports, the indicator
(a file holding its colour) and the watchdog (none) are stand-ins.
"""

import os
import select
import sys

_here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, _here)

from counterguard_node.bridge import Bridge  # noqa: E402
from counterguard_node.indicator import Indicator  # noqa: E402
from counterguard_node.journal import Journal  # noqa: E402
from counterguard_node.link import GatewayLink  # noqa: E402
from counterguard_node.terminal import TerminalPort  # noqa: E402
from counterguard_node.unix import FileLight, NullWatchdog, open_tty  # noqa: E402

USAGE = ("usage: micropython unix_main.py --terminal TTY --gateway TTY --state DIR [--counter N] "
         "[--capacity N] [--heartbeat-ms MS] [--silent-ms MS] [--reply-timeout-ms MS] "
         "[--backoff-max-ms MS] [--light FILE]")
INTS = ("--counter", "--capacity", "--heartbeat-ms", "--silent-ms", "--reply-timeout-ms", "--backoff-max-ms")


def parse(argv):
    opts = {"--counter": 0, "--capacity": 200, "--heartbeat-ms": 2000, "--silent-ms": 6000,
            "--reply-timeout-ms": 2000, "--backoff-max-ms": 16000, "--light": None}
    i = 0
    while i < len(argv):
        key = argv[i]
        if key not in opts and key not in ("--terminal", "--gateway", "--state") or i + 1 >= len(argv):
            raise SystemExit("unknown or incomplete option %r\n%s" % (key, USAGE))
        value = argv[i + 1]
        if key in INTS:
            try:
                value = int(value)
            except ValueError:
                raise SystemExit("%s needs a whole number, got %r" % (key, value))
        opts[key] = value
        i += 2
    for key in ("--terminal", "--gateway", "--state"):
        if key not in opts:
            raise SystemExit("missing %s\n%s" % (key, USAGE))
    return opts


def main(argv):
    opts = parse(argv)
    try:
        os.mkdir(opts["--state"])
    except OSError:
        pass  # already there
    terminal_port, terminal_file = open_tty(opts["--terminal"])
    gateway_port, gateway_file = open_tty(opts["--gateway"])
    light = FileLight(opts["--light"] or opts["--state"] + "/indicator")
    bridge = Bridge(
        TerminalPort(terminal_port),
        GatewayLink(gateway_port, reply_timeout_ms=opts["--reply-timeout-ms"],
                    backoff_max_ms=opts["--backoff-max-ms"], heartbeat_ms=opts["--heartbeat-ms"],
                    silent_after_ms=opts["--silent-ms"]),
        Journal(opts["--state"], capacity=opts["--capacity"]),
        Indicator(light),
        NullWatchdog(),
        counter=opts["--counter"],
    )
    poller = select.poll()
    poller.register(terminal_file, select.POLLIN)
    poller.register(gateway_file, select.POLLIN)
    bridge.run(wait=poller.poll)


main(sys.argv[1:])
