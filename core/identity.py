"""Who the customer is, as the counter may keep it: keyed hashes only.

A resident identity number, a passport number, a mobile number and a payee's account are matched
against the centre's lists (stop-payment, warned persons, restricted persons) but never stored,
logged, exported or sent in clear. The gateway replaces each with a keyed hash, lowercase hex
HMAC-SHA256 under the alliance key already provisioned for the watchlist, as the event is
validated; the centre hashes its lists with the same key and the same function, so the two match
without either side holding the other's clear values.

Each kind of value is hashed in its own domain (``"resident_id:" + value``), so a phone number can
never match an identity number that happens to share its digits. An account keeps the watchlist's
plain form (HMAC of the digits, ``core.manifest.account_hash``): a payee's account matches the
stop-payment list as it is.

    identity_hash(key, "resident_id", "11010519491231002X")   # 64 hex digits
    identity_hash(key, "phone", "13800138000")
    resident_id_problem("110105194912310021")                 # "check digit is 1, should be X"
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date

# What a hash stands for. "resident_id" is the 18-character resident identity card number;
# "passport" and "other_document" are other identity documents, as the teller typed them.
ID_KINDS = ("resident_id", "passport", "other_document", "phone", "account")
# customer_id_type on the wire -> the hash domain of customer_id
CUSTOMER_ID_TYPES = {"resident": "resident_id", "passport": "passport", "other": "other_document"}

_RESIDENT = re.compile(r"[0-9]{17}[0-9X]")
_DOCUMENT = re.compile(r"[0-9A-Z]{5,20}")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_ACCOUNT = re.compile(r"[0-9]{6,34}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# GB 11643-1999: ISO 7064 MOD 11-2 over the first 17 digits
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


class IdentityError(ValueError):
    """A value cannot be hashed as the kind it was given as; the message says why, never the value."""


def resident_check_digit(first17: str) -> str:
    """The check character (0-9 or X) of a resident identity number's first 17 digits."""
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS)) % 11]


def resident_id_problem(text) -> str | None:
    """What is wrong with an 18-character resident identity number, or None when it is well formed.

    The message never repeats the number (it ends up in NAKs and logs)."""
    if not isinstance(text, str):
        return f"must be a string, got {type(text).__name__}"
    text = text.upper()
    if not _RESIDENT.fullmatch(text):
        return "must be 18 characters: 17 digits and a check digit (0-9 or X)"
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return "characters 7 to 14 are not a date of birth"
    if not date(1880, 1, 1) <= born <= date.today():
        return "characters 7 to 14 are not a possible date of birth"
    expected = resident_check_digit(text[:17])
    if text[17] != expected:
        return f"check digit is {text[17]}, should be {expected}: a digit was mistyped"
    return None


def document_problem(text) -> str | None:
    """A passport or other document number: 5 to 20 letters and digits (spaces and dashes dropped)."""
    if not isinstance(text, str):
        return f"must be a string, got {type(text).__name__}"
    if not _DOCUMENT.fullmatch(normalise("passport", text)):
        return "must be 5 to 20 letters and digits"
    return None


def phone_problem(text) -> str | None:
    """An 11-digit mainland mobile number (1, then 3-9, then nine digits)."""
    if not isinstance(text, str):
        return f"must be a string, got {type(text).__name__}"
    if not _MOBILE.fullmatch(text):
        return "must be an 11-digit mainland mobile number starting 13 to 19"
    return None


def normalise(kind: str, value: str) -> str:
    """The one spelling of a value that is hashed: an identity number's x is X, a document number
    is upper case without spaces or dashes; phones and accounts are digits as they are."""
    if kind == "resident_id":
        return value.upper()
    if kind in ("passport", "other_document"):
        return value.upper().replace(" ", "").replace("-", "")
    return value


def check_identity(kind: str, value: str) -> str:
    """The text ``identity_hash`` hashes for ``value`` as ``kind``; IdentityError (never repeating
    the value) when it is not well formed. Verifies without a key."""
    if kind not in ID_KINDS:
        raise IdentityError(f"unknown identity kind {kind!r}; expected one of {', '.join(ID_KINDS)}")
    if kind == "account":
        if not isinstance(value, str) or not _ACCOUNT.fullmatch(value):
            raise IdentityError("an account is 6 to 34 digits")
        return value
    problem = {"resident_id": resident_id_problem, "passport": document_problem,
               "other_document": document_problem, "phone": phone_problem}[kind]
    why = problem(value)
    if why:
        raise IdentityError(f"{kind} {why}")
    return f"{kind}:{normalise(kind, value)}"


def identity_hash(key: bytes, kind: str, value: str) -> str:
    """Keyed hash of ``value`` as ``kind`` (one of ID_KINDS): lowercase hex HMAC-SHA256.

    An account hashes its digits alone (the stop-payment watchlist's form); every other kind hashes
    ``kind + ":" + normalised value``."""
    if kind not in ID_KINDS:
        raise IdentityError(f"unknown identity kind {kind!r}; expected one of {', '.join(ID_KINDS)}")
    if not isinstance(key, bytes) or len(key) < 16:
        raise IdentityError("the hashing key is at least 16 bytes")
    data = check_identity(kind, value)
    return hmac.new(key, data.encode("ascii"), hashlib.sha256).hexdigest()


def is_identity_hash(value) -> bool:
    """A keyed hash as this module writes it (64 lowercase hex digits)."""
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None
