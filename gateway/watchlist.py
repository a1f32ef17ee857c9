"""The anti-fraud centre's stop-payment watchlist (止付名单): accounts whose withdrawals are red
whatever the model says.

The list lives in the store's ``watchlist`` table, so it survives a restart, and in a frozenset in
memory, so the hot path asks ``contains(account)`` without touching SQLite. Updates from the centre
are versioned: a full list replaces everything, a delta must be based on the version this gateway
holds. An update is applied in one transaction and only then swapped in; a rejected update changes
nothing.

    wl = Watchlist(store)
    wl.apply({"version": 8, "full": False, "base_version": 7, "add": ["6217000099887766554"], "remove": []})
    wl.contains("6217000099887766554")   # True
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_ACCOUNT = re.compile(r"[0-9]{6,34}")
MAX_ACCOUNTS = 5_000_000  # far above any real list; stops a runaway update filling the SD card


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


def _accounts(value, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise WatchlistRejected(f'"{name}" must be a list of account numbers')
    for account in value:
        if not isinstance(account, str) or not _ACCOUNT.fullmatch(account):
            raise WatchlistRejected(f'"{name}" holds {account!r}, which is not an account number of 6 to 34 digits')
    return value


class Watchlist:
    """The stop-payment list, persisted in ``store`` and held in memory for the hot path."""

    def __init__(self, store):
        self._store = store
        self._lock = threading.Lock()  # one update at a time; readers never wait
        self._accounts: frozenset = store.watchlist_accounts()
        self._version = int(store.meta_get("watchlist_version", "0"))

    def contains(self, account: str) -> bool:
        return account in self._accounts

    def __contains__(self, account: str) -> bool:
        return account in self._accounts

    def __len__(self) -> int:
        return len(self._accounts)

    @property
    def version(self) -> int:
        return self._version

    def apply(self, update: dict) -> WatchlistResult:
        """Apply ``{"version", "full", "base_version", "add", "remove"}``; raises WatchlistRejected."""
        if not isinstance(update, dict):
            raise WatchlistRejected("an update must be a JSON object")
        unknown = set(update) - {"version", "full", "base_version", "add", "remove", "issued_at", "note"}
        if unknown:
            raise WatchlistRejected(f"unknown field(s) {', '.join(sorted(unknown))}")
        version = update.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise WatchlistRejected('"version" must be a whole number of at least 1')
        full = update.get("full")
        if not isinstance(full, bool):
            raise WatchlistRejected('"full" must be true (replace the list) or false (a delta)')
        add = _accounts(update.get("add"), "add")
        remove = _accounts(update.get("remove"), "remove")
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
        log.info("watchlist now version %d: %d accounts (+%d -%d)", version, result.size, result.added, result.removed)
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
        accounts = []
        for number, line in enumerate(text.splitlines(), 1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            if not _ACCOUNT.fullmatch(entry):
                raise WatchlistFileError(f"{path}, line {number}: {entry!r} is not an account number of 6 to 34 digits")
            accounts.append(entry)
        if frozenset(accounts) == self._accounts and self._version > 0:
            return None
        return self.apply({"version": self._version + 1, "full": True, "add": accounts})
