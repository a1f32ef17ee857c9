"""ULIDs for alerts: 26 characters, sortable by creation time, unique without a central counter.

A ULID is 48 bits of milliseconds since the epoch and 80 random bits, written in Crockford's
base32. Within one millisecond the random part is incremented, so ids made by one gateway sort in
the order they were made even when several alerts are raised in the same millisecond.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_MAX = (1 << 80) - 1

_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_ulid(wall: float | None = None) -> str:
    """A new ULID for the wall time ``wall`` (seconds; default now)."""
    global _last_ms, _last_random
    ms = int((time.time() if wall is None else wall) * 1000)
    if ms < 0:
        ms = 0
    with _lock:
        if ms <= _last_ms:
            # Same (or an earlier, if the clock stepped back) millisecond: keep ids increasing.
            ms = _last_ms
            rand = _last_random + 1
            if rand > _RANDOM_MAX:
                ms += 1
                rand = int.from_bytes(os.urandom(10), "big") >> 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # top bit clear leaves room to increment
        _last_ms, _last_random = ms, rand
    return _encode(ms, 10) + _encode(rand, 16)


def ulid_time(ulid: str) -> float:
    """The wall time (seconds) encoded in a ULID."""
    if len(ulid) != 26 or any(c not in _ALPHABET for c in ulid.upper()):
        raise ValueError(f"{ulid!r} is not a ULID (26 Crockford base32 characters)")
    ms = 0
    for c in ulid[:10].upper():
        ms = ms * 32 + _ALPHABET.index(c)
    return ms / 1000.0
