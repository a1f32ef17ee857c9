"""Stand-ins for board parts, used ONLY when the firmware runs on the MicroPython unix port (tests,
bench runs). On a board, main.py passes machine.WDT, a Pin or NeoPixel and machine.UART instead."""

import os
import sys
import termios
import time

import _thread

from .ports import PolledPort


# Linux termios bits that cfmakeraw() clears or sets. termios.setraw() would do the same, but it also
# throws away input already waiting: events a terminal sent while the node was restarting.
_IFLAG_OFF = 0o1 | 0o2 | 0o10 | 0o40 | 0o100 | 0o200 | 0o400 | 0o2000  # IGNBRK BRKINT PARMRK ISTRIP INLCR IGNCR ICRNL IXON
_OPOST = 0o1
_CFLAG_OFF = 0o60 | 0o400  # CSIZE PARENB
_CS8 = 0o60
_LFLAG_OFF = 0o1 | 0o2 | 0o10 | 0o100 | 0o100000  # ISIG ICANON ECHO ECHONL IEXTEN
_VTIME = 5
_VMIN = 6


def _make_raw(fd):
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
    cc[_VMIN] = 1
    cc[_VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, [iflag & ~_IFLAG_OFF, oflag & ~_OPOST, (cflag & ~_CFLAG_OFF) | _CS8,
                                            lflag & ~_LFLAG_OFF, ispeed, ospeed, cc])


def open_tty(path):
    """A serial device or pty (Linux) opened raw, keeping any input already waiting, as a non-blocking
    port (``flush()`` is never called on it: the unix port raises OSError 22 for flush on a pty)."""
    f = open(path, "r+b")
    _make_raw(f.fileno())
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
    """No watchdog at all (``--watchdog-ms 0``)."""

    def feed(self):
        pass


class ThreadWatchdog:
    """machine.WDT's stand-in: a thread that ends the whole process when ``feed()`` has not been
    called for ``timeout`` ms, as the RP2040's watchdog resets the board. The process ends with
    SIGKILL, like a power cut, after one line on stderr; whatever started it (systemd with
    ``Restart=always``, a bench script, a test) starts it again, as a reset board runs main.py again.

    >>> watchdog = ThreadWatchdog(timeout=8000)      # same signature as machine.WDT
    >>> watchdog.feed()                               # every main-loop turn
    """

    def __init__(self, timeout=8000):
        self.timeout = timeout
        self._fed = time.ticks_ms()
        _thread.start_new_thread(self._watch, ())

    def feed(self):
        self._fed = time.ticks_ms()

    def _watch(self):
        while True:
            time.sleep_ms(50)
            if time.ticks_diff(time.ticks_ms(), self._fed) >= self.timeout:
                sys.stderr.write("watchdog: the main loop has not turned for %d ms; resetting the node\n"
                                 % self.timeout)
                # No os.kill on the unix port: the shell that system() starts is our child, so its
                # $PPID is this process.
                os.system("kill -KILL $PPID")
