"""Labels: what became of the events the gateways uploaded, from every source the centre has.

A model learns from labelled events, and a bank learns its labels late and from several places:

- **supervisors' outcomes** on alerts (``confirmed_fraud``, ``customer_dissuaded`` and
  ``police_called`` are fraud, ``false_alarm`` is not), the last one recorded counting;
- **alerts branch staff raised themselves** (a teller's report on an event the model let through):
  fraud unless its outcome says false alarm;
- **case files from outside** (police-confirmed cases, the bank's own investigations), imported
  with ``counterguard centre label FILE``: each line names an event (``event_id``, optionally with
  its ``gateway_id``) or an account and a time window, and says ``fraud`` or ``not_fraud``.

A case file's lines are kept as they were given (the account as its keyed hash, never in clear),
so a line that matches no event today links itself to events that arrive later (a gateway that was
offline uploads late). Where sources disagree an imported case file wins over an outcome, and fraud
wins over not-fraud within one source: a police-confirmed case is the strongest word there is.

An event nobody labelled within ``honest_after_days`` counts as honest for training (fraud that
went through is usually reported within weeks); a younger unlabelled event is left out of training
altogether rather than guessed.

File format, JSON Lines or CSV with a header (``.csv``)::

    {"account": "6222020200112233445", "from": "2026-11-03T09:00:00+08:00", "to": "2026-11-03T12:00:00+08:00",
     "label": "fraud", "source": "police", "case_number": "XA-2026-11873"}
    {"event_id": "T3-20261103-0412", "gateway_id": "gw-0001", "label": "not_fraud", "source": "investigation",
     "case_number": "INV-2231"}

``account`` (digits) or ``account_hash`` (64 hex digits); ``from``/``to`` are RFC 3339 times or
dates (a date ``to`` includes that whole day); an optional ``typology`` names the kind of scam, so
``centre compare`` can judge models per typology.
"""

from __future__ import annotations

import csv
import io
import json
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from counterguard.core import jsontext
from counterguard.core.features import FEATURES_VERSION, N_FEATURES, V2_FEATURES, pad_row
from counterguard.core.manifest import ManifestError, account_hash, is_account_hash

LABELS = ("fraud", "not_fraud")
OUTCOME_LABEL = {"confirmed_fraud": "fraud", "customer_dissuaded": "fraud", "police_called": "fraud",
                 "false_alarm": "not_fraud"}
FIELDS = ("event_id", "gateway_id", "account", "account_hash", "from", "to", "label", "source", "case_number",
          "typology")
TEXT_MAX = 200
DAY_S = 86400.0


class LabelFileError(ValueError):
    """The label file cannot be read at all (not a single line could be judged)."""


@dataclass(frozen=True)
class CaseLabel:
    """One line of a case file, as kept: what it points at, and what it says."""

    line: int
    label: str
    source: str
    case_number: str
    event_id: str = ""
    gateway_id: str = ""
    account_hash: str = ""
    from_epoch: float = 0.0
    to_epoch: float = 0.0
    typology: str = ""  # the kind of scam, when the case file says (docs/typologies.md names)

    def describe(self) -> str:
        if self.event_id:
            return f"event {self.event_id}" + (f" at {self.gateway_id}" if self.gateway_id else "")
        window = f"{utc_text(self.from_epoch)} to {utc_text(self.to_epoch)}"
        return f"account hash {self.account_hash[:12]}… from {window}"


@dataclass
class ImportReport:
    lines: int = 0
    stored: int = 0
    already: int = 0
    by_label: Counter = field(default_factory=Counter)
    linked_events: int = 0
    unlinked: list = field(default_factory=list)   # (line, what it pointed at)
    problems: list = field(default_factory=list)   # (line, what is wrong)

    def text(self, name: str) -> str:
        out = [f"{name}: {self.lines} line(s) read; {self.stored} label(s) stored "
               f"({self.by_label['fraud']} fraud, {self.by_label['not_fraud']} not fraud), "
               f"{self.already} already known; linked to {self.linked_events} uploaded event(s)"]
        for line, what in self.unlinked:
            out.append(f"{name}:{line}: no uploaded event matches {what} yet (kept: it links itself when one "
                       "arrives)")
        for line, problem in self.problems:
            out.append(f"{name}:{line}: refused: {problem}")
        return "\n".join(out)


