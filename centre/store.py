"""The centre's store: every alert, acknowledgement, outcome and escalation once per (gateway_id, seq),
and every alert once per (gateway_id, alert_id) whatever seq it came under; the fleet's latest
status and heartbeat, quarantined messages (the first 4 KiB, with the full size and sha256), and
the manifests pushed down.

SQLite by default (one file, WAL); PostgreSQL when the store URL says so, for a centre whose
workers run on several machines. Both speak the same SQL through one small class, so the tests
that run against both prove the same behaviour.

    store = open_store("centre.db")                        # or "postgresql://user@host:5432/centre"
    result = store.ingest(records, quarantine=[(topic, payload, reason)])
    result.new, result.duplicates                          # stored now / already stored earlier
    store.alerts(region="610100", level="red")

``ingest`` writes a whole batch in one transaction; the worker sends receipts only after it
returns, so a receipt always means "stored". A SQLite store's files are created readable by
their owner only (0600), whatever the umask: they hold every branch's alerts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from pathlib import Path

from counterguard.centre import fleet
from counterguard.centre.schema import SEQUENCED, Record, SchemaError
from counterguard.core import messages
from counterguard.core.dialogue import SIGNALS

log = logging.getLogger(__name__)

SCHEMA_VERSION = 5
# Bytes of a quarantined payload kept (with its full size and sha256): enough to see what it was,
# while junk cannot grow the store by more than this per message.
QUARANTINE_KEEP = 4096

_TABLES = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id {autoid},
    gateway_id TEXT NOT NULL, seq BIGINT NOT NULL, type TEXT NOT NULL, alert_id TEXT NOT NULL,
    region TEXT NOT NULL, branch TEXT NOT NULL, counter INTEGER, level TEXT, at TEXT,
    received_at DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL,
    UNIQUE (gateway_id, seq));
CREATE INDEX IF NOT EXISTS records_alert ON records (alert_id);
CREATE INDEX IF NOT EXISTS records_type ON records (type, id);
CREATE TABLE IF NOT EXISTS gateways (
    gateway_id TEXT PRIMARY KEY, region TEXT NOT NULL, branch TEXT NOT NULL,
    state TEXT, bdseq BIGINT, status_ts TEXT, status_received_at DOUBLE PRECISION,
    last_heartbeat_at DOUBLE PRECISION, heartbeat_ts TEXT, outbox_depth INTEGER,
    oldest_unreceipted_age_s DOUBLE PRECISION, model_version TEXT, watchlist_version TEXT,
    thresholds_version TEXT, software_version TEXT, model_manifest_version TEXT, downlink_rejected BIGINT);
CREATE TABLE IF NOT EXISTS quarantine (
    id {autoid}, received_at DOUBLE PRECISION NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL,
    payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS manifests (
    kind TEXT NOT NULL, version BIGINT NOT NULL, target TEXT NOT NULL, topic TEXT NOT NULL,
    issued_at TEXT NOT NULL, summary TEXT NOT NULL, envelope TEXT NOT NULL,
    published_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (kind, version));
CREATE TABLE IF NOT EXISTS watchlist_entries (
    target TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (target, hash));
CREATE TABLE IF NOT EXISTS events (
    gateway_id TEXT NOT NULL, event_id TEXT NOT NULL, day TEXT NOT NULL,
    region TEXT NOT NULL, branch TEXT NOT NULL, counter INTEGER NOT NULL, kind TEXT NOT NULL,
    amount DOUBLE PRECISION NOT NULL, ts TEXT NOT NULL, ts_epoch DOUBLE PRECISION NOT NULL, account_hash TEXT,
    level TEXT NOT NULL, score DOUBLE PRECISION NOT NULL, reasons TEXT NOT NULL, model_version TEXT,
    watchlist_version TEXT, features TEXT, features_version INTEGER NOT NULL, shadow_score DOUBLE PRECISION,
    shadow_version TEXT, decided_at TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (gateway_id, event_id, day)){events_partitioned};
CREATE INDEX IF NOT EXISTS events_time ON events (ts_epoch);
CREATE TABLE IF NOT EXISTS canaries (
    id {autoid}, challenger TEXT NOT NULL, challenger_manifest BIGINT NOT NULL, previous TEXT NOT NULL,
    previous_manifest BIGINT, gateways TEXT NOT NULL, percent DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL, ended_at DOUBLE PRECISION);
CREATE TABLE IF NOT EXISTS labels (
    id {autoid}, label TEXT NOT NULL, source TEXT NOT NULL, case_number TEXT NOT NULL,
    event_id TEXT NOT NULL, gateway_id TEXT NOT NULL, account_hash TEXT NOT NULL,
    from_epoch DOUBLE PRECISION NOT NULL, to_epoch DOUBLE PRECISION NOT NULL,
    file TEXT NOT NULL, line INTEGER NOT NULL, imported_at DOUBLE PRECISION NOT NULL, typology TEXT NOT NULL,
    UNIQUE (label, source, case_number, event_id, gateway_id, account_hash, from_epoch, to_epoch));
CREATE INDEX IF NOT EXISTS events_account ON events (account_hash, ts_epoch);
"""
# Events for learning: one row per scored event, keyed by (gateway, event_id, day). The day (UTC,
# of the event's own time) never changes for an event, so it can partition the table by day on
# PostgreSQL, where retention drops a whole day at once instead of deleting rows.
EVENT_COLUMNS = ("gateway_id", "event_id", "day", "region", "branch", "counter", "kind", "amount", "ts", "ts_epoch",
                 "account_hash", "level", "score", "reasons", "model_version", "watchlist_version", "features",
                 "features_version", "shadow_score", "shadow_version", "decided_at", "received_at")

