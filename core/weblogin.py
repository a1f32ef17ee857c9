"""Branch console login: the branch password as a scrypt hash in the config, sessions in memory.

Only staff on the branch's roster who know the branch password can acknowledge an alert or
record its outcome. Five login attempts per staff number, and five from one address, are all a
minute allows: each is counted before its password is checked, so parallel guesses get no more. A login
gives a random session id (an HttpOnly, SameSite=Strict cookie) and a CSRF token the page sends
back in a header with every POST, so another site open on the same tablet cannot post for it.
The centre's dashboard logs its analysts in with the same code, one hash per analyst.

    >>> h = hash_password("counter-3-pass")
    >>> verify_password("counter-3-pass", h), verify_password("guess", h)
    (True, False)
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import ipaddress
import re
import secrets
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

# scrypt with n=2**14, r=8: about 16 MB and a few tens of milliseconds on a Raspberry Pi 4,
# cheap for a login, expensive for someone guessing from a stolen config file.
_N, _R, _P = 2 ** 14, 8, 1
_FORMAT = re.compile(r"scrypt\$(\d+)\$(\d+)\$(\d+)\$([0-9a-f]{32})\$([0-9a-f]{64})")
FAILURES_ALLOWED = 5   # login attempts for one staff number, or from one address ...
LOCKOUT_S = 60.0       # ... within this long; the next waits until the oldest is this old


class PasswordError(ValueError):
    """A password hash in the config is not one this gateway can check."""


class NotAHash(PasswordError):
    """The text is not in the scrypt$N$r$p$salt$hash form at all (its parameters are not the problem)."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    if not password:
        raise PasswordError("the password must not be empty")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_hash_format(stored: str) -> tuple[int, int, int, bytes, bytes]:
    m = _FORMAT.fullmatch(stored or "")
    if not m:
        raise NotAHash("not a console password hash (expected scrypt$N$r$p$salt$hash as printed by "
                       "'counterguard console-password')")
    n, r, p = (int(x) for x in m.groups()[:3])
    if n < 2 ** 10 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise PasswordError(f"scrypt parameters n={n} r={r} p={p} are out of range")
    return n, r, p, bytes.fromhex(m.group(4)), bytes.fromhex(m.group(5))


def verify_password(password: str, stored: str) -> bool:
    n, r, p, salt, expected = check_hash_format(stored)
    digest = hashlib.scrypt((password or "").encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(expected),
                            maxmem=256 * 1024 * 1024)
    return hmac.compare_digest(digest, expected)


def read_new_password(prompt: str) -> str:
    """A new password: asked twice on a terminal (a typo would lock its owner out), one line from a pipe."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass(prompt)
    if getpass.getpass("again: ") != password:
        raise PasswordError("the two passwords differ")
    return password


@dataclass(frozen=True)
class Session:
    sid: str
    staff: str
    csrf: str
    expires_mono: float


class LockedOut(Exception):
    """Too many recent login attempts for this staff number or from this address: the password was not checked."""


class LoginAttempts:
    """Login attempts per staff number and per source address, over the last ``LOCKOUT_S``.

    An attempt is counted *before* its password is checked, under one lock: however many requests
    arrive at once, no more than ``allowed`` passwords are checked for one staff number or from one
    address in a lockout window. A success clears both counts."""

    def __init__(self, *, allowed: int = FAILURES_ALLOWED, window_s: float = LOCKOUT_S):
        self.allowed = allowed
        self.window_s = window_s
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], list[float]] = {}

    def reserve(self, keys: list[tuple[str, str]]) -> None:
        """Count one attempt against every key, or raise LockedOut (counting nothing) if any is used up."""
        now = time.monotonic()
        with self._lock:
            # Forget quiet keys, so guessed staff numbers do not pile up in memory.
            self._seen = {k: kept for k, times in self._seen.items()
                          if (kept := [t for t in times if now - t < self.window_s])}
            if any(len(self._seen.get(k, ())) >= self.allowed for k in keys):
                raise LockedOut("too many login attempts; wait a minute")
            for k in keys:
                self._seen.setdefault(k, []).append(now)

    def clear(self, keys: list[tuple[str, str]]) -> None:
        with self._lock:
            for k in keys:
                self._seen.pop(k, None)


class Sessions:
    """Logged-in staff, by session id; forgotten on restart (everyone logs in again).

    ``password_hash`` is one shared hash (the branch password), or a mapping of each user's
    name to their own hash (the centre's analysts). ``staff`` is the roster of staff numbers that
    may log in with the shared hash (None: any); with a mapping its names are the roster. A name
    not on the roster gets the same answer, after the same scrypt, as a wrong password."""

    def __init__(self, password_hash: str | Mapping[str, str], *, staff=None, lifetime_s: float = 12 * 3600,
                 attempts: LoginAttempts | None = None):
        hashes = list(password_hash.values()) if isinstance(password_hash, Mapping) else [password_hash]
        if not hashes:
            raise PasswordError("no users to log in")
        for stored in hashes:
            check_hash_format(stored)
        self._hash = password_hash
        self._decoy = hashes[0]
        self.roster = frozenset(password_hash) if isinstance(password_hash, Mapping) else \
            (frozenset(staff) if staff is not None else None)
        if self.roster is not None and not self.roster:
            raise PasswordError("no staff numbers on the roster to log in")
        self.lifetime_s = lifetime_s
        self.attempts = attempts or LoginAttempts()
        self.password_checks = 0  # scrypt checks done, for the lockout's tests and the log
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def login(self, staff: str, password: str, address: str = "") -> Session | None:
        """A new session for ``staff``, or None for a wrong password or a name not on the roster.

        Raises LockedOut, without checking the password, once this staff number or this address
        has used up its attempts."""
        keys = [("address", address)] + ([("staff", staff)] if staff else [])
        self.attempts.reserve(keys)
        known = bool(staff) and (self.roster is None or staff in self.roster)
        if not self._verify(staff, password, known):
            return None
        self.attempts.clear(keys)
        session = Session(secrets.token_urlsafe(32), staff, secrets.token_urlsafe(32),
                          time.monotonic() + self.lifetime_s)
        with self._lock:
            self._sessions[session.sid] = session
        return session

    def _verify(self, staff: str, password: str, known: bool) -> bool:
        with self._lock:
            self.password_checks += 1
        if isinstance(self._hash, Mapping):
            stored = self._hash.get(staff) if known else None
        else:
            stored = self._hash if known else None
        # An unknown name costs the same scrypt as a known one: timing does not tell which names exist.
        return verify_password(password, stored or self._decoy) and stored is not None

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and time.monotonic() >= session.expires_mono:
                del self._sessions[sid]
                return None
            return session

    def logout(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make browsers send "Origin: null" on our own forms
}


def cookie_value(headers, name: str) -> str | None:
    """The value of cookie ``name`` in a request's headers, or None (also for a malformed Cookie header)."""
    try:
        morsel = SimpleCookie(headers.get("Cookie") or "").get(name)
    except CookieError:
        return None
    return morsel.value if morsel else None


def same_origin(headers) -> bool:
    """False for a POST another site's page made: its Origin is not this host."""
    origin = headers.get("Origin")
    if origin is None:
        return True  # browsers send Origin on cross-site POSTs; its absence is a same-site form or a tool
    return urlsplit(origin).netloc == headers.get("Host", "")


def is_loopback(host: str) -> bool:
    """True when only this machine can reach ``host`` (an empty host means every address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
