"""Stand-ins for board parts, used ONLY when the firmware runs on the MicroPython unix port (tests,
bench runs). On a board, main.py passes machine.WDT, a Pin or NeoPixel and machine.UART instead."""

import termios
from .ports import PolledPort


def open_tty(path):
    """A serial device or pty opened raw, as a non-blocking port (``flush()`` is never called on it:
    the unix port raises OSError 22 for flush on a pty)."""
    f = open(path, "r+b")
    termios.setraw(f.fileno())
    return PolledPort(f), f


class FileLight:
    """Appends each colour the indicator shows (``off``/``green``/``amber``) as a line to a file, so a
    test (or a person at a bench) can read what the counter would have seen."""

    def __init__(self, path):
        self.path = path

    def show_colour(self, colour):
        with open(self.path, "a") as f:
            f.write(colour + "\n")


class NullWatchdog:
    """No hardware watchdog on the unix port; the supervisor (systemd, the test) restarts a dead node."""

    def feed(self):
        pass
