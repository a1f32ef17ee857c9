"""``counterguard replay``: run a file of events through the gateway's own stages, in order.

Each event goes through the same validator, local history (a scratch SQLite store, exactly as at
the counter), watchlist, model and decision as a live event, so a replayed verdict is the verdict
the counter would have shown. The centre uses it to try a model or thresholds on yesterday's events.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from counterguard.core import jsontext, wire
from counterguard.core.clock import Clock
from counterguard.core.decision import Thresholds
from counterguard.core.events import SchemaError, canonical_digest, kept_body, parse_event
from counterguard.gateway.scoring.assessor import Assessor
from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.gateway.scoring.person_lists import PersonLists
from counterguard.gateway.scoring.watchlist import Watchlist
from counterguard.gateway.store.db import Store

BATCH = 500  # events per transaction in the scratch store


def verdict_line(ack_body: dict) -> str:
    """One strict JSON line (no NaN, no duplicate keys) per verdict."""
    return json.dumps({k: ack_body[k] for k in ("event_id", "level", "score", "reasons")}, ensure_ascii=False,
                      allow_nan=False)


def _progress(stream, done: int, total: int, started: float) -> None:
    rate = done / max(time.monotonic() - started, 1e-6)
    width = 30
    filled = int(width * done / total) if total else width
    stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} events, {rate:,.0f}/s")
    stream.flush()


def replay(source, out, err, *, watchlist_file: str | None = None, model_path: str | None = None,
           thresholds: Thresholds | None = None, gateway_id: str = "replay", show_progress: bool | None = None) -> int:
    """Write one verdict line per good event to ``out``; report bad lines on ``err``. Returns 0 or 1."""
    model = FraudModel.load(model_path or default_model_path())
    lines = source.readlines() if hasattr(source, "readlines") else list(source)
    if show_progress is None:
        show_progress = hasattr(err, "isatty") and err.isatty()
    bad = 0
    clock = Clock(assume_synced=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="counterguard-replay-") as tmp:
        store = Store(Path(tmp) / "replay.db", synchronous="NORMAL")
        try:
            watchlist = Watchlist(store)
            if watchlist_file:
                watchlist.load_file(watchlist_file)
            assessor = Assessor(store, watchlist, model, thresholds or model.thresholds, persons=PersonLists(store))
            for start in range(0, len(lines), BATCH):
                with store.batch():
                    for number, raw in enumerate(lines[start:start + BATCH], start + 1):
                        text = raw.strip() if isinstance(raw, str) else raw.decode("utf-8", "replace").strip()
                        if not text:
                            continue
                        problem = _one(assessor, text, out, clock, gateway_id)
                        if problem:
                            bad += 1
                            err.write(f"line {number}: {problem}\n")
                if show_progress:
                    _progress(err, min(start + BATCH, len(lines)), len(lines), started)
            if show_progress:
                err.write("\n")
        finally:
            store.close()
    return 1 if bad else 0


def _one(assessor: Assessor, text: str, out, clock: Clock, gateway_id: str) -> str | None:
    try:
        body = jsontext.loads(text)
    except ValueError as exc:
        return f"not JSON: {exc}"
    try:
        event = parse_event(body, assessor.watchlist.identity_key)
    except SchemaError as exc:
        return f"{exc.field}: {exc.detail}"
    body = kept_body(body, event)  # as at the counter: no identity number in clear is kept
    payload = wire.encode_payload(body)
    sha = canonical_digest(body)  # as at the counter: the same event however it was spelled
    earlier = assessor.store.decided(event.event_id)
    if earlier is not None:
        if earlier[0] != sha:
            return f"event_id {event.event_id!r} was already used for a different event"
        out.write(verdict_line(json.loads(earlier[1])) + "\n")  # as the counter would: same answer
        return None
    assessment = assessor.assessment(event)
    verdict = assessment.verdict
    assessor.record(event, payload, sha, verdict, clock.now(), gateway_id, assessment=assessment)
    out.write(verdict_line(verdict.ack_body()) + "\n")
    return None


def main_stdio(path: str, **kwargs) -> int:
    """``counterguard replay``: a file that cannot be read (events, watchlist or model) is one line
    on stderr naming it and exit 2, before anything is scored."""
    from counterguard.gateway.scoring.model import ModelError
    from counterguard.gateway.scoring.watchlist import WatchlistFileError

    try:
        if path == "-":
            return replay(sys.stdin, sys.stdout, sys.stderr, **kwargs)
        try:
            source = open(path, encoding="utf-8")
        except FileNotFoundError:
            raise _Unreadable(f"{path}: no such events file") from None
        except OSError as exc:
            raise _Unreadable(f"{path}: cannot read: {exc.strerror}") from None
        with source:
            try:
                return replay(source, sys.stdout, sys.stderr, **kwargs)
            except UnicodeDecodeError:
                raise _Unreadable(f"{path}: not a UTF-8 text file of events (one JSON event per line)") from None
    except (_Unreadable, ModelError, WatchlistFileError) as exc:
        print(f"counterguard replay: {exc}", file=sys.stderr)
        return 2


class _Unreadable(ValueError):
    pass
