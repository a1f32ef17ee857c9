"""Time stamps that stay honest on a Pi without a real-time clock.

Every record carries the wall clock, a monotonic reading and whether the wall clock was known to be
synchronised (NTP) when it was taken, so the centre can tell a 1970 boot time from a real one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from dataclasses import dataclass

_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


@dataclass(frozen=True)
class Stamp:
    wall: float
    mono: float
    synced: bool


class _Timex(ctypes.Structure):
    # struct timex is 208 bytes on 64-bit Linux; only the return value of adjtimex is used.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 204)]


def _kernel_synced() -> bool | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR


class Clock:
    """Gives ``Stamp``s; the sync state is asked of the kernel at most once a minute."""

    def __init__(self, *, recheck_s: float = 60.0, assume_synced: bool | None = None):
        self._recheck_s = recheck_s
        self._assume = assume_synced
        self._synced = False
        self._checked_at = -1e18

    @property
    def synced(self) -> bool:
        if self._assume is not None:
            return self._assume
        now = time.monotonic()
        if now - self._checked_at >= self._recheck_s:
            state = _kernel_synced()
            self._synced = bool(state)
            self._checked_at = now
        return self._synced

    def now(self) -> Stamp:
        return Stamp(time.time(), time.monotonic(), self.synced)


def wait_on(cond, predicate, timeout: float, tick: float = 0.05) -> bool:
    """Wait on the condition ``cond`` until ``predicate()`` holds or ``timeout`` seconds pass, and
    return the last result. Also re-checks every ``tick`` seconds: a predicate may look at state
    whose changes nobody signals on ``cond``."""
    deadline = time.monotonic() + timeout
    with cond:
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return bool(predicate())
            cond.wait(min(left, tick))
    return True
