"""The centre's lists of persons at the gateway: warned persons and restricted persons (core/lists.py).

A list reaches a million entries, looked up on every event, on a Pi with little memory to spare.
In memory it is five flat arrays sorted by hash (the first 16 bytes of each keyed hash as two
64-bit numbers, the first and last day in force, the label), 21 bytes an entry: a million entries
take 21 MB and a lookup is one binary search. On disk it is the store's ``person_entries`` table, so
it survives a restart.

Updates are versioned like the stop-payment list: a delta must be based on the version held (a gap
is refused, and the gateway's status shows it, so the centre sends a full list); a full list too
large for one message comes in numbered parts of one version and replaces the list only when the
last part has arrived. Every update is committed to the store first and only then swapped in, whole:
there is never a moment with a half-applied or empty list. An entry past its last day stops matching
at once and is dropped from the store at the next update or start.

    lists = PersonLists(store)
    lists.apply("warned_persons", {"version": 3, "full": False, "base_version": 2,
                                   "add": [[hash, "investment", "2026-12-01", "2027-03-01"]], "remove": []})
    lists.match("warned_persons", event.customer_id_hash, day)   # "investment" or None
"""

from __future__ import annotations

import logging
import threading
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from datetime import date

import numpy as np

from counterguard.core.lists import KINDS, LABELS, MAX_ENTRIES, ListError, check_update

log = logging.getLogger(__name__)

_EMPTY_U64 = np.zeros(0, dtype=np.uint64)
_LOW64 = (1 << 64) - 1
_SHIFT = 48  # the first 16 bits of a hash choose its bucket
_BUCKETS = 1 << (64 - _SHIFT)


class ListRejected(ValueError):
    """A list update was refused; ``reason`` says why. Nothing was changed."""

    def __init__(self, kind: str, reason: str):
        super().__init__(f"{kind} update rejected: {reason}")
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class ListResult:
    kind: str
    version: int
    size: int
    added: int
    removed: int
    full: bool
    waiting_parts: int = 0  # a full list in parts: how many parts are still to come


def _keys(hashes) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo): the first 16 bytes of each 64-hex-digit hash as two big-endian 64-bit numbers."""
    if not hashes:
        return _EMPTY_U64, _EMPTY_U64
    raw = np.frombuffer(bytes.fromhex("".join(h[:32] for h in hashes)), dtype=">u8").astype(np.uint64)
    return raw[0::2].copy(), raw[1::2].copy()


class _Index:
    """One immutable version of a list, sorted by hi. Replaced whole, never changed in place.

    Held as ``array.array``: a lookup's binary search reads plain integers (about a microsecond for
    a million entries, half what numpy's scalar calls cost), and numpy views the same memory,
    without copying, for the bulk work of an update."""

    __slots__ = ("hi", "lo", "first", "last", "label", "buckets")

    def __init__(self, hi, lo, first, last, label, *, in_order: bool = False):
        # Sorted by the first 64 bits only: entries sharing them (practically never) are all looked
        # at by ``position``, whatever their order. ``in_order``: the caller already sorted them.
        order = slice(None) if in_order else np.argsort(hi, kind="stable")
        hi = hi[order]
        # Where each run of entries sharing their first 16 bits starts: a lookup searches only its
        # run (about 15 entries in a million) instead of the whole list, for 256 KiB.
        self.buckets = _packed("I", np.searchsorted(hi, np.arange(_BUCKETS + 1, dtype=np.uint64) << _SHIFT))
        self.hi, self.lo = _packed("Q", hi), _packed("Q", lo[order])
        self.first, self.last, self.label = _packed("H", first[order]), _packed("H", last[order]), \
            _packed("B", label[order])

    def __len__(self) -> int:
        return len(self.hi)

    def arrays(self) -> tuple:
        """numpy views of (hi, lo, first, last, label), sharing this index's memory."""
        return (np.frombuffer(self.hi, np.uint64), np.frombuffer(self.lo, np.uint64),
                np.frombuffer(self.first, np.uint16), np.frombuffer(self.last, np.uint16),
                np.frombuffer(self.label, np.uint8))


_DTYPES = {"Q": np.uint64, "I": np.uint32, "H": np.uint16, "B": np.uint8}
# Days are held as days since 2000-01-01 in 16 bits (to the year 2179): 4 bytes an entry saved.
_DAY0 = date(2000, 1, 1).toordinal()


def _days(values) -> np.ndarray:
    """Ordinal days as 16-bit days since 2000-01-01 (an earlier start counts from 2000, which
    changes nothing today; a later end stops at 2179)."""
    return np.clip(np.asarray(values, dtype=np.int64) - _DAY0, 0, 0xFFFF).astype(np.uint16)


