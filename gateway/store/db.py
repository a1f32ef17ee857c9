"""The gateway's SQLite store: events, verdicts, alerts, acknowledgements, the outbox to the centre,
the watchlist and a little state (docs/store.md).

One file, one connection, WAL. Serial-line threads, the uplink thread and gpiozero's button thread
all call in, so every call takes one re-entrant lock. The hot path wraps a whole batch of frames in
``with store.batch():`` so a batch costs one fsync (group commit), and an alert is on disk before
its ACK goes back over serial.

    store = Store("/var/lib/counterguard/counterguard.db")
    with store.batch():
        if store.decided(event.event_id) is None:
            alert = store.record_verdict(event, payload, sha, verdict, clock.now(),
                                         model_version="m1", watchlist_version=3, gateway_id="gw-1")
    store.close()
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from counterguard.core import messages
from counterguard.core.dialogue import SIGNAL_TEXT
from counterguard.core.features import DAY, HOUR, PHONE_DAYS, VISIT_DAYS, VISITS_LIMIT, History
from counterguard.core.ulid import new_ulid

SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")
ACK_VIA = ("button", "console", "cli")
OUTCOME_VIA = ("console", "cli")
OUTCOMES = messages.OUTCOMES
ANSWERS = messages.ANSWERS
ALERT_STATES = ("open", "acknowledged", "closed")
ALERT_LEVELS = ("amber", "red")
UPLOADED_THROUGH = "events_uploaded_through"  # meta: rowid of the last event put in an upload batch
NOTE_MAX = 2000  # characters; a note is a few sentences, not a document
RAISE_VIA = ("console", "cli")
RAISE_NOTE_MAX = 500  # what the teller noticed, read at a glance on the console and at the centre
STAFF_MAX = 64  # a staff number or name, as the console's login keeps it
RAISE_WITHIN_S = DAY  # staff can raise an alert on an event received in the last 24 hours
# SQLite result codes that mean the medium, not the data, is the problem.
_MEDIUM_CODES = {"SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_NOTADB", "SQLITE_CORRUPT"}
HISTORY_LIMIT = 1000  # events of one account summarised per verdict (see account_summary)


STORE_FILE_MODE = 0o600  # events carry account numbers and amounts: the gateway's own user only


def _owner_only(path: Path) -> None:
    """Create the store file readable by its owner only, whatever the umask of whoever starts the
    gateway: SQLite gives the -wal and -shm files the database file's mode. Files an older
    gateway left readable to others are tightened (by their owner; anyone else leaves them be)."""
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, STORE_FILE_MODE))
    for name in (path.name, path.name + "-wal", path.name + "-shm", path.name + "-journal"):
        try:
            if os.stat(path.with_name(name)).st_mode & 0o077:
                os.chmod(path.with_name(name), STORE_FILE_MODE)
        except (FileNotFoundError, PermissionError):
            pass


class StoreError(OSError):
    """The store cannot write (disk full, I/O error, unreadable file). Nothing was half-written:
    the whole batch was rolled back, so the counter can be told ``busy`` and resend."""


class UnknownAlert(LookupError):
    """An acknowledgement named an alert id this gateway never raised."""


class UnknownEvent(LookupError):
    """Staff named an event this gateway never received (or has purged)."""


class LifecycleError(ValueError):
    """A step of an alert's life cycle that cannot be taken now (e.g. an outcome for an alert
    nobody has acknowledged, or a second outcome for a closed alert)."""


@dataclass(frozen=True)
class Alert:
    alert_id: str
    seq: int
    event_id: str
    counter: int
    level: str
    reasons: tuple
    raised_wall: float


@dataclass(frozen=True)
class Acknowledgement:
    alert_id: str
    seq: int
    counter: int
    level: str
    by: str
    via: str
    wall: float
    mono: float
    time_synced: bool


@dataclass(frozen=True)
class OutcomeRecord:
    alert_id: str
    seq: int
    counter: int
    outcome: str
    note: str
    by: str
    via: str
    wall: float
    handled_at: int | None = None  # the level that handled it (messages.HANDLED_AT); None: not recorded


@dataclass(frozen=True)
class Answer:
    """A customer's answer to one caring question, with the question as it was asked."""
    key: str
    question_en: str
    question_zh: str
    answer: str


@dataclass(frozen=True)
class Escalation:
    alert_id: str
    seq: int
    counter: int
    level: str
    reason: str
    waited_s: float
    wall: float


@dataclass(frozen=True)
class AlertView:
    """One alert with everything that happened to it, for the console, the CLI and the report."""
    alert_id: str
    seq: int
    event_id: str
    counter: int
    level: str
    reasons: tuple
    text: str
    amount: float
    kind: str
    state: str
    raised_wall: float
    ack_by: str | None
    ack_via: str | None
    ack_wall: float | None
    outcome: str | None
    note: str | None
    outcome_by: str | None
    outcome_wall: float | None
    escalated_wall: float | None
    raised_by: str | None = None  # set when branch staff raised the alert themselves
    raise_note: str | None = None
    handled_at: int | None = None  # 1 teller, 2 supervisor, 3 police (messages.HANDLED_AT); None: not recorded

    @property
    def response_s(self) -> float | None:
        """Seconds from raised to acknowledged (None while unacknowledged)."""
        return None if self.ack_wall is None else max(0.0, self.ack_wall - self.raised_wall)


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    kind: str
    ref_id: str
    payload: str
    created_wall: float
    publish_count: int
    last_published_wall: float | None


# -- migrations: the schema is declared here, never inferred from data ------------------------------
MIGRATIONS: list[tuple[int, str, object]] = []


def migration(version: int, name: str):
    def register(fn):
        MIGRATIONS.append((version, name, fn))
        MIGRATIONS.sort(key=lambda m: m[0])
        return fn
    return register