def utc_text(epoch: float) -> str:
    """An epoch as RFC 3339 UTC to the second, as the centre's reports print times."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _time(value, name: str, *, end: bool) -> float:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be an RFC 3339 time or a date, got {value!r}")
    text = value.strip()
    try:
        if len(text) == 10:  # a date: from its start, or (as "to") to the end of that day
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return (day + timedelta(days=1) if end else day).timestamp()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} {value!r} is not an RFC 3339 time or a date (2026-11-03)") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name} {value!r} needs a UTC offset (e.g. +08:00)")
    return moment.timestamp()


def _text(row: dict, name: str, *, required: bool = False) -> str:
    value = row.get(name)
    if value is None or value == "":
        if required:
            raise ValueError(f"{name} is missing")
        return ""
    if not isinstance(value, str):
        value = str(value) if isinstance(value, int) and not isinstance(value, bool) else None
        if value is None:
            raise ValueError(f"{name} must be text")
    value = value.strip()
    if len(value) > TEXT_MAX or any(not c.isprintable() for c in value):
        raise ValueError(f"{name} must be printable text of at most {TEXT_MAX} characters")
    return value


def parse_line(row: dict, line: int, key: bytes | None) -> CaseLabel:
    """One case-file line as a label; ValueError saying what is wrong (never repeating an account)."""
    unknown = set(row) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(FIELDS)})")
    label = _text(row, "label", required=True)
    if label not in LABELS:
        raise ValueError(f"label must be fraud or not_fraud, got {label!r}")
    source = _text(row, "source", required=True)
    case_number = _text(row, "case_number")
    typology = _text(row, "typology")
    event_id, gateway_id = _text(row, "event_id"), _text(row, "gateway_id")
    account, hashed = _text(row, "account"), _text(row, "account_hash").lower()
    if account and hashed:
        raise ValueError("give account or account_hash, not both")
    if account:
        if not (6 <= len(account) <= 34 and account.isascii() and account.isdigit()):
            raise ValueError("account must be 6 to 34 digits" + (" (a keyed hash goes in account_hash)"
                                                                  if is_account_hash(account.lower()) else ""))
        if key is None:
            raise ValueError("account given in clear but no watchlist key to hash it with "
                             "(--watchlist-key, or [signing] watchlist_key in the centre config)")
        try:
            hashed = account_hash(key, account)
        except ManifestError:
            raise ValueError("account must be 6 to 34 digits") from None
    elif hashed and not is_account_hash(hashed):
        raise ValueError("account_hash must be 64 hex digits (the keyed hash under the watchlist key)")
    has_window = bool(row.get("from") or row.get("to"))
    if event_id:
        if hashed or has_window:
            raise ValueError("give event_id, or an account with a time window, not both")
        return CaseLabel(line, label, source, case_number, event_id=event_id, gateway_id=gateway_id,
                         typology=typology)
    if not hashed:
        raise ValueError("needs event_id, or account (or account_hash) with from and to")
    if gateway_id:
        raise ValueError("gateway_id narrows an event_id; an account's window covers every gateway")
    if not row.get("from") or not row.get("to"):
        raise ValueError("an account needs from and to: the time window of the case")
    start, end = _time(row.get("from"), "from", end=False), _time(row.get("to"), "to", end=True)
    if end <= start:
        raise ValueError("to must be after from")
    if end - start > 366 * DAY_S:
        raise ValueError("the window is longer than a year: name the events more narrowly")
    return CaseLabel(line, label, source, case_number, account_hash=hashed, from_epoch=start, to_epoch=end,
                     typology=typology)


def read_file(text: str, *, csv_format: bool, key: bytes | None) -> tuple[list[CaseLabel], list, int]:
    """(labels, problems as (line, message), lines read) from a case file's text."""
    labels, problems, lines = [], [], 0
    if csv_format:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise LabelFileError("no header line: the first line must name the columns "
                                 f"(some of {', '.join(FIELDS)})")
        rows = ((reader.line_num, {k: v for k, v in row.items() if v not in (None, "")}, None) for row in reader)
    else:
        rows = _jsonl(text)
    for line, row, error in rows:
        lines += 1
        if error is None and None in row:  # a CSV line with more cells than the header
            error = "more cells than the header has columns"
        if error is None:
            try:
                labels.append(parse_line(row, line, key))
                continue
            except ValueError as exc:
                error = str(exc)
        problems.append((line, error))
    return labels, problems, lines


def _jsonl(text: str):
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            row = jsontext.loads(raw)
        except ValueError as exc:
            yield n, {}, f"not JSON: {exc}"
            continue
        if not isinstance(row, dict):
            yield n, {}, "each line must be a JSON object"
            continue
        yield n, row, None