# Changes after the first schema, by the version they lead to; each runs once, in the migration's transaction.
_MIGRATIONS = {
    2: [
        "ALTER TABLE quarantine ADD COLUMN payload_size BIGINT",
        "ALTER TABLE quarantine ADD COLUMN payload_sha256 TEXT",
        # An alert resent under a new seq was stored once per seq: keep the first copy only.
        "DELETE FROM records WHERE type = 'alert' AND id NOT IN "
        "(SELECT MIN(id) FROM records WHERE type = 'alert' GROUP BY gateway_id, alert_id)",
        "CREATE UNIQUE INDEX IF NOT EXISTS records_one_alert ON records (gateway_id, alert_id) WHERE type = 'alert'",
    ],
    3: [
        # The challenger each gateway scores in shadow (null: none), and the shadow manifest it applied.
        "ALTER TABLE gateways ADD COLUMN shadow_version TEXT",
        "ALTER TABLE gateways ADD COLUMN shadow_manifest_version TEXT",
    ],
    4: [
        # The lists of persons each gateway holds, as its status reports them: {kind: {version, size, gap}}.
        "ALTER TABLE gateways ADD COLUMN lists TEXT",
        # The lists of persons as the centre pushed them: keyed hashes only, never a clear number.
        "CREATE TABLE IF NOT EXISTS person_entries (kind TEXT NOT NULL, hash TEXT NOT NULL, label TEXT NOT NULL, "
        "first_day TEXT NOT NULL, last_day TEXT NOT NULL, PRIMARY KEY (kind, hash))",
    ],
    5: [
        # The manifest kinds a gateway holds back until its open red alerts close (its status's
        # downlink_waiting), so the dashboard's rollout can say why a push is not applied yet.
        "ALTER TABLE gateways ADD COLUMN downlink_waiting TEXT",
    ],
}

VERSION_FIELDS = ("model_version", "watchlist_version", "thresholds_version", "model_manifest_version",
                  "software_version")


class StoreError(RuntimeError):
    """The centre's store cannot be opened or used; the message names the file or server."""


@dataclass(frozen=True)
class IngestResult:
    new: int
    duplicates: int
    quarantined: int
    statuses: int
    heartbeats: int
    events: int = 0             # uploaded events kept now
    events_duplicate: int = 0   # uploaded events already kept (a batch sent again)


@lru_cache(maxsize=4096)
def _utc_day(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * 86400, timezone.utc).strftime("%Y-%m-%d")


