"""The anti-fraud centre's stop-payment watchlist (止付名单): accounts whose withdrawals are red
whatever the model says.

The gateway never holds the account numbers themselves: every entry is a keyed hash, lowercase hex
HMAC-SHA256(watchlist key, account digits) (core/manifest.py ``account_hash``), so a stolen SD
card does not give away the list. The centre sends hashes in signed manifests; a plain list (a
``watchlist.file`` seed, ``counterguard replay --watchlist``, an older centre) is hashed here as it
is loaded. ``contains(account)`` hashes the event's account and looks it up.

The hashes live in the store's ``watchlist`` table, so they survive a restart, and in a frozenset in
memory, so the hot path does not touch SQLite. Updates are versioned: a full list replaces
everything, a delta must be based on the version this gateway holds. An update is applied in one
transaction and only then swapped in; a rejected update changes nothing.

    wl = Watchlist(store, key=load_watchlist_key("/etc/counterguard/watchlist.key"))
    wl.apply({"version": 8, "full": False, "base_version": 7, "add": ["6217000099887766554"], "remove": []})
    wl.contains("6217000099887766554")   # True

Without ``key`` (tests, replay, the demo) the watchlist makes a local key and keeps it in the store;
a provisioned gateway always uses the centre's key from its bundle.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from counterguard.core.manifest import account_hash, generate_watchlist_key, is_account_hash

log = logging.getLogger(__name__)

_ACCOUNT = re.compile(r"[0-9]{6,34}")
HASHES_KEPT = 4096  # accounts whose keyed hash is remembered (about 1 MB): the upload asks again within a batch or two
MAX_ACCOUNTS = 5_000_000  # far above any real list; stops a runaway update filling the SD card
_LOCAL_KEY = "watchlist_local_key"
_KEY_ID = "watchlist_key_id"
_MANIFEST_FIELDS = {"kind", "target", "hash", "key_version"}  # a signed manifest (gateway/link/downlink.py)


class WatchlistRejected(ValueError):
    """A watchlist update was refused; ``reason`` says why. Nothing was changed."""

    def __init__(self, reason: str):
        super().__init__(f"watchlist update rejected: {reason}")
        self.reason = reason


class WatchlistFileError(ValueError):
    """A watchlist file has a bad line; the message names the file and the line number."""


@dataclass(frozen=True)
class WatchlistResult:
    version: int
    size: int
    added: int
    removed: int
    full: bool


def _entries(value, name: str, key: bytes) -> list[str]:
    """Keyed hashes for ``value``: hashes are kept, account numbers are hashed here."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise WatchlistRejected(f'"{name}" must be a list of account numbers or keyed hashes')
    out = []
    for entry in value:
        if isinstance(entry, str) and _ACCOUNT.fullmatch(entry):
            out.append(account_hash(key, entry))
        elif is_account_hash(entry):
            out.append(entry)
        else:
            raise WatchlistRejected(f'"{name}" holds {entry!r}, which is neither an account number of 6 to 34 '
                                    "digits nor a 64-hex-digit keyed hash")
    return out


def key_id(key: bytes) -> str:
    """A short fingerprint of a watchlist key, safe to log and to keep beside the hashes."""
    return hashlib.sha256(b"counterguard watchlist key id\0" + key).hexdigest()[:16]


