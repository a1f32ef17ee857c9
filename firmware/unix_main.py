"""Run the counter node on the MicroPython unix port, with ttys instead of the board's ports.

    micropython unix_main.py --terminal /dev/pts/3 --gateway /dev/pts/4 --state ./node-state \\
        [--counter 3] [--capacity 200] [--heartbeat-ms 2000] [--silent-ms 6000] \\
        [--reply-timeout-ms 2000] [--backoff-max-ms 16000] [--watchdog-ms 0] [--light FILE]

The bridge, journal and codec are the ones that run on the board; only the ports, the indicator
(a file that records each colour shown) and the watchdog (a thread that ends the process when the
loop has not turned for --watchdog-ms; 0, the default, for none) are stand-ins.
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
from counterguard_node.unix import FileLight, NullWatchdog, ThreadWatchdog, open_tty  # noqa: E402

USAGE = ("usage: micropython unix_main.py --terminal TTY --gateway TTY --state DIR [--counter N] "
         "[--capacity N] [--heartbeat-ms MS] [--silent-ms MS] [--reply-timeout-ms MS] "
         "[--backoff-max-ms MS] [--watchdog-ms MS] [--light FILE]")
INTS = ("--counter", "--capacity", "--heartbeat-ms", "--silent-ms", "--reply-timeout-ms", "--backoff-max-ms",
        "--watchdog-ms")


def parse(argv):
    opts = {"--counter": 0, "--capacity": 200, "--heartbeat-ms": 2000, "--silent-ms": 6000,
            "--reply-timeout-ms": 2000, "--backoff-max-ms": 16000, "--watchdog-ms": 0, "--light": None}
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


def build(opts):
    """The node's parts from parsed options: ``(bridge, wait)``; ``bridge.run(wait=wait)`` runs it."""
    try:
        os.mkdir(opts["--state"])
    except OSError:
        pass  # already there
    terminal_port, terminal_file = open_tty(opts["--terminal"])
    gateway_port, gateway_file = open_tty(opts["--gateway"])
    light = FileLight(opts["--light"] or opts["--state"] + "/indicator")
    # Armed before the journal is read back, as on the board; reading back feeds it.
    watchdog = ThreadWatchdog(opts["--watchdog-ms"]) if opts["--watchdog-ms"] > 0 else NullWatchdog()
    bridge = Bridge(
        TerminalPort(terminal_port),
        GatewayLink(gateway_port, reply_timeout_ms=opts["--reply-timeout-ms"],
                    backoff_max_ms=opts["--backoff-max-ms"], heartbeat_ms=opts["--heartbeat-ms"],
                    silent_after_ms=opts["--silent-ms"]),
        Journal(opts["--state"], capacity=opts["--capacity"], feed=watchdog.feed),
        Indicator(light),
        watchdog,
        counter=opts["--counter"],
    )
    poller = select.poll()
    poller.register(terminal_file, select.POLLIN)
    poller.register(gateway_file, select.POLLIN)
    return bridge, poller.poll


def main(argv):
    bridge, wait = build(parse(argv))
    bridge.run(wait=wait)


if __name__ == "__main__":
    main(sys.argv[1:])