def _event_rows(r: Record, now: float) -> list[tuple]:
    """The events table's rows for one checked events batch."""
    rows = []
    for e in r.body["events"]:
        epoch = _epoch(e["ts"])
        features = e.get("features")  # checked numbers: compact JSON by the C encoder, as repr would write them
        rows.append((r.gateway_id, e["event_id"], _utc_day(int(epoch // 86400)), r.region, r.branch, e["counter"],
                     e["kind"], float(e["amount"]), e["ts"], epoch, e.get("account_hash"), e["level"],
                     float(e["score"]), json.dumps(e.get("reasons") or []), _version_text(e.get("model_version")),
                     _version_text(e.get("watchlist_version")), None if features is None else messages.dumps(features),
                     r.body["features_version"], e.get("shadow_score"), _version_text(e.get("shadow_version")),
                     e["decided_at"], now))
    return rows


def _epoch(ts: str) -> float:
    try:
        moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        raise SchemaError(f"event time {ts!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _printable(payload) -> str:
    """A quarantined payload as text any database takes: undecodable bytes replaced, NUL escaped."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, (bytes, bytearray)) else str(payload)
    return text.replace("\x00", "\\u0000")


def _quarantined(now: float, topic: str, payload, reason: str) -> tuple:
    """A quarantine row: the payload's first QUARANTINE_KEEP bytes as text, its full size and sha256."""
    raw = bytes(payload) if isinstance(payload, (bytes, bytearray)) else str(payload).encode("utf-8", "replace")
    return (now, topic, reason, _printable(raw[:QUARANTINE_KEEP]), len(raw), hashlib.sha256(raw).hexdigest())


def _version_text(v):
    return None if v is None else str(v)


class CentreStore:
    """One connection to the centre's database. Use one per thread."""

    placeholder = "?"
    autoid = "INTEGER PRIMARY KEY"
    lock_rows = ""  # PostgreSQL adds FOR UPDATE
    events_partitioned = ""  # PostgreSQL partitions the events table by day

    def __init__(self, conn, where: str):
        self._conn = conn
        self.where = where
        self._lock = threading.RLock()
        self._days_made: set[str] = set()  # day partitions known to exist (PostgreSQL)
        self._migrate()

    # -- plumbing -------------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _begin(self) -> None:
        pass

    def _execute(self, sql: str, params=()):
        cur = self._conn.cursor()
        cur.execute(self._sql(sql), params)
        return cur

    def _query(self, sql: str, params=()) -> list[dict]:
        with self._lock:
            for attempt in (0, 1):
                try:
                    cur = self._execute(sql, params)
                    names = [d[0] for d in cur.description]
                    rows = [dict(zip(names, r)) for r in cur.fetchall()]
                    self._end_read()
                    return rows
                except Exception as exc:
                    self._rollback()
                    if attempt == 0 and self._reconnected(exc):
                        continue
                    raise

    def _rollback(self) -> None:
        try:
            self._conn.rollback()
        except Exception:  # a dead connection cannot roll back; it is replaced by _reconnected
            pass

    def _reconnected(self, exc) -> bool:
        """Replace a connection the server dropped; True if the work should be tried again."""
        return False

    def _end_read(self) -> None:
        pass

    def _transaction(self, work):
        """Run ``work()`` in one transaction; retried when the database reports a conflict."""
        with self._lock:
            for attempt in range(8):
                try:
                    self._begin()
                    out = work()
                    self._conn.commit()
                    return out
                except Exception as exc:
                    self._rollback()
                    if attempt < 7 and (self._retryable(exc) or self._reconnected(exc)):
                        time.sleep(0.01 * (attempt + 1))
                        continue
                    raise

    def _retryable(self, exc) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)

    def _migrate(self) -> None:
        def work():
            tables = _TABLES.format(autoid=self.autoid, events_partitioned=self.events_partitioned)
            for statement in tables.split(";"):
                if statement.strip():
                    self._execute(statement)
            rows = self._execute("SELECT version FROM schema_version").fetchall()
            if not rows:
                self._execute("INSERT INTO schema_version (version) VALUES (1)")
            version = rows[0][0] if rows else 1
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target]:
                    self._execute(statement)
                self._execute("UPDATE schema_version SET version = ?", (target,))
                log.info("centre store %s: schema upgraded to version %d", self.where, target)
        self._transaction(work)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- ingest ---------------------------------------------------------------------------------
    def ingest(self, records: list[Record], *, quarantine=(), received_at: float | None = None) -> IngestResult:
        """Store one batch: sequenced records (once per gateway and seq), statuses and heartbeats
        (only when newer than what is held), and quarantined messages with their reason."""
        now = time.time() if received_at is None else received_at
        sequenced = sorted((r for r in records if r.kind in SEQUENCED), key=lambda r: (r.gateway_id, r.body["seq"]))
        fleet_updates = sorted((r for r in records if r.kind in ("status", "heartbeat")), key=lambda r: r.gateway_id)
        rows = [(r.gateway_id, r.body["seq"], r.kind, r.body["alert_id"], r.region, r.branch, r.body.get("counter"),
                 r.body.get("level"), r.body.get("raised_at") or r.body.get("at"), now,
                 r.raw or json.dumps(r.body, ensure_ascii=False, separators=(",", ":"))) for r in sequenced]
        bad = [_quarantined(now, topic, payload, reason) for topic, payload, reason in quarantine]
        event_rows = [row for r in records if r.kind == "events" for row in _event_rows(r, now)]

        def work():
            new = 0
            if rows:
                new = self._insert_records(rows)
            kept = self._insert_events(event_rows) if event_rows else 0
            if bad:
                self._conn.cursor().executemany(self._sql(
                    "INSERT INTO quarantine (received_at, topic, reason, payload, payload_size, payload_sha256) "
                    "VALUES (?,?,?,?,?,?)"), bad)
            statuses = heartbeats = 0
            for r in fleet_updates:
                if r.kind == "status":
                    statuses += self._status(r, now)
                else:
                    heartbeats += self._heartbeat(r, now)
            return new, statuses, heartbeats, kept

        new, statuses, heartbeats, kept = self._transaction(work)
        self._days_made.update(row[2] for row in event_rows)
        return IngestResult(new, len(rows) - new, len(bad), statuses, heartbeats, kept, len(event_rows) - kept)

    def _insert_records(self, rows) -> int:
        # Either key refuses a copy: (gateway_id, seq) a resend of the same row, (gateway_id,
        # alert_id) the same alert under a new seq. Both are receipted all the same.
        cur = self._conn.cursor()
        cur.executemany(self._sql(
            "INSERT INTO records (gateway_id, seq, type, alert_id, region, branch, counter, level, at, received_at, "
            "payload) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"), rows)
        return cur.rowcount

    def _insert_events(self, rows) -> int:
        self._make_days({row[2] for row in rows} - self._days_made)
        return self._write_events(rows)

    def _write_events(self, rows) -> int:
        cur = self._conn.cursor()
        cur.executemany(self._sql(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({','.join('?' * len(EVENT_COLUMNS))}) "
            "ON CONFLICT DO NOTHING"), rows)
        return cur.rowcount

    def _make_days(self, days) -> None:
        """PostgreSQL: the day partitions these events go in (SQLite keeps one table)."""

    def events(self, *, since_epoch: float | None = None, until_epoch: float | None = None,
               gateway_id: str | None = None, limit: int | None = None) -> list[dict]:
        """Uploaded events in time order, with features decoded."""
        where, params = [], []
        for clause, value in (("ts_epoch >= ?", since_epoch), ("ts_epoch < ?", until_epoch),
                              ("gateway_id = ?", gateway_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = "SELECT * FROM events" + (" WHERE " + " AND ".join(where) if where else "") + \
              " ORDER BY ts_epoch, gateway_id, event_id" + (f" LIMIT {int(limit)}" if limit else "")
        rows = self._query(sql, params)
        for row in rows:
            row["features"] = None if row["features"] is None else json.loads(row["features"])
            row["reasons"] = json.loads(row["reasons"])
        return rows

    def add_labels(self, labels, *, file: str, imported_at: float) -> int:
        """Keep case-file labels (centre/labels.py), each once however often its file is imported;
        returns how many were new."""
        rows = [(c.label, c.source, c.case_number, c.event_id, c.gateway_id, c.account_hash, c.from_epoch,
                 c.to_epoch, file, c.line, imported_at, c.typology) for c in labels]
        if not rows:
            return 0

        def work():
            cur = self._conn.cursor()
            cur.executemany(self._sql(
                "INSERT INTO labels (label, source, case_number, event_id, gateway_id, account_hash, from_epoch, "
                "to_epoch, file, line, imported_at, typology) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"),
                rows)
            return cur.rowcount
        return self._transaction(work)

    def labels(self) -> list:
        from counterguard.centre.labels import CaseLabel

        return [CaseLabel(r["line"], r["label"], r["source"], r["case_number"], r["event_id"], r["gateway_id"],
                          r["account_hash"], r["from_epoch"], r["to_epoch"], r["typology"])
                for r in self._query("SELECT * FROM labels ORDER BY id")]

    def alert_events(self) -> dict:
        """(gateway_id, alert_id) -> (event_id, raised by branch staff) for every alert."""
        out = {}
        for r in self._query("SELECT gateway_id, alert_id, payload FROM records WHERE type = 'alert' ORDER BY id"):
            body = json.loads(r["payload"])
            out[(r["gateway_id"], r["alert_id"])] = (body.get("event_id"), "teller_report" in (body.get("reasons") or ()))
        return out

    def event_count(self) -> int:
        return self._query("SELECT count(*) AS n FROM events")[0]["n"]

    def purge_events(self, keep_days: int, now: float | None = None) -> int:
        """Drop uploaded events whose day is more than ``keep_days`` before today (UTC); returns how many."""
        now = time.time() if now is None else now
        cutoff = datetime.fromtimestamp(now - keep_days * 86400.0, timezone.utc).strftime("%Y-%m-%d")
        return self._transaction(lambda: self._drop_days_before(cutoff))

    def _drop_days_before(self, cutoff: str) -> int:
        return self._execute("DELETE FROM events WHERE day < ?", (cutoff,)).rowcount

    def _gateway_row(self, r: Record) -> dict | None:
        self._execute("INSERT INTO gateways (gateway_id, region, branch) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                      (r.gateway_id, r.region, r.branch))
        cur = self._execute(f"SELECT state, bdseq FROM gateways WHERE gateway_id = ?{self.lock_rows}", (r.gateway_id,))
        state, bdseq = cur.fetchone()
        return {"state": state, "bdseq": bdseq}

    def _status(self, r: Record, now: float) -> int:
        body = r.body
        if not fleet.supersedes(body, self._gateway_row(r)):
            return 0
        versions = [_version_text(body.get(k)) for k in VERSION_FIELDS]
        self._execute("UPDATE gateways SET region = ?, branch = ?, state = ?, bdseq = ?, status_ts = ?, "
                      "status_received_at = ?, model_version = COALESCE(?, model_version), "
                      "watchlist_version = COALESCE(?, watchlist_version), "
                      "thresholds_version = COALESCE(?, thresholds_version), "
                      "model_manifest_version = COALESCE(?, model_manifest_version), "
                      "software_version = COALESCE(?, software_version), "
                      "downlink_rejected = COALESCE(?, downlink_rejected) WHERE gateway_id = ?",
                      (r.region, r.branch, body["state"], body["bdseq"], body["ts"], now, *versions,
                       body.get("downlink_rejected"), r.gateway_id))
        self._shadow(r)
        self._lists(r)
        self._waiting(r)
        return 1

    def _waiting(self, r: Record) -> None:
        if isinstance(r.body.get("downlink_waiting"), list):
            self._execute("UPDATE gateways SET downlink_waiting = ? WHERE gateway_id = ?",
                          (json.dumps(sorted(map(str, r.body["downlink_waiting"]))), r.gateway_id))

    def _lists(self, r: Record) -> None:
        if isinstance(r.body.get("lists"), dict):
            self._execute("UPDATE gateways SET lists = ? WHERE gateway_id = ?",
                          (json.dumps(r.body["lists"], sort_keys=True), r.gateway_id))

    def _shadow(self, r: Record) -> None:
        # Set as reported, null included: a retired challenger must show as none, not as the last one.
        if "shadow_manifest_version" in r.body:
            self._execute("UPDATE gateways SET shadow_version = ?, shadow_manifest_version = ? WHERE gateway_id = ?",
                          (_version_text(r.body.get("shadow_version")),
                           _version_text(r.body.get("shadow_manifest_version")), r.gateway_id))

    def _heartbeat(self, r: Record, now: float) -> int:
        body = r.body
        if not fleet.heartbeat_is_current(body["bdseq"], self._gateway_row(r)):
            return 0
        versions = [_version_text(body.get(k)) for k in VERSION_FIELDS[:4]]
        self._execute("UPDATE gateways SET last_heartbeat_at = ?, heartbeat_ts = ?, outbox_depth = ?, "
                      "oldest_unreceipted_age_s = ?, model_version = COALESCE(?, model_version), "
                      "watchlist_version = COALESCE(?, watchlist_version), "
                      "thresholds_version = COALESCE(?, thresholds_version), "
                      "model_manifest_version = COALESCE(?, model_manifest_version), "
                      "downlink_rejected = COALESCE(?, downlink_rejected) WHERE gateway_id = ?",
                      (now, body["ts"], body["outbox_depth"], body.get("oldest_unreceipted_age_s"), *versions,
                       body.get("downlink_rejected"), r.gateway_id))
        self._shadow(r)
        self._lists(r)
        self._waiting(r)
        return 1

    # -- reading --------------------------------------------------------------------------------
    @staticmethod
    def _filters(region=None, branch=None, level=None, kind=None) -> tuple[str, list]:
        where, params = [], []
        for column, value in (("region", region), ("branch", branch), ("level", level), ("type", kind)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        return (" AND " + " AND ".join(where)) if where else "", params

    @staticmethod
    def _decode(rows: list[dict]) -> list[dict]:
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    def records(self, *, after: int = 0, kind: str | None = None, region=None, branch=None, level=None,
                limit: int = 500) -> list[dict]:
        """Stored records with ``id > after``, oldest first, each with its decoded ``payload``."""
        where, params = self._filters(region, branch, level, kind)
        return self._decode(self._query(
            f"SELECT id, type, gateway_id, seq, alert_id, region, branch, level, received_at, payload FROM records "
            f"WHERE id > ?{where} ORDER BY id LIMIT ?", (after, *params, int(limit))))

    def latest_alerts(self, *, region=None, branch=None, level=None, limit: int = 200) -> list[dict]:
        """The newest alerts, oldest first."""
        where, params = self._filters(region, branch, level, "alert")
        rows = self._query(f"SELECT id, type, gateway_id, seq, alert_id, region, branch, level, received_at, payload "
                           f"FROM records WHERE 1=1{where} ORDER BY id DESC LIMIT ?", (*params, int(limit)))
        return self._decode(rows[::-1])

    def find_alerts(self, *, region=None, branch=None, level=None, since: str | None = None,
                    until: str | None = None, search: str | None = None, limit: int | None = 200) -> list[dict]:
        """The newest alerts raised in [since, until) (RFC 3339, UTC), oldest first. ``search``: an
        alert id, or an account's keyed hash (the uploaded event's account_hash, or a customer, phone
        or payee hash the alert carries)."""
        where, params = self._filters(region, branch, level, "alert")
        for clause, value in ((" AND at >= ?", since), (" AND at < ?", until)):
            if value:
                where += clause
                params.append(value)
        if not search:
            rows = self._query(f"SELECT id, type, gateway_id, seq, alert_id, region, branch, level, received_at, "
                               f"payload FROM records WHERE 1=1{where} ORDER BY id DESC"
                               + ("" if limit is None else f" LIMIT {int(limit)}"), params)
            return self._decode(rows[::-1])
        events = {(r["gateway_id"], r["event_id"]) for r in
                  self._query("SELECT gateway_id, event_id FROM events WHERE account_hash = ?", (search,))}
        # Candidates by SQL (the id, the hash in the payload, a gateway that saw the account), then exactly.
        cond, extra = ["alert_id = ?"], [search]
        if search.isalnum():   # no LIKE wildcards in it
            cond.append("payload LIKE ?")
            extra.append(f"%{search}%")
        gateways = sorted({g for g, _ in events})
        if gateways:
            cond.append(f"gateway_id IN ({','.join('?' * len(gateways))})")
            extra += gateways
        rows = self._decode(self._query(
            f"SELECT id, type, gateway_id, seq, alert_id, region, branch, level, received_at, payload FROM records "
            f"WHERE 1=1{where} AND ({' OR '.join(cond)}) ORDER BY id", (*params, *extra)))
        hashes = ("customer_id_hash", "customer_phone_hash", "payee_account_hash")
        rows = [r for r in rows if r["alert_id"] == search or (r["gateway_id"], r["payload"].get("event_id")) in events
                or any(r["payload"].get(h) == search for h in hashes)]
        return rows if limit is None else rows[-int(limit):]

    def trail(self, alert_ids) -> list[dict]:
        """Acknowledgements, outcomes and escalations of these alerts, oldest first."""
        ids = list(dict.fromkeys(alert_ids))
        out: list[dict] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out += self._query(f"SELECT id, type, gateway_id, seq, alert_id, region, branch, level, received_at, payload "
                               f"FROM records WHERE type <> 'alert' AND alert_id IN ({marks}) ORDER BY id", chunk)
        return self._decode(sorted(out, key=lambda r: r["id"]))

    def last_id(self) -> int:
        return self._query("SELECT MAX(id) AS n FROM records")[0]["n"] or 0

    def count(self, kind: str | None = None) -> int:
        where, params = self._filters(kind=kind)
        return self._query(f"SELECT COUNT(*) AS n FROM records WHERE 1=1{where}", params)[0]["n"]

    def gateways(self) -> list[dict]:
        return self._query("SELECT * FROM gateways ORDER BY region, branch, gateway_id")

    def gateway(self, gateway_id: str) -> dict | None:
        rows = self._query("SELECT * FROM gateways WHERE gateway_id = ?", (gateway_id,))
        return rows[0] if rows else None

    def quarantined(self, limit: int = 100) -> list[dict]:
        """The latest quarantined messages: ``payload`` is at most the first QUARANTINE_KEEP bytes,
        ``size`` and ``sha256`` are the whole payload's (None for messages kept whole before)."""
        return self._query("SELECT id, received_at, topic, reason, payload, payload_size AS size, "
                           "payload_sha256 AS sha256 FROM quarantine ORDER BY id DESC LIMIT ?", (int(limit),))

    def quarantine_count(self) -> int:
        return self._query("SELECT COUNT(*) AS n FROM quarantine")[0]["n"]

    def alert_index(self) -> list[dict]:
        """Every alert's identity, place, level and time (no payload), oldest first."""
        return self._query("SELECT gateway_id, alert_id, region, branch, level, at FROM records "
                           "WHERE type = 'alert' ORDER BY id")

    def staff_raised_alerts(self) -> set[tuple[str, str]]:
        """(gateway_id, alert_id) of the alerts branch staff raised themselves (reason teller_report)."""
        rows = self._query("SELECT gateway_id, alert_id, payload FROM records WHERE type = 'alert' AND payload LIKE ?",
                           ("%teller_report%",))
        return {(r["gateway_id"], r["alert_id"]) for r in rows
                if "teller_report" in (json.loads(r["payload"]).get("reasons") or ())}

    def outcomes(self) -> list[dict]:
        """Every recorded outcome (gateway_id, alert_id, outcome, handled_at: 1/2/3 or None when the
        gateway did not record the level, signals: the customer's answers to the caring dialogue's
        signals, {} when none), in the order they were stored."""
        rows = self._query("SELECT gateway_id, alert_id, payload FROM records WHERE type = 'outcome' ORDER BY id")
        out = []
        for r in rows:
            body = json.loads(r["payload"])
            # The caring dialogue's answers travel as ``signal.<name>`` items (gateway/store/db.py).
            given = {a["key"]: a["answer"] for a in body.get("answers") or ()}
            said = {s: given[f"signal.{s}"] for s in SIGNALS if f"signal.{s}" in given}
            out.append({"gateway_id": r["gateway_id"], "alert_id": r["alert_id"], "outcome": body["outcome"],
                        "handled_at": body.get("handled_at"), "signals": said})
        return out

    # -- downlink bookkeeping -------------------------------------------------------------------
    # -- lists of persons ----------------------------------------------------------------------------
    def person_entries(self, kind: str) -> list[tuple]:
        """(hash, label, first day, last day) of every entry of a list of persons, by hash."""
        return [(r["hash"], r["label"], r["first_day"], r["last_day"]) for r in self._query(
            "SELECT hash, label, first_day, last_day FROM person_entries WHERE kind = ? ORDER BY hash", (kind,))]

    def record_list_push(self, kind: str, manifests: list[dict], *, full: bool, add=(), remove=()) -> None:
        """Keep the manifests of one list push (kind, version, target, topic, issued_at, summary,
        envelope) and the list as it now stands, in one transaction."""
        def work():
            for m in manifests:
                self._execute("INSERT INTO manifests (kind, version, target, topic, issued_at, summary, envelope, "
                              "published_at) VALUES (?,?,?,?,?,?,?,?)",
                              (kind, m["version"], m["target"], m["topic"], m["issued_at"], json.dumps(m["summary"]),
                               m["envelope"], time.time()))
            cur = self._conn.cursor()
            if full:
                self._execute("DELETE FROM person_entries WHERE kind = ?", (kind,))
            cur.executemany(self._sql("DELETE FROM person_entries WHERE kind = ? AND hash = ?"),
                            [(kind, h) for h in remove])
            cur.executemany(self._sql("DELETE FROM person_entries WHERE kind = ? AND hash = ?"),
                            [(kind, e[0]) for e in add])
            cur.executemany(self._sql("INSERT INTO person_entries (kind, hash, label, first_day, last_day) "
                                      "VALUES (?,?,?,?,?)"), [(kind, *e) for e in add])
        self._transaction(work)

    def last_version(self, kind: str) -> int:
        rows = self._query("SELECT MAX(version) AS v FROM manifests WHERE kind = ?", (kind,))
        return rows[0]["v"] or 0

    def record_manifest(self, *, kind: str, version: int, target: str, topic: str, issued_at: str, summary: dict,
                        envelope: str, watchlist: list[str] | None = None) -> None:
        """Keep a pushed manifest (and, for a watchlist, the target's list as it now stands)."""
        def work():
            self._execute("INSERT INTO manifests (kind, version, target, topic, issued_at, summary, envelope, "
                          "published_at) VALUES (?,?,?,?,?,?,?,?)",
                          (kind, version, target, topic, issued_at, json.dumps(summary), envelope, time.time()))
            if watchlist is not None:
                self._execute("DELETE FROM watchlist_entries WHERE target = ?", (target,))
                self._conn.cursor().executemany(self._sql(
                    "INSERT INTO watchlist_entries (target, hash) VALUES (?,?)"), [(target, h) for h in watchlist])
        self._transaction(work)

    def manifests(self, kind: str | None = None) -> list[dict]:
        where, params = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        rows = self._query(f"SELECT kind, version, target, topic, issued_at, summary, published_at FROM manifests "
                           f"{where} ORDER BY kind, version", params)
        for row in rows:
            row["summary"] = json.loads(row["summary"])
        return rows

    def manifest_body(self, kind: str, version: int) -> dict | None:
        """The manifest as it was signed (the centre's own record; gateways verify the signature)."""
        rows = self._query("SELECT envelope FROM manifests WHERE kind = ? AND version = ?", (kind, int(version)))
        if not rows:
            return None
        return json.loads(base64.b64decode(json.loads(rows[0]["envelope"])["manifest"]))

    # -- canaries (centre/canary.py) -------------------------------------------------------------
    def start_canary(self, *, challenger: str, challenger_manifest: int, previous: str, previous_manifest,
                     gateways: list[str], percent: float, started_at: float) -> int:
        def work():
            self._execute("UPDATE canaries SET state = 'superseded', ended_at = ? WHERE state = 'canary'",
                          (started_at,))
            cur = self._execute(
                "INSERT INTO canaries (challenger, challenger_manifest, previous, previous_manifest, gateways, percent, "
                "started_at, state, reason) VALUES (?,?,?,?,?,?,?,'canary','')",
                (challenger, challenger_manifest, previous, previous_manifest, json.dumps(gateways), percent,
                 started_at))
            return cur.lastrowid if self.placeholder == "?" else self._execute(
                "SELECT max(id) FROM canaries").fetchone()[0]
        return self._transaction(work)

    def end_canary(self, canary_id: int, *, state: str, reason: str, at: float) -> None:
        self._transaction(lambda: self._execute(
            "UPDATE canaries SET state = ?, reason = ?, ended_at = ? WHERE id = ?", (state, reason, at, canary_id)))

    def canary_alerts(self, gateways: list[str], model_version: str, since: float) -> list[dict]:
        """Alerts from these gateways decided by ``model_version``, stored since ``since``."""
        if not gateways:
            return []
        marks = ",".join("?" * len(gateways))
        rows = self._query(f"SELECT gateway_id, alert_id, level, payload FROM records WHERE type = 'alert' "
                           f"AND received_at >= ? AND gateway_id IN ({marks}) ORDER BY id", (since, *gateways))
        return [{"gateway_id": r["gateway_id"], "alert_id": r["alert_id"], "level": r["level"]} for r in rows
                if str(json.loads(r["payload"]).get("model_version")) == model_version]

    def canaries(self, *, active_only: bool = False) -> list[dict]:
        rows = self._query("SELECT * FROM canaries" + (" WHERE state = 'canary'" if active_only else "") +
                           " ORDER BY id")
        for row in rows:
            row["gateways"] = json.loads(row["gateways"])
        return rows

    def watchlist_targets(self) -> list[str]:
        """Targets that have stop-payment entries of their own."""
        return [r["target"] for r in self._query("SELECT DISTINCT target FROM watchlist_entries ORDER BY target")]

    def watchlist(self, target: str) -> list[str]:
        return [r["hash"] for r in self._query("SELECT hash FROM watchlist_entries WHERE target = ? ORDER BY hash",
                                               (target,))]


class SqliteStore(CentreStore):
    def __init__(self, path):
        path = Path(path)
        _create_private(path)
        deadline = time.monotonic() + 30
        while True:
            conn = None
            try:
                conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
                # Switching a new file to WAL does not wait for a busy lock: two workers opening the
                # same new file together may see "locked" here; the loop gives the other one time.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a crash of the process
                conn.execute("PRAGMA busy_timeout=30000")
                break
            except sqlite3.OperationalError as exc:
                if conn is not None:
                    conn.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(f"cannot open the centre store {path}: {exc}") from None
                time.sleep(0.05)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the centre store {path}: {exc}") from None
        super().__init__(_SqliteTx(conn), str(path))

    def _begin(self) -> None:
        # Take the write lock up front, so two workers on one file queue instead of deadlocking.
        self._conn.execute("BEGIN IMMEDIATE")


def _create_private(path: Path) -> None:
    """Create a new store file 0600 whatever the umask; SQLite gives its -wal and -shm the same mode."""
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreError(f"cannot create the centre store {path}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class _SqliteTx:
    """sqlite3 in autocommit mode with explicit BEGIN, so reads never hold a transaction open."""

    def __init__(self, conn):
        self._c = conn

    def cursor(self):
        return self._c.cursor()

    def execute(self, sql, params=()):
        return self._c.execute(sql, params)

    def commit(self):
        if self._c.in_transaction:
            self._c.execute("COMMIT")

    def rollback(self):
        if self._c.in_transaction:
            self._c.execute("ROLLBACK")

    def close(self):
        self._c.close()


class PostgresStore(CentreStore):
    placeholder = "%s"
    autoid = "BIGSERIAL PRIMARY KEY"
    lock_rows = " FOR UPDATE"
    events_partitioned = " PARTITION BY RANGE (day)"

    def _write_events(self, rows) -> int:
        # COPY into a session-local staging table, then one INSERT ... SELECT that skips events already
        # kept: a batch of 500 as one statement instead of 500, the same once-only rule. IF NOT EXISTS
        # each time: a rolled-back transaction or a new connection takes the table with it; the commit
        # empties it.
        cur = self._conn.cursor()
        columns = ", ".join(EVENT_COLUMNS)
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS events_staging (LIKE events) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY events_staging ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(f"INSERT INTO events ({columns}) SELECT {columns} FROM events_staging ON CONFLICT DO NOTHING")
        return cur.rowcount

    def _make_days(self, days) -> None:
        # Inside the ingest transaction, after _begin's lock: workers never create one day twice.
        for day in sorted(days):
            following = (datetime.strptime(day, "%Y-%m-%d") + timedelta(days=1)).strftime("%Y-%m-%d")
            self._execute(f"CREATE TABLE IF NOT EXISTS events_{day.replace('-', '')} PARTITION OF events "
                          f"FOR VALUES FROM ('{day}') TO ('{following}')")

    def _drop_days_before(self, cutoff: str) -> int:
        # A whole day's partition goes at once: no row-by-row delete, no table bloat.
        gone = 0
        parts = self._execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                              "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'").fetchall()
        for (name,) in parts:
            day = f"{name[7:11]}-{name[11:13]}-{name[13:15]}"
            if name.startswith("events_") and day < cutoff:
                gone += self._execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                self._execute(f"DROP TABLE {name}")
                self._days_made.discard(day)
        return gone

    def __init__(self, dsn: str):
        try:
            import psycopg
        except ImportError:
            raise StoreError("the PostgreSQL store needs psycopg: pip install 'counterguard[centre]'") from None
        self._psycopg = psycopg
        self._dsn = dsn
        try:
            conn = psycopg.connect(dsn, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the centre store {_safe(dsn)}: {exc}") from None
        super().__init__(conn, _safe(dsn))

    def _reconnected(self, exc) -> bool:
        # A server restart or a dropped connection: connect again, once per failure, and retry.
        if not (self._conn.closed or isinstance(exc, (self._psycopg.OperationalError, self._psycopg.InterfaceError))):
            return False
        try:
            self._conn.close()
            self._conn = self._psycopg.connect(self._dsn, connect_timeout=10)
        except self._psycopg.Error as again:
            log.error("centre store %s: cannot reconnect: %s", self.where, again)
            return False
        log.warning("centre store %s: connection lost (%s); reconnected", self.where, exc)
        return True

    def _begin(self) -> None:
        # Writers take turns (as SQLite's single writer does), so record ids become visible in
        # order: a dashboard that asks for "ids after N" never misses a row committed late.
        self._execute("SELECT pg_advisory_xact_lock(74232)")

    def _end_read(self) -> None:
        self._conn.commit()  # end the read's implicit transaction so the next read sees new rows

    def _migrate(self) -> None:
        # One worker at a time creates the tables (two starting together would race on CREATE).
        with self._lock:
            self._execute("SELECT pg_advisory_lock(74231)")
            try:
                super()._migrate()
            finally:
                self._execute("SELECT pg_advisory_unlock(74231)")
                self._conn.commit()

    def _retryable(self, exc) -> bool:
        errors = self._psycopg.errors
        return isinstance(exc, (errors.DeadlockDetected, errors.SerializationFailure))


def _safe(dsn: str) -> str:
    """A DSN without its password, for messages."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return dsn


def open_store(url: str) -> CentreStore:
    """``postgresql://...`` (or ``postgres://``) opens PostgreSQL; anything else is a SQLite file path
    (``sqlite:///path`` is accepted too)."""
    url = str(url)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///"):]
    return SqliteStore(url)