@migration(1, "initial schema")
def _initial(conn: sqlite3.Connection) -> None:
    for sql in (
        """CREATE TABLE events (
            event_id TEXT PRIMARY KEY, counter INTEGER NOT NULL, account TEXT NOT NULL,
            kind TEXT NOT NULL, amount REAL NOT NULL, ts TEXT NOT NULL, ts_epoch REAL NOT NULL,
            payload TEXT NOT NULL, payload_sha256 TEXT NOT NULL, received_wall REAL NOT NULL,
            received_mono REAL NOT NULL, time_synced INTEGER NOT NULL)""",
        "CREATE INDEX events_account_ts ON events(account, ts_epoch)",
        "CREATE INDEX events_received ON events(received_wall)",
        """CREATE TABLE verdicts (
            event_id TEXT PRIMARY KEY REFERENCES events(event_id) ON DELETE CASCADE,
            level TEXT NOT NULL CHECK (level IN ('green', 'amber', 'red')), score REAL NOT NULL,
            reasons TEXT NOT NULL, text TEXT NOT NULL, ack_body TEXT NOT NULL,
            model_version TEXT NOT NULL, watchlist_version INTEGER NOT NULL, decided_wall REAL NOT NULL)""",
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL CHECK (kind IN ('alert', 'ack')),
            ref_id TEXT NOT NULL, payload TEXT NOT NULL, created_wall REAL NOT NULL,
            publish_count INTEGER NOT NULL DEFAULT 0, last_published_wall REAL, receipted_wall REAL)""",
        "CREATE INDEX outbox_open ON outbox(seq) WHERE receipted_wall IS NULL",
        """CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY, event_id TEXT NOT NULL REFERENCES events(event_id),
            counter INTEGER NOT NULL, level TEXT NOT NULL CHECK (level IN ('amber', 'red')),
            reasons TEXT NOT NULL, raised_wall REAL NOT NULL, raised_mono REAL NOT NULL,
            time_synced INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged')),
            seq INTEGER NOT NULL)""",  # the outbox seq the centre knows it by; the outbox row may be purged once receipted
        "CREATE INDEX alerts_open ON alerts(state, level, counter, raised_wall)",
        "CREATE INDEX alerts_event ON alerts(event_id)",
        """CREATE TABLE acknowledgements (
            alert_id TEXT PRIMARY KEY REFERENCES alerts(alert_id), by_whom TEXT NOT NULL,
            via TEXT NOT NULL CHECK (via IN ('button', 'console', 'cli')), wall REAL NOT NULL,
            mono REAL NOT NULL, time_synced INTEGER NOT NULL, seq INTEGER NOT NULL)""",
        "CREATE TABLE watchlist (account TEXT PRIMARY KEY) WITHOUT ROWID",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ):
        conn.execute(sql)


@migration(2, "supervisor life cycle: outcomes, escalations, closed alerts")
def _supervisor(conn: sqlite3.Connection) -> None:
    # SQLite cannot change a CHECK constraint in place: rebuild alerts and outbox the documented way
    # (new table, copy, drop, rename) with foreign keys off (Store.migrate), then recreate the indexes.
    _rebuild_outbox(conn, ("alert", "ack", "outcome", "escalation"))
    for sql in (
        """CREATE TABLE alerts_new (
            alert_id TEXT PRIMARY KEY, event_id TEXT NOT NULL REFERENCES events(event_id),
            counter INTEGER NOT NULL, level TEXT NOT NULL CHECK (level IN ('amber', 'red')),
            reasons TEXT NOT NULL, raised_wall REAL NOT NULL, raised_mono REAL NOT NULL,
            time_synced INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'closed')),
            seq INTEGER NOT NULL)""",
        "INSERT INTO alerts_new SELECT * FROM alerts",
        "DROP TABLE alerts",
        "ALTER TABLE alerts_new RENAME TO alerts",
        "CREATE INDEX alerts_open ON alerts(state, level, counter, raised_wall)",
        "CREATE INDEX alerts_event ON alerts(event_id)",
        "CREATE INDEX alerts_raised ON alerts(raised_wall)",
        """CREATE TABLE outcomes (
            alert_id TEXT PRIMARY KEY REFERENCES alerts(alert_id),
            outcome TEXT NOT NULL CHECK (outcome IN ('confirmed_fraud', 'customer_dissuaded', 'false_alarm', 'police_called')),
            note TEXT NOT NULL, by_whom TEXT NOT NULL, via TEXT NOT NULL CHECK (via IN ('console', 'cli')),
            wall REAL NOT NULL, mono REAL NOT NULL, time_synced INTEGER NOT NULL, seq INTEGER NOT NULL)""",
        """CREATE TABLE escalations (
            alert_id TEXT NOT NULL REFERENCES alerts(alert_id), reason TEXT NOT NULL,
            waited_s REAL NOT NULL, wall REAL NOT NULL, mono REAL NOT NULL, time_synced INTEGER NOT NULL,
            seq INTEGER NOT NULL, PRIMARY KEY (alert_id, reason))""",
    ):
        conn.execute(sql)


def _rebuild_outbox(conn: sqlite3.Connection, kinds: tuple) -> None:
    """The outbox again with the CHECK of its kinds set to ``kinds``, rows, seqs and index kept."""
    (next_seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    allowed = ", ".join(f"'{k}'" for k in kinds)
    for sql in (
        f"""CREATE TABLE outbox_new (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ({allowed})),
            ref_id TEXT NOT NULL, payload TEXT NOT NULL, created_wall REAL NOT NULL,
            publish_count INTEGER NOT NULL DEFAULT 0, last_published_wall REAL, receipted_wall REAL)""",
        "INSERT INTO outbox_new SELECT * FROM outbox",
        "DROP TABLE outbox",
        "ALTER TABLE outbox_new RENAME TO outbox",
        "CREATE INDEX outbox_open ON outbox(seq) WHERE receipted_wall IS NULL",
    ):
        conn.execute(sql)
    # Purged rows may have used seqs above today's maximum: a seq is never reused, so keep the counter.
    conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'outbox'", (next_seq,))
    if next_seq and conn.execute("SELECT count(*) FROM sqlite_sequence WHERE name = 'outbox'").fetchone()[0] == 0:
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (next_seq,))


@migration(3, "caring questions' answers recorded with an alert's outcome")
def _answers(conn: sqlite3.Connection) -> None:
    # The question text is kept as asked: a branch may edit its questions file later.
    conn.execute("""CREATE TABLE answers (
        alert_id TEXT NOT NULL REFERENCES outcomes(alert_id), key TEXT NOT NULL,
        question_en TEXT NOT NULL, question_zh TEXT NOT NULL,
        answer TEXT NOT NULL CHECK (answer IN ('yes', 'no', 'declined')),
        PRIMARY KEY (alert_id, key))""")


@migration(4, "alerts raised by branch staff: who, how and their note")
def _staff_alerts(conn: sqlite3.Connection) -> None:
    # NULL on the model's alerts; new columns need no table rebuild.
    for sql in ("ALTER TABLE alerts ADD COLUMN raised_by TEXT",
                "ALTER TABLE alerts ADD COLUMN raised_via TEXT CHECK (raised_via IN ('console', 'cli'))",
                "ALTER TABLE alerts ADD COLUMN raise_note TEXT"):
        conn.execute(sql)


@migration(5, "events for learning: each verdict's features and shadow score; event batches in the outbox")
def _event_upload(conn: sqlite3.Connection) -> None:
    # NULL on verdicts from before: they are uploaded without features.
    for sql in ("ALTER TABLE verdicts ADD COLUMN features TEXT",
                "ALTER TABLE verdicts ADD COLUMN shadow_score REAL",
                "ALTER TABLE verdicts ADD COLUMN shadow_version TEXT"):
        conn.execute(sql)
    _rebuild_outbox(conn, ("alert", "ack", "outcome", "escalation", "events"))


@migration(6, "the centre's lists of persons: warned and restricted, by keyed hash")
def _person_lists(conn: sqlite3.Connection) -> None:
    # The hash as 32 bytes, not 64 hex digits: a million-entry list is half the size on the SD card,
    # and ORDER BY hash is the order the gateway searches in.
    conn.execute("""CREATE TABLE person_entries (
        list TEXT NOT NULL, hash BLOB NOT NULL, label TEXT NOT NULL,
        first_day INTEGER NOT NULL, last_day INTEGER NOT NULL,
        PRIMARY KEY (list, hash)) WITHOUT ROWID""")


@migration(7, "the customer's answers to the caring questions, and the final verdict they gave")
def _dialogue(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE dialogue (
        event_id TEXT PRIMARY KEY REFERENCES events(event_id), answers TEXT NOT NULL, by_whom TEXT,
        level TEXT NOT NULL, reasons TEXT NOT NULL, ack_body TEXT NOT NULL, answered_wall REAL NOT NULL,
        via TEXT NOT NULL DEFAULT 'counter' CHECK (via IN ('counter', 'console')))""")


@migration(8, "which of the three levels handled an alert: teller, supervisor or police")
def _handled_at(conn: sqlite3.Connection) -> None:
    # NULL on outcomes recorded before: "level not recorded" in the centre's report.
    conn.execute("ALTER TABLE outcomes ADD COLUMN handled_at INTEGER CHECK (handled_at IN (1, 2, 3))")


@migration(9, "outcome card_sale_confirmed: the customer was selling or renting the cards they asked for")
def _card_sale(conn: sqlite3.Connection) -> None:
    # A CHECK cannot be altered in SQLite: the table again, every row and column kept.
    allowed = ", ".join(f"'{o}'" for o in OUTCOMES)
    for sql in (
        f"""CREATE TABLE outcomes_new (
            alert_id TEXT PRIMARY KEY REFERENCES alerts(alert_id),
            outcome TEXT NOT NULL CHECK (outcome IN ({allowed})),
            note TEXT NOT NULL, by_whom TEXT NOT NULL, via TEXT NOT NULL CHECK (via IN ('console', 'cli')),
            wall REAL NOT NULL, mono REAL NOT NULL, time_synced INTEGER NOT NULL, seq INTEGER NOT NULL,
            handled_at INTEGER CHECK (handled_at IN (1, 2, 3)))""",
        "INSERT INTO outcomes_new (alert_id, outcome, note, by_whom, via, wall, mono, time_synced, seq, handled_at) "
        "SELECT alert_id, outcome, note, by_whom, via, wall, mono, time_synced, seq, handled_at FROM outcomes",
        "DROP TABLE outcomes",
        "ALTER TABLE outcomes_new RENAME TO outcomes",
    ):
        conn.execute(sql)


@migration(10, "each verdict's account as the event upload sends it: its keyed hash")
def _account_hash(conn) -> None:
    # NULL on verdicts from before: the upload hashes their account when it sends them.
    conn.execute("ALTER TABLE verdicts ADD COLUMN account_hash TEXT")


@migration(11, "an account's history read from the index alone: amount and counter kept in events_account_ts")
def _history_index(conn) -> None:
    # A busy account's history (a trader's day, a mule account hit at several counters) is summarised
    # in SQLite from the index, without visiting each event's row (account_summary).
    conn.execute("DROP INDEX events_account_ts")
    conn.execute("CREATE INDEX events_account_ts ON events(account, ts_epoch, amount, counter)")


