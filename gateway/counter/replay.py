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
from counterguard.gateway.scoring.dialogue import answer_event
from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.gateway.scoring.person_lists import PersonLists
from counterguard.gateway.scoring.watchlist import Watchlist
from counterguard.gateway.store.db import Store

BATCH = 500  # events per transaction in the scratch store


def verdict_line(ack_body: dict, final: dict | None = None) -> str:
    """One strict JSON line (no NaN, no duplicate keys) per verdict; with the customer's answers,
    the first verdict and the ``final`` one after them."""
    line = {k: ack_body[k] for k in ("event_id", "level", "score", "reasons")}
    if final is not None:
        line["final"] = {"level": final["level"], "reasons": final["reasons"]}
    return json.dumps(line, ensure_ascii=False, allow_nan=False)


def _progress(stream, done: int, total: int, started: float) -> None:
    rate = done / max(time.monotonic() - started, 1e-6)
    width = 30
    filled = int(width * done / total) if total else width
    stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} events, {rate:,.0f}/s")
    stream.flush()


def replay(source, out, err, *, watchlist_file: str | None = None, model_path: str | None = None,
           thresholds: Thresholds | None = None, gateway_id: str = "replay", show_progress: bool | None = None,
           lists_dir: str | None = None, answers_file: str | None = None) -> int:
    """Write one verdict line per good event to ``out``; report bad lines on ``err``. Returns 0 or 1.

    ``lists_dir``: ``warned.csv`` and ``restricted.csv`` lists of persons (``centre push-list``'s
    file format), hashed with this replay's key as the events' identity fields are; ``answers_file``:
    the customers' answers, one ``{"event_id", "answers"}`` per line, scored after their event."""
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
            persons = PersonLists(store)
            if lists_dir:
                _load_lists(persons, lists_dir, watchlist.identity_key)
            said = _load_answers(answers_file) if answers_file else None
            assessor = Assessor(store, watchlist, model, thresholds or model.thresholds, persons=persons)
            for start in range(0, len(lines), BATCH):
                with store.batch():
                    for number, raw in enumerate(lines[start:start + BATCH], start + 1):
                        text = raw.strip() if isinstance(raw, str) else raw.decode("utf-8", "replace").strip()
                        if not text:
                            continue
                        problem = _one(assessor, text, out, clock, gateway_id, said)
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


def _load_lists(persons: PersonLists, folder: str, key: bytes) -> None:
    """The lists of persons in ``folder`` (a missing file is an empty list), in force on every day."""
    from counterguard.core.lists import KINDS, LABELS, ListInputError, read_entries

    for kind in KINDS:
        path = Path(folder) / f"{kind.split('_')[0]}.csv"  # warned.csv, restricted.csv
        if not Path(folder).is_dir():
            raise _Unreadable(f"{folder}: no such folder of lists (warned.csv, restricted.csv)")
        if not path.exists():
            continue
        try:
            # A replay looks back: an entry without its own days stands on every day replayed.
            entries = read_entries(path, kind, key, label=LABELS[kind][-1], start="2000-01-01", until="2179-12-31")
        except ListInputError as exc:
            raise _Unreadable("; ".join(exc.problems[:5]) + (" ..." if len(exc.problems) > 5 else "")) from None
        persons.apply(kind, {"version": 1, "full": True, "add": entries})


def _load_answers(path: str) -> dict:
    """{event_id: {signal: answer}} from a file of answers, one JSON object per line."""
    from counterguard.core.dialogue import parse_answers

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _Unreadable(f"{path}: no such answers file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _Unreadable(f"{path}: cannot read the answers: {getattr(exc, 'strerror', None) or exc}") from None
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event_id, answers = parse_answers(jsontext.loads(line))
        except ValueError as exc:  # not JSON, or a SchemaError naming the field
            field = getattr(exc, "field", None)
            raise _Unreadable(f"{path}, line {number}: " + (f"{field}: {exc.detail}" if field else
                                                            f"not JSON: {exc}")) from None
        out[event_id] = answers
    return out


def _one(assessor: Assessor, text: str, out, clock: Clock, gateway_id: str, said: dict | None = None) -> str | None:
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
    final = None
    if said is not None:  # with an answers file every line says its final verdict (the first, if none)
        final = verdict.ack_body()
        if event.event_id in said:
            final = answer_event(assessor.store, event.event_id, said[event.event_id], by=None, stamp=clock.now(),
                                 gateway_id=gateway_id, assessor=assessor).body
    out.write(verdict_line(verdict.ack_body(), final) + "\n")
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
