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
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

from counterguard.core.identity import IdentityError, identity_hash, is_identity_hash

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


# -- lists as people write them: clear values, hashed on the way in ------------------------------------
# What a clear value is, when the line does not say: an 18-character resident identity number or
# an 11-digit mobile; a passport or other document must be named (its shape says nothing).
ID_TYPES = ("resident", "passport", "other", "phone", "hash")
_HASH_KIND = {"resident": "resident_id", "passport": "passport", "other": "other_document", "phone": "phone"}
_RESIDENT = re.compile(r"[0-9]{17}[0-9Xx]")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
DEFAULT_DAYS = {WARNED: 90, RESTRICTED: 365}  # how long an entry stands when the file does not say


class ListInputError(ValueError):
    """Values or lines that cannot go on a list; ``problems`` holds every one, each with its line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def hash_value(key: bytes, value: str, id_type: str | None = None) -> str:
    """The keyed hash of one identity number, document number, phone or already-made hash."""
    value = value.strip()
    if id_type is None:
        if is_identity_hash(value):
            return value
        if _RESIDENT.fullmatch(value):
            id_type = "resident"
        elif _MOBILE.fullmatch(value):
            id_type = "phone"
        else:
            raise IdentityError("is neither an 18-character resident identity number, an 11-digit mobile nor a "
                                "keyed hash; name its type (passport, other) for another document")
    if id_type == "hash":
        if not is_identity_hash(value):
            raise IdentityError("is not a keyed hash (64 lowercase hex digits)")
        return value
    if id_type not in _HASH_KIND:
        raise IdentityError(f"type {id_type!r} is not one of {', '.join(ID_TYPES)}")
    kind = _HASH_KIND[id_type]
    try:
        return identity_hash(key, kind, value)
    except IdentityError as exc:  # "resident_id check digit is 1 ..." reads better without the kind
        raise IdentityError(str(exc).removeprefix(f"{kind} ")) from None


def read_entries(path, kind: str, key: bytes, *, label: str | None, start: str, until: str) -> list[list]:
    """Entries from a file, one per line: ``VALUE[,TYPE[,LABEL[,FROM[,UNTIL]]]]`` (CSV; ``#`` starts a
    comment; empty fields take the command's defaults). Raises ListInputError naming every bad line;
    the clear values are never repeated in it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ListInputError([f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ListInputError([f"{path}: cannot read it: {getattr(exc, 'strerror', None) or exc}"]) from None
    out, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) > 5:
            problems.append(f"{path}, line {number}: {len(fields)} fields; a line is VALUE,TYPE,LABEL,FROM,UNTIL")
            continue
        fields += [""] * (5 - len(fields))
        value, id_type, own_label, own_from, own_until = fields
        try:
            entry = make_entry(kind, key, value, id_type or None, label=own_label or label, start=own_from or start,
                               until=own_until or until)
        except (IdentityError, ListError) as exc:
            problems.append(f"{path}, line {number}: {exc}")
            continue
        out.append(entry)
    if problems:
        raise ListInputError(problems)
    return out


def make_entry(kind: str, key: bytes, value: str, id_type: str | None, *, label: str | None, start: str,
               until: str) -> list:
    """One wire entry ``[hash, label, from, until]``, checked as a gateway will check it."""
    if label is None:
        what = "--category" if kind == WARNED else "--from"
        raise ListError(f"no {'category' if kind == WARNED else 'source'}: give {what} or a LABEL field "
                        f"(one of {', '.join(LABELS[kind])})")
    try:
        hashed = hash_value(key, value, id_type)
    except IdentityError as exc:
        raise ListError(f"value {exc}") from None
    entry = [hashed, label, start, until]
    check_entry(kind, entry)
    return entry


def default_days(kind: str, days: int | None, until: str | None) -> tuple[str, str]:
    """(from, until) for entries that do not give theirs: from today, for ``days`` or to ``until``."""
    today = date.today()
    return today.isoformat(), until or (today + timedelta(days=days or DEFAULT_DAYS[kind])).isoformat()