class Watchlist:
    """The stop-payment list, persisted in ``store`` and held in memory for the hot path."""

    def __init__(self, store, key: bytes | None = None, *, key_version: int | None = None):
        self._store = store
        self._lock = threading.Lock()  # one update at a time; readers never wait
        if key is None:
            stored = store.meta_get(_LOCAL_KEY)
            key = bytes.fromhex(stored) if stored else generate_watchlist_key()
            if not stored:
                store.meta_set(_LOCAL_KEY, key.hex())
        self._key = key
        # Every event's account is hashed to look it up, and again when the event is uploaded: a
        # branch's regular customers are hashed once (in memory only; the store keeps no hash cache).
        self._hash = functools.lru_cache(maxsize=HASHES_KEPT)(functools.partial(account_hash, key))
        self.key_version = key_version
        self.key_id = key_id(key)
        self._version = int(store.meta_get("watchlist_version", "0"))
        entries = store.watchlist_accounts()
        held_by = store.meta_get(_KEY_ID)
        if held_by and held_by != self.key_id and entries:
            # Hashes made with another key can never match: start empty so the centre's next full list applies.
            log.error("watchlist: the %d entries held were hashed with key %s but this gateway now has key %s; "
                      "they cannot match and are dropped until the centre sends a full list (version reset to 0)",
                      len(entries), held_by, self.key_id)
            store.watchlist_replace(0, full=True, add=[])
            entries, self._version = frozenset(), 0
        plain = [e for e in entries if not is_account_hash(e)]
        if plain:
            # A store from before keyed hashes: hash its account numbers in place, same version.
            hashed = frozenset(account_hash(key, a) if _ACCOUNT.fullmatch(a) else a for a in entries)
            store.watchlist_replace(self._version, full=True, add=sorted(hashed))
            log.info("watchlist: %d account numbers in the store replaced by their keyed hashes", len(plain))
            entries = hashed
        if held_by != self.key_id:
            store.meta_set(_KEY_ID, self.key_id)
        self._accounts: frozenset = entries

    def hash(self, account: str) -> str:
        return self._hash(account)

    @property
    def identity_key(self) -> bytes:
        """The alliance key the lists are hashed with: the validator hashes a customer's identity
        number, phone and payee account with it before anything is kept (core/identity.py)."""
        return self._key

    def contains_hash(self, hashed: str | None) -> bool:
        """Whether a keyed hash (a payee account's, as the validator made it) is on the list."""
        return hashed is not None and hashed in self._accounts

    def contains(self, account: str) -> bool:
        try:
            return self._hash(account) in self._accounts
        except ValueError:  # not an account number at all: cannot be on the list
            return False

    def __contains__(self, account: str) -> bool:
        return self.contains(account)

    def __len__(self) -> int:
        return len(self._accounts)

    @property
    def version(self) -> int:
        return self._version

    def apply(self, update: dict) -> WatchlistResult:
        """Apply ``{"version", "full", "base_version", "add", "remove"}``; raises WatchlistRejected.

        Entries are account numbers (hashed here) or keyed hashes; a signed watchlist manifest
        (kind, target, hash, key_version) is accepted as it is, if its key version is this gateway's.
        """
        if not isinstance(update, dict):
            raise WatchlistRejected("an update must be a JSON object")
        unknown = set(update) - {"version", "full", "base_version", "add", "remove", "issued_at", "note"} \
            - _MANIFEST_FIELDS
        if unknown:
            raise WatchlistRejected(f"unknown field(s) {', '.join(sorted(unknown))}")
        version = update.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise WatchlistRejected('"version" must be a whole number of at least 1')
        full = update.get("full")
        if not isinstance(full, bool):
            raise WatchlistRejected('"full" must be true (replace the list) or false (a delta)')
        if "key_version" in update and self.key_version is None:
            raise WatchlistRejected("entries are hashed with the centre's watchlist key, but this gateway has no "
                                    "key from the centre; set downlink.watchlist_key to the bundle's watchlist.key")
        if "key_version" in update and update["key_version"] != self.key_version:
            raise WatchlistRejected(f"entries are hashed with watchlist key version {update['key_version']!r} but this "
                                    f"gateway holds key version {self.key_version}; install the new key "
                                    "(downlink.watchlist_key) from the gateway's bundle")
        add = _entries(update.get("add"), "add", self._key)
        remove = _entries(update.get("remove"), "remove", self._key)
        with self._lock:
            current = self._version
            if version <= current:
                raise WatchlistRejected(f"version {version} is not newer than the version held here ({current})")
            if full:
                if remove:
                    raise WatchlistRejected('a full list has no "remove"; send every account in "add"')
                accounts = frozenset(add)
            else:
                base = update.get("base_version")
                if base != current:
                    raise WatchlistRejected(f"delta is based on version {base!r} but this gateway holds version "
                                            f"{current}; send a full list or the missing deltas")
                accounts = (self._accounts - frozenset(remove)) | frozenset(add)
            if len(accounts) > MAX_ACCOUNTS:
                raise WatchlistRejected(f"{len(accounts)} accounts is more than the {MAX_ACCOUNTS} a gateway holds")
            self._store.watchlist_replace(version, full=full, add=sorted(accounts) if full else add, remove=remove)
            before = self._accounts
            self._accounts = accounts  # swapped only after the commit
            self._version = version
        result = WatchlistResult(version, len(accounts), len(accounts - before), len(before - accounts), full)
        log.info("watchlist now version %d: %d entries (+%d -%d)", version, result.size, result.added, result.removed)
        return result

    def load_file(self, path) -> WatchlistResult | None:
        """Load a plain list (one account per line, ``#`` comments) as a full replacement.

        If the file holds exactly the accounts already in force nothing changes (so restarting
        with the same file keeps the version); otherwise it becomes the next version.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise WatchlistFileError(f"{path}: no such watchlist file; check watchlist.file in the config") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise WatchlistFileError(f"{path}: cannot read the watchlist: {exc}") from None
        accounts = []  # keyed hashes; the numbers are not kept
        for number, line in enumerate(text.splitlines(), 1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            if not _ACCOUNT.fullmatch(entry):
                raise WatchlistFileError(f"{path}, line {number}: {entry!r} is not an account number of 6 to 34 digits")
            accounts.append(account_hash(self._key, entry))
        if frozenset(accounts) == self._accounts and self._version > 0:
            return None
        return self.apply({"version": self._version + 1, "full": True, "add": accounts})