def _packed(code: str, values) -> array:
    """``values`` as an ``array.array`` of ``code``, filled through a numpy view (one copy)."""
    out = array(code, bytes(len(values) * array(code).itemsize)) if code == "B" else array(code)
    if code != "B":
        out.frombytes(bytes(len(values) * out.itemsize))
    np.frombuffer(out, dtype=_DTYPES[code])[:] = values
    return out


class PersonList:
    """One list (warned or restricted persons), persisted in ``store`` and searched in memory."""

    def __init__(self, store, kind: str):
        if kind not in LABELS:
            raise ValueError(f"unknown list kind {kind!r}")
        self.kind = kind
        self.labels = LABELS[kind]
        self._store = store
        self._lock = threading.Lock()  # one update at a time; lookups never wait
        self._parts: dict = {}  # a full list arriving in parts: {"version", "parts", "got": {n: entries}}
        self.gap: str | None = None  # why the last delta could not be applied, until a full list comes
        self._version = int(store.meta_get(f"list_version:{kind}", "0"))
        self._index = self._load()

    # -- reading ---------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._version

    def __len__(self) -> int:
        return len(self._index)

    def match(self, hashed: str | None, day: int) -> str | None:
        """The entry's label (category or source) if ``hashed`` is on the list and in force on ``day``
        (a proleptic ordinal, ``date.toordinal()``), else None."""
        if hashed is None:
            return None
        index = self._index  # one version, even if an update swaps in another meanwhile
        # _Index.position, inlined: this runs for every event's customer, twice per list.
        key = int(hashed[:32], 16)
        hi, lo = key >> 64, key & _LOW64
        keys, buckets = index.hi, index.buckets
        bucket = hi >> _SHIFT
        end = buckets[bucket + 1]
        i = bisect_left(keys, hi, buckets[bucket], end)
        while i < end and keys[i] == hi:
            if index.lo[i] == lo:
                if index.first[i] <= day - _DAY0 <= index.last[i]:
                    return self.labels[index.label[i]]
                return None
            i += 1
        return None

    # -- loading ---------------------------------------------------------------------------------
    def _load(self) -> _Index:
        today = date.today().toordinal()
        dropped = self._store.person_entries_purge(self.kind, today)
        if dropped:
            log.info("%s: %d entries past their last day dropped", self.kind, dropped)
        n = self._store.person_entries_count(self.kind)
        hi, lo = np.empty(n, np.uint64), np.empty(n, np.uint64)
        first, last, label = np.empty(n, np.uint16), np.empty(n, np.uint16), np.empty(n, np.uint8)
        at = 0
        for rows in self._store.person_entries(self.kind):  # in chunks: the rows are never all in memory
            k = len(rows)
            keys = np.frombuffer(b"".join(r[0][:16] for r in rows), dtype=">u8")
            hi[at:at + k], lo[at:at + k] = keys[0::2], keys[1::2]
            label[at:at + k] = [self.labels.index(r[1]) for r in rows]
            first[at:at + k] = _days([r[2] for r in rows])
            last[at:at + k] = _days([r[3] for r in rows])
            at += k
        return _Index(hi[:at], lo[:at], first[:at], last[:at], label[:at], in_order=True)  # ORDER BY hash

    # -- updating --------------------------------------------------------------------------------
    def apply(self, update: dict) -> ListResult:
        """Apply ``{"version", "full", "base_version", "add", "remove"}`` (a full list may come as
        ``"part"`` n of ``"parts"``); raises ListRejected, changing nothing."""
        try:
            checked, remove = check_update(self.kind, update)
        except ListError as exc:
            raise ListRejected(self.kind, str(exc)) from None
        version = update.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ListRejected(self.kind, '"version" must be a whole number of at least 1')
        with self._lock:
            if version <= self._version:
                raise ListRejected(self.kind, f"version {version} is not newer than the version held here "
                                              f"({self._version})")
            if update["full"]:
                entries = self._collect_parts(update, checked)
                if entries is None:
                    got = self._parts
                    return ListResult(self.kind, self._version, len(self._index), 0, 0, True,
                                      waiting_parts=got["parts"] - len(got["got"]))
                return self._replace(version, entries)
            base = update.get("base_version")
            if base != self._version:
                self.gap = f"delta v{version} is based on v{base!r} but v{self._version} is held"
                raise ListRejected(self.kind, f"delta is based on version {base!r} but this gateway holds version "
                                              f"{self._version}; the centre sends a full list")
            return self._delta(version, checked, remove)

    def _collect_parts(self, update: dict, checked: list) -> list | None:
        """The whole list once every part of this version has come; None while parts are missing."""
        parts, part = update.get("parts", 1), update.get("part", 1)
        if (isinstance(parts, bool) or not isinstance(parts, int) or not isinstance(part, int)
                or isinstance(part, bool) or not 1 <= part <= parts <= 10_000):
            raise ListRejected(self.kind, '"part" and "parts" must be whole numbers with 1 <= part <= parts')
        if parts == 1:
            return checked
        if self._parts.get("version") != update["version"] or self._parts.get("parts") != parts:
            self._parts = {"version": update["version"], "parts": parts, "got": {}}  # a newer list: start over
        self._parts["got"][part] = checked
        if len(self._parts["got"]) < parts:
            return None
        entries = [e for n in range(1, parts + 1) for e in self._parts["got"][n]]
        self._parts = {}
        return entries

    def _arrays(self, checked: list) -> tuple:
        """Arrays of checked entries (core.lists.check_entry tuples), ready to sort; a hash sent twice
        counts once, as its last entry (as the store keeps it)."""
        checked = list({c[0]: c for c in checked}.values())
        hi, lo = _keys([c[0] for c in checked])
        return (hi, lo, _days([c[2] for c in checked]), _days([c[3] for c in checked]),
                np.array([self.labels.index(c[1]) for c in checked], np.uint8), checked)

    def _replace(self, version: int, entries: list) -> ListResult:
        if len(entries) > MAX_ENTRIES:
            raise ListRejected(self.kind, f"{len(entries)} entries is more than the {MAX_ENTRIES} a gateway holds")
        hi, lo, first, last, label, checked = self._arrays(entries)
        self._store.person_entries_replace(self.kind, version, full=True, add=checked)
        before = len(self._index)
        self._index = _Index(hi, lo, first, last, label)  # swapped only after the commit
        self._version, self.gap = version, None
        log.info("%s now version %d: %d entries (a full list)", self.kind, version, len(self._index))
        return ListResult(self.kind, version, len(self._index), len(self._index), before, True)

    def _delta(self, version: int, add: list, remove: list) -> ListResult:
        old = self._index
        hi, lo, first, last, label, checked = self._arrays(add)
        gone_hi, gone_lo = _keys(list(remove) + [c[0] for c in checked])  # an added entry replaces its old self
        o_hi, o_lo, o_first, o_last, o_label = old.arrays()
        keep = _keep(o_hi, o_lo, gone_hi, gone_lo)
        size = int(np.count_nonzero(keep)) + len(hi)
        if size > MAX_ENTRIES:
            raise ListRejected(self.kind, f"{size} entries is more than the {MAX_ENTRIES} a gateway holds")
        # The list in force is sorted already: the added entries, sorted, are inserted where they
        # belong (a copy of the arrays, not a sort of a million entries).
        order = np.argsort(hi, kind="stable")
        kept_hi = o_hi[keep]
        at = np.searchsorted(kept_hi, hi[order])
        new = _Index(np.insert(kept_hi, at, hi[order]), np.insert(o_lo[keep], at, lo[order]),
                     np.insert(o_first[keep], at, first[order]), np.insert(o_last[keep], at, last[order]),
                     np.insert(o_label[keep], at, label[order]), in_order=True)
        self._store.person_entries_replace(self.kind, version, full=False, add=checked, remove=list(remove))
        self._index = new  # swapped only after the commit
        self._version, self.gap = version, None
        removed = len(old) - int(np.count_nonzero(keep))
        log.info("%s now version %d: %d entries (+%d -%d)", self.kind, version, len(new), len(hi), removed)
        return ListResult(self.kind, version, len(new), len(hi), removed, False)

    def status(self) -> dict:
        """Version and size for the gateway's status and heartbeat; ``gap`` while a delta is missing."""
        out = {"version": self._version, "size": len(self._index)}
        if self.gap:
            out["gap"] = self.gap
        return out