@migration(12, "card events by the phone number given: persons behind one number (card_visits)")
def _card_phone_index(conn) -> None:
    # Built from the card events already stored, so a gateway knows its persons' numbers from the start.
    conn.execute(f"CREATE INDEX events_card_phone ON events({_PHONE}, ts_epoch) WHERE kind IN {_CARD_KINDS_SQL}")


# A card event's phone, as stored (keyed hash), and the kinds that are card events.
_PHONE = "json_extract(payload, '$.customer_phone_hash')"
_CARD_KINDS_SQL = "('sim_activation', 'account_opening')"
_VISITS = ("SELECT ts_epoch, CASE kind WHEN 'sim_activation' THEN json_extract(payload, '$.sims_held') "
           "ELSE json_extract(payload, '$.accounts_held') END, "
           "CASE kind WHEN 'sim_activation' THEN coalesce(json_extract(payload, '$.sims_requested'), 1) ELSE 1 END "
           "FROM events WHERE account = ? AND kind = ? AND ts_epoch >= ? AND ts_epoch < ? ORDER BY ts_epoch DESC LIMIT ?")
_PHONE_PERSONS = (f"SELECT ts_epoch, account FROM events WHERE {_PHONE} = ? AND kind IN {_CARD_KINDS_SQL} "
                  "AND ts_epoch >= ? AND ts_epoch < ? ORDER BY ts_epoch DESC LIMIT ?")

# summarise_history's conditions in SQL: an event counts when 0 < now - ts <= DAY, in the last hour when
# now - ts <= HOUR; other counters are the distinct counters other than the one asking.
_SUMMARY = (
    "SELECT count(*), total(amount), count(CASE WHEN ?1 - ts_epoch <= %r THEN 1 END), "
    "count(DISTINCT CASE WHEN counter != ?2 THEN counter END) "
    "FROM (SELECT ts_epoch, amount, counter FROM events WHERE account = ?3 AND ts_epoch >= ?4 AND ts_epoch < ?1 "
    "ORDER BY ts_epoch DESC LIMIT ?5) WHERE ?1 - ts_epoch > 0 AND ?1 - ts_epoch <= %r" % (HOUR, DAY))

_VERDICT = ("INSERT INTO verdicts (event_id, level, score, reasons, text, ack_body, model_version, watchlist_version, "
            "decided_wall) VALUES (?,?,?,?,?,?,?,?,?)")
_VERDICT_WITH_INPUTS = _VERDICT.replace(
    "decided_wall)", "decided_wall, features, shadow_score, shadow_version, account_hash)").replace("?)", "?,?,?,?,?)")


# One upload event as JSON text, by SQLite: json_object for the head, then the reasons (kept as JSON
# text) and the features (kept as the upload's text) spliced in as they are. Times are written to the
# millisecond by SQLite's own rounding.
_EVENTS_JSON = (
    "SELECT rtrim(json_object('event_id', e.event_id, 'counter', e.counter, 'kind', e.kind, 'amount', e.amount, "
    "'ts', e.ts, 'account_hash', coalesce(v.account_hash, cg_account_hash(e.account)), 'level', v.level, "
    "'score', round(v.score, 4), 'model_version', v.model_version, 'watchlist_version', v.watchlist_version, "
    "'shadow_score', round(v.shadow_score, 4), 'shadow_version', v.shadow_version, "
    "'decided_at', strftime('%Y-%m-%dT%H:%M:%fZ', v.decided_wall, 'unixepoch')), '}') "
    "|| ',\"reasons\":' || coalesce(v.reasons, '[]') || ',\"features\":' "
    "|| CASE typeof(v.features) WHEN 'text' THEN v.features WHEN 'blob' THEN cg_features_text(v.features) "
    "ELSE 'null' END || '}' "
    "FROM events e JOIN verdicts v USING (event_id) WHERE e.rowid BETWEEN ? AND ? ORDER BY e.rowid")


def _packed_features_text(blob: bytes) -> str:
    """Features kept packed as float32 (gateways before the upload's text was kept) as upload text."""
    return messages.features_text(struct.unpack(f"<{len(blob) // 4}f", blob))


def _is_medium_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError) or isinstance(exc, sqlite3.DatabaseError):
        name = getattr(exc, "sqlite_errorname", "") or ""
        if any(name.startswith(code) for code in _MEDIUM_CODES):
            return True
        text = str(exc).lower()
        return any(s in text for s in ("disk is full", "disk i/o", "unable to open", "readonly", "not a database"))
    return False


