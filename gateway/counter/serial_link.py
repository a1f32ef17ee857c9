"""One serial port to a counter, kept open: reopened by itself after an unplug, logged each time.

The path may be a stable name such as ``/dev/serial/by-id/usb-...-if00-port0``; the symlink is
resolved at every open, so a counter node that comes back on another ttyUSB is found again.

    >>> link = SerialLink("/dev/serial/by-id/usb-counter-3", baudrate=115200)   # doctest: +SKIP
    >>> link.write(b"$HB 1 {}*...\\n"); link.read(0.05)                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
import time

import serial

log = logging.getLogger(__name__)

WRITE_TIMEOUT_S = 1.0  # a terminal that stops reading must not freeze the counter line


class SerialLink:
    """``read(timeout)`` returns whatever bytes arrived (``b""`` if none or the port is away);
    ``write(data)`` returns False if the port is away. ``generation`` goes up at every (re)open, so
    the reader can drop a frame cut in half by the unplug. ``state`` is open, lost or closed."""

    def __init__(self, path: str, *, baudrate: int = 115200, reopen_interval: float = 1.0,
                 name: str | None = None, must_exist: bool = False):
        self.path = path
        self.baudrate = baudrate
        self.reopen_interval = reopen_interval
        self.name = name or path
        self.generation = 0
        self.state = "lost"
        self.reopens = 0
        self._port: serial.Serial | None = None
        self._timeout: float | None = None
        self._next_try = 0.0
        self._lost_at: float | None = None
        self._lost_reason = "not opened yet"
        self._closed = threading.Event()
        if must_exist:
            self._open(raise_errors=True)

    # -- opening ---------------------------------------------------------------------------------
    def _open(self, *, raise_errors: bool = False) -> bool:
        device = os.path.realpath(self.path)  # by-id symlinks point at whichever ttyUSB it got
        try:
            port = serial.Serial(device, self.baudrate, timeout=self._timeout or 0.05,
                                 write_timeout=WRITE_TIMEOUT_S, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            if raise_errors:
                raise
            if self._lost_reason != str(exc):
                log.warning("serial %s: cannot open %s: %s; retrying every %.0f s", self.name, device, exc,
                            self.reopen_interval)
                self._lost_reason = str(exc)
            return False
        # pyserial flushes the input on open: a frame sent while the gateway was away is lost here
        # and resent by the terminal, which resends every frame until it has its ACK.
        self._port = port
        self.generation += 1
        self.state = "open"
        self._lost_reason = ""
        if self.generation == 1:
            log.info("serial %s: opened %s at %d baud", self.name, device, self.baudrate)
        else:
            self.reopens += 1
            away = time.monotonic() - self._lost_at if self._lost_at else 0.0
            log.warning("serial %s: reopened %s after %.1f s away", self.name, device, away)
        return True

    def _ensure_open(self) -> bool:
        if self._port is not None:
            return True
        if self._closed.is_set():
            return False
        now = time.monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + self.reopen_interval
        return self._open()

    def _lose(self, exc: Exception) -> None:
        log.warning("serial %s: lost (%s); will reopen it when it comes back", self.name, exc)
        self._lost_reason = str(exc)
        self._lost_at = time.monotonic()
        self._next_try = self._lost_at + self.reopen_interval
        self.state = "lost"
        port, self._port = self._port, None
        try:
            port.close()
        except Exception:  # the device is already gone; nothing more to release
            pass

    # -- traffic ---------------------------------------------------------------------------------
    def read(self, timeout: float) -> bytes:
        if not self._ensure_open():
            self._closed.wait(min(timeout, max(0.0, self._next_try - time.monotonic())) or timeout)
            return b""
        port = self._port
        try:
            if timeout != self._timeout:
                self._timeout = timeout
                port.timeout = timeout
            data = port.read(1)
            if data:
                waiting = port.in_waiting
                if waiting:
                    data += port.read(waiting)
            return data
        except (serial.SerialException, OSError, TypeError) as exc:
            # TypeError: pyserial's read on a port closed under it by another thread
            if self._closed.is_set():
                return b""
            self._lose(exc)
            return b""

    def write(self, data: bytes) -> bool:
        port = self._port
        if port is None:
            return False
        try:
            port.write(data)
            return True
        except serial.SerialTimeoutException:
            log.warning("serial %s: the counter is not reading; %d bytes not sent", self.name, len(data))
            return False
        except (serial.SerialException, OSError) as exc:
            self._lose(exc)
            return False

    def close(self) -> None:
        self._closed.set()
        self.state = "closed"
        port, self._port = self._port, None
        if port is not None:
            port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