def import_file(store, path, *, key: bytes | None, now: float) -> ImportReport:
    """Read a case file, store its good lines (once each, whatever how often it is imported) and
    report what they link to, what links to nothing yet, and every refused line."""
    try:
        raw = open(path, "rb").read()
    except OSError as exc:
        raise LabelFileError(f"cannot read it: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LabelFileError("not UTF-8 text") from None
    labels, problems, lines = read_file(text, csv_format=str(path).lower().endswith(".csv"), key=key)
    new = store.add_labels(labels, file=str(path), imported_at=now)
    report = ImportReport(lines=lines, stored=new, already=len(labels) - new, problems=problems)
    report.by_label.update(label.label for label in labels)
    index = EventIndex(store.events())
    linked = set()
    for label in labels:
        found = index.matching(label)
        if not found:
            report.unlinked.append((label.line, label.describe()))
        linked.update(found)
    report.linked_events = len(linked)
    return report


class EventIndex:
    """Uploaded events by (gateway, event id), by event id, and by account hash in time order."""

    def __init__(self, events: list[dict]):
        self.events = events
        self.by_key = {(e["gateway_id"], e["event_id"]): i for i, e in enumerate(events)}
        self.by_id: dict[str, list[int]] = defaultdict(list)
        by_account: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for i, e in enumerate(events):
            self.by_id[e["event_id"]].append(i)
            if e.get("account_hash"):
                by_account[e["account_hash"]].append((e["ts_epoch"], i))
        self.by_account = {k: sorted(v) for k, v in by_account.items()}

    def matching(self, label: CaseLabel) -> list[int]:
        """Positions of the events a case label points at."""
        if label.event_id:
            if label.gateway_id:
                i = self.by_key.get((label.gateway_id, label.event_id))
                return [] if i is None else [i]
            return list(self.by_id.get(label.event_id, ()))
        times = self.by_account.get(label.account_hash, [])
        lo = bisect_left(times, (label.from_epoch, -1))
        hi = bisect_right(times, (label.to_epoch, -1))
        return [i for _, i in times[lo:hi]]


def with_features(events: list[dict]) -> list[dict]:
    """The events that carry model inputs of this release's shape (older uploads may carry none).

    Version 2 rows, from gateways not yet upgraded, are a prefix of version 3 and come padded with
    the new columns at 0, which is what version 3 says when the lists and answers are not known
    (core/features.py ``pad_row``)."""
    out = []
    for e in events:
        features, version = e.get("features"), e.get("features_version")
        if not features:
            continue
        if version == 2 and len(features) == V2_FEATURES:
            out.append({**e, "features": pad_row(features), "features_version": FEATURES_VERSION})
        elif version == FEATURES_VERSION and len(features) == N_FEATURES:
            out.append(e)
    return out


def labels_complete_before(now: float, honest_after_days: float) -> float:
    """The time before which an event's labels are complete: an unlabelled event older than this
    counts as honest. Among younger events only alerts and reported frauds carry labels yet."""
    return now - honest_after_days * DAY_S


def labelled_events(store, *, now: float, honest_after_days: float, since_epoch: float | None = None,
                    until_epoch: float | None = None) -> tuple[list[dict], Counter]:
    """Uploaded events with ``label`` (1 fraud, 0 honest) and ``label_source`` set, oldest first,
    and ``answers`` where the customer answered the caring dialogue on the event's alert (the
    ``signal.<name>`` items of its outcome); events without a label and younger than
    ``honest_after_days`` are left out. Also returns how many events each source labelled."""
    events = store.events(since_epoch=since_epoch, until_epoch=until_epoch)
    index = EventIndex(events)
    # Weakest first; a stronger source overwrites (import > outcome > staff report).
    verdicts: dict[int, tuple[int, str, int]] = {}  # position -> (strength, source, label)

    def put(i: int, strength: int, source: str, label: str) -> None:
        value = 1 if label == "fraud" else 0
        held = verdicts.get(i)
        if held is None or (strength, value) > (held[0], held[2]):
            verdicts[i] = (strength, source, value)

    alerts = store.alert_events()  # (gateway_id, alert_id) -> (event_id, raised by staff)
    recorded = store.outcomes()
    last_outcome = {(o["gateway_id"], o["alert_id"]): o["outcome"] for o in recorded}
    signals_of = {(o["gateway_id"], o["alert_id"]): o["signals"] for o in recorded if o.get("signals")}
    answers: dict[int, dict] = {}  # position -> the customer's answers to the caring dialogue
    for (gw, alert_id), (event_id, by_staff) in alerts.items():
        i = index.by_key.get((gw, event_id))
        if i is None:
            continue
        if (gw, alert_id) in signals_of:
            answers[i] = signals_of[(gw, alert_id)]
        outcome = last_outcome.get((gw, alert_id))
        if outcome in OUTCOME_LABEL:
            put(i, 2, "outcome", OUTCOME_LABEL[outcome])
        elif by_staff:
            put(i, 1, "staff_report", "fraud")
    typologies: dict[int, str] = {}
    for label in store.labels():
        for i in index.matching(label):
            put(i, 3, label.source, label.label)
            if label.typology and label.label == "fraud":
                typologies[i] = label.typology
    horizon = labels_complete_before(now, honest_after_days)
    out, counts = [], Counter()
    for i, e in enumerate(events):
        held = verdicts.get(i)
        if i in answers:
            e = {**e, "answers": answers[i]}
        if held is not None:
            e = {**e, "label": held[2], "label_source": held[1], "typology": typologies.get(i, "")}
        elif e["ts_epoch"] < horizon:
            e = {**e, "label": 0, "label_source": "unlabelled", "typology": ""}
        else:
            continue
        counts[e["label_source"]] += 1
        out.append(e)
    return out, counts


def to_json(report: ImportReport) -> str:
    return json.dumps({"lines": report.lines, "stored": report.stored, "already": report.already,
                       "fraud": report.by_label["fraud"], "not_fraud": report.by_label["not_fraud"],
                       "linked_events": report.linked_events,
                       "unlinked": [{"line": n, "points_at": what} for n, what in report.unlinked],
                       "refused": [{"line": n, "problem": p} for n, p in report.problems]})
