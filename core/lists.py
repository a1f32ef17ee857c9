"""The centre's lists of persons, as both ends read them: warned persons and restricted persons.

- ``warned_persons``: people the police or the centre flagged as currently targeted by fraudsters
  (the three-level early warning). Each entry is the keyed hash of an identity number or a mobile
  number, the scam's ``category``, and the days it is in force. A match gives at least amber.
- ``restricted_persons``: persons under "one place involved in fraud, both cards restricted", by
  the keyed hash of their identity number (or phone), the ``source`` that restricted them and the
  days. A match gives red.

Entries never hold a clear identity number or phone: ``hash`` is ``core.identity.identity_hash``
under the alliance key, exactly what the gateway's validator makes of the customer at the counter.

An entry on the wire (a manifest's ``add``) is a JSON array, compact because a list reaches a
million entries::

    ["<64 hex digits>", "investment", "2026-12-01", "2027-03-01"]    # hash, label, from, until

``label`` is the category (warned) or the source (restricted); ``from`` and ``until`` are local
calendar days, both inclusive: an entry matches an event whose day lies between them, and drops
by itself after ``until``. ``remove`` holds bare hashes.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

WARNED, RESTRICTED = "warned_persons", "restricted_persons"
# The scams the police's early warnings name; "other" for anything else they report.
WARNED_CATEGORIES = ("investment", "impersonating_police", "safe_account", "loan", "customer_service",
                     "romance", "part_time_job", "other")
# Who restricted a person: the police, or the bank or carrier sector that found the cards sold.
RESTRICTED_SOURCES = ("police", "bank", "carrier", "centre")
LABELS = {WARNED: WARNED_CATEGORIES, RESTRICTED: RESTRICTED_SOURCES}
KINDS = tuple(LABELS)
# What one signed manifest carries at most: it must stay under the broker's message limit (1 MiB)
# once base64-encoded. The centre splits a larger change into several versions, and a full list
# into numbered parts of one version.
MAX_PER_MANIFEST = 5_000
MAX_ENTRIES = 2_000_000  # far above any real list; stops a runaway update filling the SD card

_HEX64 = re.compile(r"[0-9a-f]{64}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@lru_cache(maxsize=4096)  # a list's entries share a few hundred distinct days
def _days(text: str) -> int:
    return date.fromisoformat(text).toordinal()


class ListError(ValueError):
    """An entry or update of a person list is wrong; the message says which and why."""


def day_number(text: str, what: str = "day") -> int:
    """A ``YYYY-MM-DD`` day as its proleptic ordinal (date.toordinal)."""
    if not isinstance(text, str) or not _DAY.fullmatch(text):
        raise ListError(f"{what} must be a day as YYYY-MM-DD, got {str(text)[:20]!r}")
    try:
        return _days(text)
    except ValueError:
        raise ListError(f"{what} {text!r} is not a calendar day") from None


def check_entry(kind: str, entry) -> tuple[str, str, int, int]:
    """(hash, label, from day, until day) of one wire entry; ListError saying what is wrong."""
    if kind not in LABELS:
        raise ListError(f"list kind {kind!r} is not one of {', '.join(KINDS)}")
    if not isinstance(entry, list) or len(entry) != 4:
        raise ListError("an entry is [hash, label, from, until]")
    hashed, label, start, end = entry
    if not isinstance(hashed, str) or not _HEX64.fullmatch(hashed):
        raise ListError("an entry's hash must be a keyed hash: 64 lowercase hex digits "
                        "(hash identity numbers and phones with the alliance key first)")
    if label not in LABELS[kind]:
        what = "category" if kind == WARNED else "source"
        raise ListError(f"{what} {str(label)[:30]!r} is not one of {', '.join(LABELS[kind])}")
    first, last = day_number(start, "from"), day_number(end, "until")
    if last < first:
        raise ListError(f"until {end} is before from {start}")
    return hashed, label, first, last


def check_update(kind: str, update: dict) -> tuple[list, list]:
    """The list part of a manifest (``full``, ``add``, ``remove``): (checked entries of ``add`` as
    check_entry gives them, hashes of ``remove``), or ListError naming the item at fault."""
    if not isinstance(update.get("full"), bool):
        raise ListError('"full" must be true (replace the list) or false (a delta)')
    add, remove = update.get("add", []), update.get("remove", [])
    if not isinstance(add, list) or not isinstance(remove, list):
        raise ListError('"add" and "remove" must be lists')
    if update["full"] and remove:
        raise ListError('a full list has no "remove"; send every entry in "add"')
    checked = []
    for n, entry in enumerate(add, 1):
        try:
            checked.append(check_entry(kind, entry))
        except ListError as exc:
            raise ListError(f'"add" item {n}: {exc}') from None
    for n, hashed in enumerate(remove, 1):
        if not isinstance(hashed, str) or not _HEX64.fullmatch(hashed):
            raise ListError(f'"remove" item {n} must be a keyed hash: 64 lowercase hex digits')
    return checked, remove