def _one_of(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _note(note, limit: int) -> str:
    """A free-text note, stripped, or ValueError if it is longer than ``limit`` characters."""
    note = "" if note is None else str(note).strip()
    if len(note) > limit:
        raise ValueError(f"note is {len(note)} characters; keep it under {limit}")
    return note


def _reasons_json(reasons) -> str:
    # Most verdicts are green with no reasons: skip the encoder for them.
    return json.dumps(list(reasons)) if reasons else "[]"


def _store_error(exc: BaseException, path) -> StoreError:
    return StoreError(f"cannot write the store {path}: {exc}; nothing from this batch was kept. "
                      "Check free space and the SD card (df -h, dmesg), then restart the gateway")


class Store:
    """The gateway's SQLite file. Thread-safe; a context manager; ``close()`` may be called twice."""

    def __init__(self, path, *, synchronous: str = "FULL", busy_timeout_ms: int = 5000):
        _one_of("synchronous", synchronous, SYNCHRONOUS)
        self.path = Path(path)
        self._lock = threading.RLock()
        # The event upload reads through a connection of its own: WAL lets it read while the counter
        # line writes, so building a batch never holds up a verdict (opened when first needed).
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._depth = 0
        self._doomed = False
        try:
            if str(self.path) != ":memory:":
                _owner_only(self.path)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch is exactly one transaction.
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal" and str(self.path) != ":memory:":
                raise StoreError(f"{self.path}: SQLite would not switch to WAL (got {mode}); put the store on a local disk")
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.create_function("cg_features_text", 1, _packed_features_text, deterministic=True)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}; check the path and its permissions") from exc
        self.db = sqlite_utils.Database(self._conn)
        self._closed = False
        self.migrate()
        self._gateway_id = self.meta_get("gateway_id")

    # -- life cycle -------------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply every migration not yet recorded; returns the versions applied now."""
        applied = []
        with self._lock:
            self._conn.execute("CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, "
                               "name TEXT NOT NULL, applied_wall REAL NOT NULL)")
            done = {row[0] for row in self._conn.execute("SELECT version FROM migrations")}
            todo = [m for m in MIGRATIONS if m[0] not in done]
            if not todo:
                return applied
            # Table rebuilds need foreign keys off (they cannot be switched inside a transaction);
            # each migration checks them itself before it commits.
            self._conn.execute("PRAGMA foreign_keys=OFF")
            try:
                for version, name, fn in todo:
                    with self.batch():
                        fn(self._conn)
                        broken = self._conn.execute("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise StoreError(f"{self.path}: migration {version} ({name}) would break references: "
                                             f"{broken[:3]}; the store was left as it was")
                        self._conn.execute("INSERT INTO migrations VALUES (?, ?, strftime('%s','now'))", (version, name))
                    applied.append(version)
            finally:
                self._conn.execute("PRAGMA foreign_keys=ON")
        return applied

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def batch(self):
        """One transaction for everything inside; nested batches join the outer one. Any exception
        rolls the whole (outer) batch back; a disk or I/O failure comes out as ``StoreError``."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the store {self.path} is closed")
            outer = self._depth == 0
            if outer:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise (_store_error(exc, self.path) if _is_medium_error(exc) else exc) from exc
                self._doomed = False
            self._depth += 1
            try:
                yield self
            except BaseException as exc:
                self._depth -= 1
                if outer:
                    self._rollback()
                    if _is_medium_error(exc):
                        raise _store_error(exc, self.path) from exc
                else:
                    self._doomed = True
                raise
            self._depth -= 1
            if not outer:
                return
            if self._doomed:
                self._rollback()
                raise StoreError("a nested store batch failed and was caught; nothing from this batch was kept")
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise (_store_error(exc, self.path) if _is_medium_error(exc) else exc) from exc

    @contextmanager
    def bookkeeping(self):
        """A batch of the uplink's notes (when rows were sent, which the centre receipted) committed
        without waiting for the disk. Lost in a power cut, such a note only makes a row go out again,
        and the centre stores it once; waiting for the disk here would hold up the counters' verdicts."""
        with self._lock:
            if self._depth or self._closed:  # inside another batch: that one decides
                with self.batch():
                    yield self
                return
            (level,) = self._conn.execute("PRAGMA synchronous").fetchone()
            self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                with self.batch():
                    yield self
            finally:
                self._conn.execute(f"PRAGMA synchronous={int(level)}")

    @contextmanager
    def savepoint(self):
        """One event inside a batch: if the block raises, only what it wrote is undone and the batch
        goes on (it is not doomed by this block). Outside a batch it is a batch of its own.

        A disk or I/O failure is not the event's fault and cannot be undone piecemeal (SQLite may
        already have rolled the whole transaction back): it dooms the batch and comes out as
        ``StoreError``, as from ``batch()``."""
        with self._lock:
            if self._depth == 0:
                with self.batch():
                    yield self
                return
            if not self._conn.in_transaction:  # SQLite rolled the batch back by itself
                self._doomed = True
                raise StoreError(f"the store {self.path} lost this batch's transaction; nothing from it was kept")
            doomed, gateway_id = self._doomed, self._gateway_id
            try:
                self._conn.execute("SAVEPOINT event")
            except sqlite3.Error as exc:
                self._doomed = True
                raise (_store_error(exc, self.path) if _is_medium_error(exc) else exc) from exc
            try:
                yield self
            except BaseException as exc:
                if _is_medium_error(exc) or isinstance(exc, StoreError) or not self._undo_savepoint():
                    self._doomed = True
                    if _is_medium_error(exc):
                        raise _store_error(exc, self.path) from exc
                    raise
                # Everything the block wrote is gone, so whatever it marked is undone with it.
                self._doomed, self._gateway_id = doomed, gateway_id
                raise
            try:
                self._conn.execute("RELEASE event")
            except sqlite3.Error as exc:
                self._doomed = True
                raise (_store_error(exc, self.path) if _is_medium_error(exc) else exc) from exc

    def _undo_savepoint(self) -> bool:
        """Roll back to the innermost savepoint; False if the transaction is no longer there to keep."""
        try:
            self._conn.execute("ROLLBACK TO event")
            self._conn.execute("RELEASE event")
        except sqlite3.Error:
            return False
        return self._conn.in_transaction

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite may already have rolled back by itself (e.g. after SQLITE_FULL)

    def _q(self, sql: str, params=()) -> list:
        """A read: under the lock, but without opening a write transaction."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the store {self.path} is closed")
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise (_store_error(exc, self.path) if _is_medium_error(exc) else exc) from exc

    # -- hot path ---------------------------------------------------------------------------------
    def account_history(self, account: str, since_epoch: float, until_epoch: float,
                        limit: int = HISTORY_LIMIT) -> list[tuple[float, float, int]]:
        """(ts_epoch, amount, counter) of this account's stored events in [since, until), the most
        recent ``limit`` of them, newest first.

        The limit keeps one busy account (a market trader's thousands of small withdrawals) from
        slowing every verdict; the history features are long saturated at that many events."""
        with self._lock:
            return self._conn.execute(
                "SELECT ts_epoch, amount, counter FROM events WHERE account = ? AND ts_epoch >= ? AND ts_epoch < ? "
                "ORDER BY ts_epoch DESC LIMIT ?", (account, since_epoch, until_epoch, limit)).fetchall()

    def account_summary(self, account: str, now: float, counter: int, limit: int = HISTORY_LIMIT) -> History:
        """``core.features.summarise_history`` of this account's latest ``limit`` events in the day before
        ``now``, as seen from ``counter``, computed by SQLite from the index: the same conditions, so the
        same History (tests/test_store.py checks them against each other), without handing a busy
        account's thousand rows to Python on every verdict."""
        with self._lock:
            count, amount, last_hour, others = self._conn.execute(_SUMMARY, (now, counter, account, now - DAY, limit)).fetchone()
        return History(count_1h=last_hour, count_24h=count, amount_24h=amount, other_counters_24h=others)

    def card_visits(self, person: str, kind: str, phone: str | None, now: float, limit: int = VISITS_LIMIT):
        """(the person's earlier ``kind`` events as (epoch, held, asked), the card events that gave
        ``phone`` as (epoch, person)), newest first, from the days ``summarise_visits`` looks at
        (core/features.py): what the card rule book reads of a person's earlier visits."""
        with self._lock:
            prior = self._conn.execute(_VISITS, (person, kind, now - VISIT_DAYS * DAY, now, limit)).fetchall()
            persons = [] if phone is None else self._conn.execute(
                _PHONE_PERSONS, (phone, now - PHONE_DAYS * DAY, now, limit)).fetchall()
        return prior, persons

    def decided(self, event_id: str) -> tuple[str, str] | None:
        """(payload_sha256, ack_body) if this event was already scored, else None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT e.payload_sha256, v.ack_body FROM verdicts v JOIN events e USING (event_id) "
                "WHERE v.event_id = ?", (event_id,)).fetchone()
        return tuple(row) if row else None

    # -- the caring dialogue (core/dialogue.py) ---------------------------------------------------
    def first_verdict(self, event_id: str):
        """(kept event payload, Verdict, model version, watchlist version) as the event was first
        answered, or None for an event this gateway never scored."""
        from counterguard.core.decision import Verdict

        row = self._q("SELECT e.payload, e.counter, v.level, v.score, v.reasons, v.text, v.model_version, "
                      "v.watchlist_version FROM events e JOIN verdicts v USING (event_id) WHERE e.event_id = ?",
                      (event_id,))
        if not row:
            return None
        payload, counter, level, score, reasons, text, model_version, watchlist_version = row[0]
        return payload, Verdict(event_id, level, score, tuple(json.loads(reasons)), text, counter), model_version, \
            watchlist_version

    def verdict_features(self, event_id: str) -> list[float] | None:
        """The model's inputs for the event's first verdict, or None where none were kept."""
        row = self._q("SELECT features FROM verdicts WHERE event_id = ?", (event_id,))
        kept = row[0][0] if row else None
        if not kept:
            return None
        if isinstance(kept, bytes):  # kept packed as float32 by gateways before the text was kept
            return list(struct.unpack(f"<{len(kept) // 4}f", kept))
        return [float(v) for v in kept[1:-1].split(",")]

    def dialogue(self, event_id: str) -> tuple[dict, str] | None:
        """({signal: answer}, final ACK body) if the customer's answers were recorded for the event."""
        row = self._q("SELECT answers, ack_body FROM dialogue WHERE event_id = ?", (event_id,))
        return (json.loads(row[0][0]), row[0][1]) if row else None

    def dialogue_views(self, event_ids) -> dict[str, tuple[dict, dict, str]]:
        """event id -> ({signal: answer}, the final verdict's ACK body, where given) for these events;
        events whose customer's answers were not recorded are left out."""
        out: dict[str, tuple[dict, dict, str]] = {}
        ids = list(dict.fromkeys(event_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for event_id, answers, ack_body, via in self._q(
                    "SELECT event_id, answers, ack_body, via FROM dialogue "
                    f"WHERE event_id IN ({','.join('?' * len(chunk))})", chunk):
                out[event_id] = (json.loads(answers), json.loads(ack_body), via)
        return out

    def event_closed(self, event_id: str) -> bool:
        """Whether an alert on this event already has its outcome (its answers are too late for it)."""
        return bool(self._q("SELECT 1 FROM alerts WHERE event_id = ? AND state = 'closed' LIMIT 1", (event_id,)))

    def record_answers(self, event, answers: dict, final, stamp, *, by: str | None, ack_body: str,
                       model_version: str, watchlist_version: int, gateway_id: str, raised: bool,
                       via: str = "counter"):
        """Keep the customer's answers and the final verdict; when the answers raised the verdict to
        a level the event has no open alert at, that alert and its outbox row too (one transaction).
        Returns the new Alert or None."""
        with self.batch():
            self._conn.execute("INSERT INTO dialogue VALUES (?,?,?,?,?,?,?,?)",
                               (event.event_id, json.dumps(answers), by, final.level, _reasons_json(final.reasons),
                                ack_body, stamp.wall, via))
            if not raised or final.level not in ALERT_LEVELS:
                return None
            at_or_above = ALERT_LEVELS[ALERT_LEVELS.index(final.level):]
            held = self._conn.execute(
                f"SELECT 1 FROM alerts WHERE event_id = ? AND state <> 'closed' AND level IN "
                f"({','.join('?' * len(at_or_above))}) LIMIT 1", (event.event_id, *at_or_above)).fetchone()
            if held is not None:
                return None
            return self._insert_alert(event, final, stamp, model_version, watchlist_version,
                                      gateway_id or self._gateway_id or "")

    def record_verdict(self, event, payload: bytes, payload_sha256: str, verdict, stamp, *, model_version: str,
                       watchlist_version: int, gateway_id: str, ack_body: str | None = None,
                       features: str | None = None, shadow: tuple | None = None,
                       account_hash: str | None = None) -> Alert | None:
        """Store the event and its verdict; for amber/red also an alert and its outbox row.

        ``ack_body`` is the verdict's ACK payload as ``messages.dumps`` writes it, when the caller
        has already encoded it for the line. ``features``: the model's inputs as the upload sends them
        (``messages.features_text``); ``shadow``: (score, model version) of the challenger scored beside
        the model in force; ``account_hash``: the account's keyed hash, as the upload sends it."""
        with self._lock:
            if self._depth:
                # Inside the caller's batch (the counter line's group commit): join it directly,
                # as a nested batch would, without a context manager per event.
                try:
                    return self._record_verdict(event, payload, payload_sha256, verdict, stamp, model_version,
                                                watchlist_version, gateway_id, ack_body, features, shadow,
                                                account_hash)
                except BaseException:
                    self._doomed = True
                    raise
        with self.batch():
            return self._record_verdict(event, payload, payload_sha256, verdict, stamp, model_version,
                                        watchlist_version, gateway_id, ack_body, features, shadow, account_hash)

    def _record_verdict(self, event, payload, payload_sha256, verdict, stamp, model_version, watchlist_version,
                        gateway_id, ack_body, features=None, shadow=None, account_hash=None) -> Alert | None:
        c = self._conn
        if gateway_id != self._gateway_id:  # remembered so acknowledgements carry it too
            self.meta_set("gateway_id", gateway_id)
            self._gateway_id = gateway_id
        c.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (
            event.event_id, event.counter, event.account, event.kind, event.amount, event.ts.isoformat(),
            event.epoch, payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload),
            payload_sha256, stamp.wall, stamp.mono, int(bool(stamp.synced))))
        values = [event.event_id, verdict.level, float(verdict.score), _reasons_json(verdict.reasons), verdict.text,
                  ack_body if ack_body is not None else messages.dumps(verdict.ack_body()),
                  model_version, int(watchlist_version), stamp.wall]
        if features is not None or shadow is not None or account_hash is not None:
            values += [features, *(shadow or (None, None)), account_hash]
            c.execute(_VERDICT_WITH_INPUTS, values)
        else:
            c.execute(_VERDICT, values)
        if verdict.level not in ALERT_LEVELS:
            return None
        return self._insert_alert(event, verdict, stamp, model_version, watchlist_version, gateway_id)

    def _insert_alert(self, event, verdict, stamp, model_version, watchlist_version, gateway_id,
                      raised_by: str | None = None, via: str | None = None, note: str | None = None) -> Alert:
        """An alert and its outbox row, inside the caller's transaction: the one way every alert is
        written, whether the model or branch staff raised it."""
        c = self._conn
        alert_id = new_ulid(stamp.wall)
        body = messages.alert_body(alert_id, event, verdict, stamp, gateway_id=gateway_id,
                                   model_version=model_version, watchlist_version=watchlist_version,
                                   raised_by=raised_by, note=note)
        seq = c.execute("INSERT INTO outbox (kind, ref_id, payload, created_wall) VALUES ('alert', ?, ?, ?)",
                        (alert_id, body, stamp.wall)).lastrowid
        columns, values = ("alert_id, event_id, counter, level, reasons, raised_wall, raised_mono, time_synced, seq",
                           [alert_id, event.event_id, event.counter, verdict.level, _reasons_json(verdict.reasons),
                            stamp.wall, stamp.mono, int(bool(stamp.synced)), seq])
        if raised_by is not None:
            columns += ", raised_by, raised_via, raise_note"
            values += [raised_by, via, note]
        c.execute(f"INSERT INTO alerts ({columns}) VALUES ({','.join('?' * len(values))})", values)
        return Alert(alert_id, seq, event.event_id, event.counter, verdict.level, tuple(verdict.reasons), stamp.wall)

    def raise_alert(self, event_id: str, level: str, by: str, via: str, note: str = "", *, stamp,
                    gateway_id: str | None = None) -> Alert:
        """Branch staff raise an alert on an event the gateway answered green (or amber, when they
        want a red hold): stored with its outbox row in one transaction, exactly as the model's
        alerts are, with reasons ``teller_report`` and the event's own, and the event's score.

        Refused (nothing written) for an event this gateway does not hold (UnknownEvent), one
        received more than 24 hours ago, or one that already has an alert at this level or higher
        that is not closed (LifecycleError naming it)."""
        from counterguard.core.decision import Verdict, verdict_text
        from counterguard.core.events import parse_event

        _one_of("level", level, ALERT_LEVELS)
        _one_of("via", via, RAISE_VIA)
        by = by.strip() if isinstance(by, str) else ""
        if not by:
            raise ValueError("by must name who raised the alert (a staff number)")
        if len(by) > STAFF_MAX:
            raise ValueError(f"by is {len(by)} characters; a staff number or name is at most {STAFF_MAX}")
        note = _note(note, RAISE_NOTE_MAX)
        event_id = event_id.strip() if isinstance(event_id, str) else ""
        with self.batch():
            c = self._conn
            row = c.execute("SELECT e.payload, e.received_wall, v.score, v.reasons, v.model_version, "
                            "v.watchlist_version FROM events e JOIN verdicts v USING (event_id) "
                            "WHERE e.event_id = ?", (event_id,)).fetchone()
            if row is None:
                raise UnknownEvent(f"no event {event_id!r} at this gateway; pick one from the console's "
                                   "last events at each counter")
            payload, received_wall, score, reasons, model_version, watchlist_version = row
            if received_wall < stamp.wall - RAISE_WITHIN_S:
                hours = (stamp.wall - received_wall) / 3600
                raise LifecycleError(f"event {event_id} is too old: received {hours:.0f} hours ago; an alert can "
                                     f"be raised only on events of the last {RAISE_WITHIN_S / 3600:.0f} hours")
            at_or_above = ALERT_LEVELS[ALERT_LEVELS.index(level):]
            held = c.execute(
                f"SELECT alert_id, level, state FROM alerts WHERE event_id = ? AND state <> 'closed' "
                f"AND level IN ({','.join('?' * len(at_or_above))}) ORDER BY level = 'red' DESC, raised_wall LIMIT 1",
                (event_id, *at_or_above)).fetchone()
            if held is not None:
                state = "open" if held[2] == "open" else "acknowledged, outcome owed"
                raise LifecycleError(f"event {event_id} already has {'an' if held[1] == 'amber' else 'a'} {held[1]} "
                                     f"alert {held[0]} ({state}); "
                                     "deal with that one instead")
            event = parse_event(json.loads(payload))
            why = ["teller_report"] + [r for r in json.loads(reasons) if r != "teller_report"]
            verdict = Verdict(event.event_id, level, float(score), tuple(why), verdict_text(level, why), event.counter)
            if gateway_id is None:
                gateway_id = self._gateway_id or ""
            return self._insert_alert(event, verdict, stamp, model_version, watchlist_version, gateway_id,
                                      raised_by=by, via=via, note=note)

    def recent_events(self, since_wall: float, *, per_counter: int = 10) -> list[dict]:
        """The last events received at each counter since ``since_wall`` with their verdict and any
        alerts not yet closed, newest first, for staff choosing one to raise an alert on."""
        # Alerts are looked up only for the few rows kept, not for every event of a busy day.
        rows = self._q(
            "SELECT event_id, counter, kind, amount, received_wall, level, score,"
            " (SELECT group_concat(a.level) FROM alerts a WHERE a.event_id = r.event_id AND a.state <> 'closed') FROM ("
            " SELECT e.event_id, e.counter, e.kind, e.amount, e.received_wall, v.level, v.score,"
            " row_number() OVER (PARTITION BY e.counter ORDER BY e.received_wall DESC, e.rowid DESC) AS n"
            " FROM events e JOIN verdicts v USING (event_id) WHERE e.received_wall >= ?) r"
            " WHERE n <= ? ORDER BY received_wall DESC, counter", (since_wall, int(per_counter)))
        return [{"event_id": r[0], "counter": r[1], "kind": r[2], "amount": r[3], "received_wall": r[4],
                 "level": r[5], "score": r[6], "open_alerts": sorted(set((r[7] or "").split(",")) - {""})}
                for r in rows]

    # -- supervisor -------------------------------------------------------------------------------
    _ALERT_COLS = "alert_id, seq, event_id, counter, level, reasons, raised_wall"

    @staticmethod
    def _alert(row) -> Alert:
        return Alert(row[0], row[1], row[2], row[3], row[4], tuple(json.loads(row[5])), row[6])

    def open_alerts(self, level: str | None = "red", counter: int | None = None) -> list[Alert]:
        """Open (unacknowledged) alerts, oldest first; ``level=None`` for amber and red."""
        sql = f"SELECT {self._ALERT_COLS} FROM alerts WHERE state = 'open'"
        params: list = []
        if level is not None:
            sql += " AND level = ?"
            params.append(level)
        if counter is not None:
            sql += " AND counter = ?"
            params.append(counter)
        return [self._alert(r) for r in self._q(sql + " ORDER BY raised_wall, alert_id", params)]

    def alert(self, alert_id: str) -> Alert | None:
        rows = self._q(f"SELECT {self._ALERT_COLS} FROM alerts WHERE alert_id = ?", (alert_id,))
        return self._alert(rows[0]) if rows else None

    def acknowledge(self, alert_id: str | None = None, *, counter: int | None = None, by: str, via: str,
                    stamp, gateway_id: str | None = None) -> Acknowledgement | None:
        """Acknowledge ``alert_id``, or else the oldest open red alert (of ``counter`` if given).
        Returns None when there is nothing open to acknowledge."""
        _one_of("via", via, ACK_VIA)
        if not by or not isinstance(by, str):
            raise ValueError("by must name who acknowledged (e.g. 'supervisor' or a staff number)")
        with self.batch():
            c = self._conn
            if alert_id is not None:
                row = c.execute("SELECT alert_id, counter, level, state FROM alerts WHERE alert_id = ?",
                                (alert_id,)).fetchone()
                if row is None:
                    raise UnknownAlert(f"no alert {alert_id!r} on this gateway; list open alerts with "
                                       "'counterguard alerts' and use one of their ids")
                if row[3] != "open":
                    return None
            else:
                sql = "SELECT alert_id, counter, level, state FROM alerts WHERE state = 'open' AND level = 'red'"
                params: tuple = ()
                if counter is not None:
                    sql += " AND counter = ?"
                    params = (counter,)
                row = c.execute(sql + " ORDER BY raised_wall, alert_id LIMIT 1", params).fetchone()
                if row is None:
                    return None
            alert_id, alert_counter, level, _ = row
            if gateway_id is None:
                gateway_id = self._gateway_id or self._gateway_of(alert_id)
            body = messages.ack_body(alert_id, by=by, via=via, stamp=stamp, gateway_id=gateway_id, counter=alert_counter)
            seq = c.execute("INSERT INTO outbox (kind, ref_id, payload, created_wall) VALUES ('ack', ?, ?, ?)",
                            (alert_id, body, stamp.wall)).lastrowid
            c.execute("INSERT INTO acknowledgements VALUES (?,?,?,?,?,?,?)",
                      (alert_id, by, via, stamp.wall, stamp.mono, int(bool(stamp.synced)), seq))
            c.execute("UPDATE alerts SET state = 'acknowledged' WHERE alert_id = ?", (alert_id,))
            return Acknowledgement(alert_id, seq, alert_counter, level, by, via, stamp.wall, stamp.mono, bool(stamp.synced))

    def record_outcome(self, alert_id: str, outcome: str, *, note: str = "", by: str, via: str, stamp,
                       gateway_id: str | None = None, answers=None, questions=None,
                       handled_at=None) -> OutcomeRecord:
        """Record what happened with an acknowledged alert and close it (one transaction, one outbox row).

        ``handled_at``: the level that handled it, 1/2/3 or teller/supervisor/police; when not given,
        ``police_called`` is 3 and an alert whose customer answered the caring dialogue at the counter
        is 1 (messages.implied_level), else it stays not recorded.

        ``answers`` ({question key: yes | no | declined}) are the customer's answers to the caring
        questions asked; each key must be one of this alert's questions in ``questions`` (a
        counterguard.gateway.questions.CaringQuestions; the bundled file if None), else nothing is recorded."""
        answers = dict(answers or {})
        for key, answer in answers.items():
            _one_of(f"answer for {key!r}", answer, ANSWERS)
        _one_of("outcome", outcome, OUTCOMES)
        _one_of("via", via, OUTCOME_VIA)
        handled_at = messages.handled_at_level(handled_at)
        if outcome == "police_called" and handled_at not in (None, 3):
            raise ValueError(f"handled_at: police_called is level 3 (police), not {handled_at}; "
                             "give level 3 or another outcome")
        if not by or not isinstance(by, str):
            raise ValueError("by must name who recorded the outcome (a staff number)")
        note = _note(note, NOTE_MAX)
        with self.batch():
            c = self._conn
            row = c.execute("SELECT counter, state FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            if row is None:
                raise UnknownAlert(f"no alert {alert_id!r} on this gateway; list alerts with 'counterguard alerts'")
            counter, state = row
            if state == "open":
                raise LifecycleError(f"alert {alert_id} is not acknowledged yet; acknowledge it first")
            if state == "closed":
                done = c.execute("SELECT outcome, by_whom FROM outcomes WHERE alert_id = ?", (alert_id,)).fetchone()
                raise LifecycleError(f"alert {alert_id} is already closed"
                                     + (f" with outcome {done[0]} by {done[1]}" if done else ""))
            asked = self._asked(alert_id, answers, questions)
            if gateway_id is None:
                gateway_id = self._gateway_id or self._gateway_of(alert_id)
            # The customer's answers to the caring dialogue at the counter travel with the outcome too.
            dialogue, given_at = self._dialogue_of(alert_id)
            said = [(f"signal.{k}", SIGNAL_TEXT[k]["en"], a) for k, a in dialogue.items()]
            if handled_at is None:
                # Answers the teller took at the counter settle it there (level 1); answers the
                # supervisor scored at the console are the supervisor's talk, theirs to say.
                handled_at = messages.implied_level(outcome, answered_at_counter=given_at == "counter")
            body = messages.outcome_body(alert_id, outcome=outcome, note=note, by=by, via=via, stamp=stamp,
                                         gateway_id=gateway_id, counter=counter,
                                         answers=[(q.key, q.en, a) for q, a in asked] + said, handled_at=handled_at)
            seq = c.execute("INSERT INTO outbox (kind, ref_id, payload, created_wall) VALUES ('outcome', ?, ?, ?)",
                            (alert_id, body, stamp.wall)).lastrowid
            # Named columns: handled_at only when there is one, so a store of an older layout still takes outcomes.
            cols = ["alert_id", "outcome", "note", "by_whom", "via", "wall", "mono", "time_synced", "seq"]
            values = [alert_id, outcome, note, by, via, stamp.wall, stamp.mono, int(bool(stamp.synced)), seq]
            if handled_at is not None:
                cols.append("handled_at")
                values.append(handled_at)
            c.execute(f"INSERT INTO outcomes ({', '.join(cols)}) VALUES ({','.join('?' * len(cols))})", values)
            if asked:
                c.executemany("INSERT INTO answers VALUES (?,?,?,?,?)",
                              [(alert_id, q.key, q.en, q.zh, a) for q, a in asked])
            c.execute("UPDATE alerts SET state = 'closed' WHERE alert_id = ?", (alert_id,))
            return OutcomeRecord(alert_id, seq, counter, outcome, note, by, via, stamp.wall, handled_at)

    def _dialogue_of(self, alert_id: str) -> tuple[dict, str | None]:
        """(answers, where they were given: "counter" or "console") of this alert's event."""
        if not self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'dialogue'").fetchone():
            return {}, None  # a store opened with fewer migrations (a test of an older gateway's file)
        row = self._conn.execute("SELECT d.answers, d.via FROM dialogue d JOIN alerts a USING (event_id) "
                                 "WHERE a.alert_id = ?", (alert_id,)).fetchone()
        return (json.loads(row[0]), row[1]) if row else ({}, None)

    def _asked(self, alert_id: str, answers: dict, questions) -> list:
        """(Question, answer) for each answer, in the order the questions are asked; ValueError
        naming a key that is not one of this alert's questions."""
        if not answers:
            return []
        if questions is None:
            from counterguard.gateway.questions import load_questions
            questions = load_questions()
        (reasons,) = self._conn.execute("SELECT reasons FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        known = questions.asked(json.loads(reasons))
        keys = {q.key for q in known}
        for key in answers:
            if key not in keys:
                raise ValueError(f"answer for {key!r}: not one of the questions of alert {alert_id} "
                                 f"({', '.join(q.key for q in known)}); nothing was recorded")
        return [(q, answers[q.key]) for q in known if q.key in answers]

    def answers(self, alert_ids) -> dict[str, list[Answer]]:
        """The recorded answers of these alerts (alert id -> answers in the order asked); alerts
        without answers are left out."""
        out: dict[str, list[Answer]] = {}
        ids = list(dict.fromkeys(alert_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for row in self._q("SELECT alert_id, key, question_en, question_zh, answer FROM answers "
                               f"WHERE alert_id IN ({','.join('?' * len(chunk))}) ORDER BY rowid", chunk):
                out.setdefault(row[0], []).append(Answer(*row[1:]))
        return out

    def overdue_alerts(self, now_wall: float, after_s: float, *, reason: str = "unacknowledged",
                       now_mono: float | None = None) -> list[Alert]:
        """Open red alerts raised at least ``after_s`` ago and not yet escalated for ``reason``.

        With ``now_mono`` an alert is also overdue by the monotonic clock, so a wall clock stepped
        back (NTP, a Pi without a real-time clock) cannot hold an escalation back for hours. After a
        reboot the monotonic clock restarts, which can only make that test late, never early."""
        cols = ", ".join(f"a.{c.strip()}" for c in self._ALERT_COLS.split(","))
        due, params = "a.raised_wall <= ?", [now_wall - after_s]
        if now_mono is not None:
            due, params = "(a.raised_wall <= ? OR a.raised_mono <= ?)", params + [now_mono - after_s]
        rows = self._q(
            f"SELECT {cols} FROM alerts a WHERE a.state = 'open' AND a.level = 'red' AND {due} "
            "AND NOT EXISTS (SELECT 1 FROM escalations e WHERE e.alert_id = a.alert_id AND e.reason = ?) "
            "ORDER BY a.raised_wall, a.alert_id", (*params, reason))
        return [self._alert(r) for r in rows]

    def escalate(self, alert_id: str, *, reason: str, waited_s: float, stamp,
                 gateway_id: str | None = None) -> Escalation | None:
        """Record an escalation of a still-open alert and queue it for the centre; None if the alert
        was acknowledged meanwhile or was already escalated for this reason."""
        with self.batch():
            c = self._conn
            row = c.execute("SELECT counter, level, state FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            if row is None:
                raise UnknownAlert(f"no alert {alert_id!r} on this gateway")
            counter, level, state = row
            if state != "open" or c.execute("SELECT 1 FROM escalations WHERE alert_id = ? AND reason = ?",
                                            (alert_id, reason)).fetchone():
                return None
            if gateway_id is None:
                gateway_id = self._gateway_id or self._gateway_of(alert_id)
            body = messages.escalation_body(alert_id, level=level, reason=reason, waited_s=waited_s, stamp=stamp,
                                            gateway_id=gateway_id, counter=counter)
            seq = c.execute("INSERT INTO outbox (kind, ref_id, payload, created_wall) VALUES ('escalation', ?, ?, ?)",
                            (alert_id, body, stamp.wall)).lastrowid
            c.execute("INSERT INTO escalations VALUES (?,?,?,?,?,?,?)",
                      (alert_id, reason, float(waited_s), stamp.wall, stamp.mono, int(bool(stamp.synced)), seq))
            return Escalation(alert_id, seq, counter, level, reason, float(waited_s), stamp.wall)

    _VIEW_SQL = (
        "SELECT a.alert_id, a.seq, a.event_id, a.counter, a.level, a.reasons, coalesce(v.text, ''), "
        "e.amount, e.kind, a.state, a.raised_wall, k.by_whom, k.via, k.wall, o.outcome, o.note, o.by_whom, o.wall, "
        "(SELECT min(wall) FROM escalations s WHERE s.alert_id = a.alert_id), a.raised_by, a.raise_note, o.handled_at "
        "FROM alerts a JOIN events e ON e.event_id = a.event_id LEFT JOIN verdicts v ON v.event_id = a.event_id "
        "LEFT JOIN acknowledgements k ON k.alert_id = a.alert_id LEFT JOIN outcomes o ON o.alert_id = a.alert_id ")

    @staticmethod
    def _view(row) -> AlertView:
        row = list(row)
        row[5] = tuple(json.loads(row[5]))
        if row[19] is not None:  # raised by staff: the verdict's own text ("Proceed") would mislead
            from counterguard.core.decision import verdict_text
            row[6] = verdict_text(row[4], list(row[5]))
        return AlertView(*row)

    def alert_view(self, alert_id: str) -> AlertView | None:
        rows = self._q(self._VIEW_SQL + "WHERE a.alert_id = ?", (alert_id,))
        return self._view(rows[0]) if rows else None

    def alert_views(self, *, states=None, since_wall: float | None = None, until_wall: float | None = None) -> list[AlertView]:
        """Alerts with their acknowledgement, outcome and escalation, oldest first."""
        where, params = [], []
        if states:
            bad = [s for s in states if s not in ALERT_STATES]
            if bad:
                raise ValueError(f"unknown alert state {bad[0]!r}; states are {', '.join(ALERT_STATES)}")
            where.append(f"a.state IN ({','.join('?' * len(states))})")
            params += list(states)
        if since_wall is not None:
            where.append("a.raised_wall >= ?")
            params.append(since_wall)
        if until_wall is not None:
            where.append("a.raised_wall < ?")
            params.append(until_wall)
        sql = self._VIEW_SQL + (("WHERE " + " AND ".join(where)) if where else "") + " ORDER BY a.raised_wall, a.alert_id"
        return [self._view(r) for r in self._q(sql, params)]

    def awaiting_outcome(self) -> list[Alert]:
        """Acknowledged alerts with no outcome yet, oldest first."""
        return [self._alert(r) for r in self._q(
            f"SELECT {self._ALERT_COLS} FROM alerts WHERE state = 'acknowledged' ORDER BY raised_wall, alert_id")]

    def verdict_times(self, since_wall: float, until_wall: float) -> list[tuple[float, str, int]]:
        """(decided_wall, level, counter) of every verdict in [since, until), for the shift report."""
        return [tuple(r) for r in self._q(
            "SELECT v.decided_wall, v.level, e.counter FROM verdicts v JOIN events e USING (event_id) "
            "WHERE v.decided_wall >= ? AND v.decided_wall < ? ORDER BY v.decided_wall", (since_wall, until_wall))]

    def data_version(self) -> int:
        """Changes when another connection (e.g. ``counterguard ack`` in a shell) commits to the file."""
        return self._q("PRAGMA data_version")[0][0]

    def _gateway_of(self, alert_id: str) -> str:
        row = self._conn.execute("SELECT o.payload FROM alerts a JOIN outbox o ON o.seq = a.seq WHERE a.alert_id = ?",
                                 (alert_id,)).fetchone()
        return json.loads(row[0]).get("gateway_id", "") if row else ""

    # -- outbox -----------------------------------------------------------------------------------
    def outbox_pending(self, limit: int, *, republish_after_s: float, now_wall: float | None = None,
                       alerts_first: bool = False) -> list[OutboxRow]:
        """Unreceipted rows never published, or last published more than ``republish_after_s`` ago, in seq order.
        A row last published in the future (the wall clock was stepped back since) is due now.
        ``alerts_first``: alerts, acknowledgements, outcomes and escalations before any event batch,
        so a bulk upload never holds up an alert."""
        now = time.time() if now_wall is None else now_wall
        due = ("SELECT seq, kind, ref_id, payload, created_wall, publish_count, last_published_wall FROM outbox "
               "WHERE receipted_wall IS NULL AND (last_published_wall IS NULL OR last_published_wall <= ? "
               "OR last_published_wall > ?)")
        window = (now - republish_after_s, now + 1.0)
        if not alerts_first:
            return [OutboxRow(*r) for r in self._q(due + " ORDER BY seq LIMIT ?", (*window, int(limit)))]
        rows = self._q(due + " AND kind != 'events' ORDER BY seq LIMIT ?", (*window, int(limit)))
        if len(rows) < limit:
            rows += self._q(due + " AND kind = 'events' ORDER BY seq LIMIT ?", (*window, int(limit) - len(rows)))
        return [OutboxRow(*r) for r in rows]

    def mark_published(self, seqs, wall: float) -> None:
        with self.batch():
            self._conn.executemany(
                "UPDATE outbox SET publish_count = publish_count + 1, last_published_wall = ? WHERE seq = ?",
                [(wall, s) for s in seqs])

    def outbox_unpublish(self) -> int:
        """Forget when unreceipted rows were last sent, so all go out again now (after a reconnect or
        when the centre comes back). Returns how many rows are waiting."""
        with self.batch():
            return self._conn.execute(
                "UPDATE outbox SET last_published_wall = NULL WHERE receipted_wall IS NULL").rowcount

    def receipt(self, seqs, wall: float | None = None) -> int:
        """Close outbox rows the centre has stored. Idempotent; unknown seqs are ignored."""
        wall = time.time() if wall is None else wall
        with self.batch():
            cur = self._conn.executemany(
                "UPDATE outbox SET receipted_wall = ? WHERE seq = ? AND receipted_wall IS NULL",
                [(wall, int(s)) for s in seqs])
            return cur.rowcount

    def outbox_depth(self) -> int:
        return self._q("SELECT count(*) FROM outbox WHERE receipted_wall IS NULL")[0][0]

    # -- events for learning (gateway/link/upload.py) -------------------------------------------------
    # An upload batch is a range of the events table's rowids: the outbox row names the range and the
    # batch is built from the events themselves when it is sent, so the events are not written twice.
    def events_json(self, first: int, last: int, account_hash) -> list[str]:
        """The scored events of one upload range, oldest first, each as the JSON object text the upload
        sends (the fields of ``messages.EVENT_FIELDS``), written by SQLite in one pass. ``account_hash``
        hashes the account of a verdict stored before its hash was kept with it (None if it is not
        an account number); such verdicts' features, kept packed then, are written here too."""
        # In memory a second connection would see another, empty database: the store's own one reads.
        in_memory = str(self.path) == ":memory:"
        with self._lock if in_memory else self._reader_lock:
            if self._closed:
                raise StoreError(f"the store {self.path} is closed")
            try:
                if in_memory:
                    conn = self._conn
                elif self._reader is None:
                    conn = self._reader = sqlite3.connect(str(self.path), check_same_thread=False,
                                                          isolation_level=None)
                    conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
                    conn.execute("PRAGMA query_only=ON")
                    conn.create_function("cg_features_text", 1, _packed_features_text, deterministic=True)
                else:
                    conn = self._reader
                conn.create_function("cg_account_hash", 1, account_hash)
                return [r[0] for r in conn.execute(_EVENTS_JSON, (int(first), int(last))).fetchall()]
            except sqlite3.Error as exc:
                raise (_store_error(exc, self.path) if _is_medium_error(exc) else exc) from exc

    def next_upload_range(self, limit: int) -> tuple[int, int, int, float] | None:
        """(first, last, count, when the first was decided) of the next ``limit`` scored events not
        yet in an upload batch, or None if none wait. Asked four times a second by an idle uplink:
        one index walk of at most ``limit`` events, and one lookup."""
        after = int(self.meta_get(UPLOADED_THROUGH, "0"))
        first, last, count = self._q(
            "SELECT min(r), max(r), count(*) FROM (SELECT e.rowid AS r FROM events e JOIN verdicts v "
            "USING (event_id) WHERE e.rowid > ? ORDER BY e.rowid LIMIT ?)", (after, int(limit)))[0]
        if not count:
            return None
        oldest = self._q("SELECT v.decided_wall FROM events e JOIN verdicts v USING (event_id) WHERE e.rowid = ?",
                         (first,))[0][0]
        return first, last, count, oldest

    def queue_events(self, first: int, last: int, count: int, wall: float) -> int:
        """Put one upload range in the outbox and move the upload position past it, in one
        transaction: a range is queued exactly once, and a crash in between leaves neither."""
        with self.batch():
            seq = self._conn.execute(
                "INSERT INTO outbox (kind, ref_id, payload, created_wall) VALUES ('events', ?, ?, ?)",
                (f"{first}-{last}", json.dumps({"first": first, "last": last, "count": count}), wall)).lastrowid
            self.meta_set(UPLOADED_THROUGH, last)
        return seq

    def _oldest_open_upload(self) -> int | None:
        rows = self._q("SELECT payload FROM outbox WHERE kind = 'events' AND receipted_wall IS NULL ORDER BY seq LIMIT 1")
        return json.loads(rows[0][0])["first"] if rows else None

    def open_event_batches(self) -> int:
        return self._q("SELECT count(*) FROM outbox WHERE receipted_wall IS NULL AND kind = 'events'")[0][0]

    def oldest_unreceipted_wall(self) -> float | None:
        return self._q("SELECT min(created_wall) FROM outbox WHERE receipted_wall IS NULL")[0][0]

    # -- retention --------------------------------------------------------------------------------
    def purge(self, now_wall: float, *, keep_days: int = 90, keep_unuploaded: bool = False) -> dict:
        """Delete green events (and their verdicts) older than ``keep_days`` that raised no alert,
        and receipted outbox rows older than that. Alerts and unreceipted rows are never deleted;
        with ``keep_unuploaded`` (event upload on) neither is an event not yet in an upload batch."""
        cutoff = now_wall - keep_days * DAY
        through = 2**62
        if keep_unuploaded:  # nothing not yet queued, and nothing of a batch the centre has not receipted
            through = int(self.meta_get(UPLOADED_THROUGH, "0"))
            oldest_open = self._oldest_open_upload()
            if oldest_open is not None:
                through = min(through, oldest_open - 1)
        with self.batch():
            c = self._conn
            gone = c.execute(
                # The newest event always stays: its rowid keeps new events numbered past the upload position.
                "DELETE FROM events WHERE received_wall < ? AND rowid <= ? AND rowid < (SELECT max(rowid) FROM events) "
                "AND event_id IN "
                "(SELECT event_id FROM verdicts WHERE level = 'green') "
                "AND event_id NOT IN (SELECT event_id FROM alerts)", (cutoff, through)).rowcount
            # Verdicts go with their events (ON DELETE CASCADE).
            sent = c.execute("DELETE FROM outbox WHERE receipted_wall IS NOT NULL AND created_wall < ?",
                             (cutoff,)).rowcount
        return {"events": gone, "outbox": sent}

    # -- state ------------------------------------------------------------------------------------
    def meta_get(self, key: str, default: str | None = None) -> str | None:
        rows = self._q("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def meta_set(self, key: str, value) -> None:
        with self.batch():
            self._conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                               (key, str(value)))

    def next_bdseq(self) -> int:
        """The birth/death sequence number for a new MQTT session (persisted, increments each call)."""
        with self.batch():
            value = int(self.meta_get("bdseq", "0")) + 1
            self.meta_set("bdseq", value)
            return value

    # -- lists of persons (used by counterguard.gateway.scoring.person_lists) ---------------------------------------
    def person_entries_count(self, kind: str) -> int:
        return self._q("SELECT count(*) FROM person_entries WHERE list = ?", (kind,))[0][0]

    def person_entries(self, kind: str, chunk: int = 4096):
        """Lists of (hash bytes, label, first day, last day) in hash order, ``chunk`` rows at a time
        (small: a million rows pass through a few hundred kB, not tens of MB)."""
        after = b""  # pages by key, each its own query: the store is never held between pages
        while True:
            rows = self._q("SELECT hash, label, first_day, last_day FROM person_entries WHERE list = ? AND hash > ? "
                           "ORDER BY hash LIMIT ?", (kind, after, int(chunk)))
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    def person_entries_purge(self, kind: str, today: int) -> int:
        """Drop the entries whose last day is before ``today`` (an ordinal day); returns how many."""
        with self.batch():
            return self._conn.execute("DELETE FROM person_entries WHERE list = ? AND last_day < ?",
                                      (kind, int(today))).rowcount

    def person_entries_replace(self, kind: str, version: int, *, full: bool, add=(), remove=()) -> None:
        """Apply a list change in one transaction (the caller has checked it): ``add`` holds
        (hash hex, label, first day, last day), ``remove`` hashes."""
        with self.batch():
            c = self._conn
            if full:
                c.execute("DELETE FROM person_entries WHERE list = ?", (kind,))
            c.executemany("DELETE FROM person_entries WHERE list = ? AND hash = ?",
                          [(kind, bytes.fromhex(h)) for h in remove])
            c.executemany("INSERT OR REPLACE INTO person_entries VALUES (?,?,?,?,?)",
                          [(kind, bytes.fromhex(h), label, first, last) for h, label, first, last in add])
            self.meta_set(f"list_version:{kind}", int(version))

    # -- watchlist (used by counterguard.gateway.scoring.watchlist.Watchlist) -----------------------------------------
    def watchlist_accounts(self) -> frozenset:
        return frozenset(r[0] for r in self._q("SELECT account FROM watchlist"))

    def watchlist_replace(self, version: int, *, full: bool, add=(), remove=()) -> None:
        """Apply a watchlist change in one transaction (the caller has checked it)."""
        with self.batch():
            c = self._conn
            if full:
                c.execute("DELETE FROM watchlist")
            c.executemany("DELETE FROM watchlist WHERE account = ?", [(a,) for a in remove])
            c.executemany("INSERT OR IGNORE INTO watchlist VALUES (?)", [(a,) for a in add])
            self.meta_set("watchlist_version", int(version))