def _keep(index_hi: np.ndarray, index_lo: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """A mask over an index's sorted (hi, lo) keeping every entry not among the (hi, lo) given."""
    keep = np.ones(len(index_hi), dtype=bool)
    if len(hi) == 0 or len(index_hi) == 0:
        return keep
    start = np.searchsorted(index_hi, hi, side="left")
    stop = np.searchsorted(index_hi, hi, side="right")
    found = start < stop
    for s, e, want in zip(start[found], stop[found], lo[found]):
        for i in range(s, e):  # one row, but for a shared first 64 bits
            if index_lo[i] == want:
                keep[i] = False
    return keep


class PersonLists:
    """Both lists of persons, for the assessor, the downlink and the status."""

    def __init__(self, store):
        self.lists = {kind: PersonList(store, kind) for kind in KINDS}

    def __getitem__(self, kind: str) -> PersonList:
        return self.lists[kind]

    def match(self, kind: str, hashed: str | None, day: int) -> str | None:
        return self.lists[kind].match(hashed, day)

    def apply(self, kind: str, update: dict) -> ListResult:
        if kind not in self.lists:
            raise ListRejected(kind, f"unknown list kind; expected one of {', '.join(KINDS)}")
        return self.lists[kind].apply(update)

    def status(self) -> dict:
        return {kind: lst.status() for kind, lst in self.lists.items()}
