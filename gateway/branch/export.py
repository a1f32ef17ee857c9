"""``counterguard export-events``: a branch's stored events out of the gateway, for replay or as
labelled cases.

A fraud model can only be judged honestly on the branch's own counter traffic with what the
supervisors found out. The store keeps every event exactly as the terminal sent it, its verdict and
each alert's outcome; this writes them out for the days asked, in event time order:

- plain: one stored payload per line, unchanged, so ``counterguard replay`` reads the file as is;
- ``--labelled``: one case per line, ``{"event", "level", "score", "reasons", "watchlisted",
  "outcome", "answers", "label"}``, the format ``counterguard evaluate --cases`` reads; ``answers``
  is the customer's answers to the caring questions (``{key: yes | no | declined}``, empty when none
  were recorded).

Every line is strict JSON (no NaN or Infinity, no duplicate keys): the gateway refuses such events
at the counter, and an event stored before it did is left out and named in the summary rather than
written as a line another reader would choke on.

Days are the gateway's local days, cut exactly as the shift report cuts them (by when the event was
received). See docs/store.md, "Getting events out".
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from counterguard.core import jsontext
from counterguard.core.features import DAY
from counterguard.core.manifest import write_private
from counterguard.gateway.branch.report import day_bounds
from counterguard.gateway.branch.supervisor_cli import _config, _open_store
from counterguard.gateway.store.db import OUTCOMES

# An alert closed as one of these was a real fraud attempt (a dissuaded customer was being
# defrauded too); a false alarm, an alert without an outcome yet and no alert at all are label 0.
FRAUD_OUTCOMES = ("confirmed_fraud", "customer_dissuaded", "police_called", "card_sale_confirmed")

# Time order is the terminal's event time, then the order the gateway received them in.
_ROWS_SQL = (
    "SELECT r.event_id, r.payload, r.level, r.score, r.reasons, r.alerts, o.outcome, r.closed_id FROM ("
    " SELECT e.event_id, e.payload, v.level, v.score, v.reasons, e.ts_epoch, e.received_wall, e.received_mono, "
    " e.rowid AS n, "
    " (SELECT count(*) FROM alerts a WHERE a.event_id = e.event_id) AS alerts, "
    # An event with two alerts (amber by the model, red raised by staff) is fraud if either was judged so.
    " (SELECT a.alert_id FROM alerts a JOIN outcomes o ON o.alert_id = a.alert_id WHERE a.event_id = e.event_id "
    "  ORDER BY o.outcome = 'false_alarm', o.wall LIMIT 1) AS closed_id "
    # Every stored event has its verdict: both are written in one transaction.
    " FROM events e JOIN verdicts v ON v.event_id = e.event_id "
    " WHERE e.received_wall >= ? AND e.received_wall < ?) r "
    "LEFT JOIN outcomes o ON o.alert_id = r.closed_id "
    "ORDER BY r.ts_epoch, r.received_wall, r.received_mono, r.n")

# Events in the range whose account was served in the 24 hours before them by an event outside the
# range: replaying the file alone gives them less history than the counter had.
_HISTORY_OUTSIDE_SQL = (
    "SELECT count(*) FROM events e WHERE e.received_wall >= ? AND e.received_wall < ? AND EXISTS ("
    " SELECT 1 FROM events p WHERE p.account = e.account AND p.ts_epoch >= e.ts_epoch - ? AND p.ts_epoch < e.ts_epoch"
    " AND NOT (p.received_wall >= ? AND p.received_wall < ?))")


@dataclass
class Export:
    """What was exported: the lines to write and the counts for the summary."""
    lines: list = field(default_factory=list)
    levels: Counter = field(default_factory=Counter)
    alerts: int = 0
    outcomes: Counter = field(default_factory=Counter)
    labelled_fraud: int = 0
    history_outside: int = 0
    not_json: list = field(default_factory=list)  # "event_id: why" of stored events left out

    @property
    def events(self) -> int:
        return len(self.lines)

    @property
    def owed(self) -> int:
        """Alerts still without an outcome."""
        return self.alerts - sum(self.outcomes.values())


def case(event: dict, level: str, score: float, reasons: list, outcome: str | None, answers=None) -> dict:
    """One labelled case; ``label`` follows the supervisor's outcome (FRAUD_OUTCOMES -> 1);
    ``answers``: the caring questions' answers recorded with that outcome (key -> answer)."""
    return {"event": event, "level": level, "score": float(score), "reasons": list(reasons),
            "watchlisted": "watchlist" in reasons, "outcome": outcome, "answers": dict(answers or {}),
            "label": 1 if outcome in FRAUD_OUTCOMES else 0}


def export_events(store, first: date, last: date, *, labelled: bool = False) -> Export:
    """The events received from local midnight starting ``first`` to local midnight after ``last``."""
    since, until = day_bounds(first)[0], day_bounds(last)[1]
    out = Export()
    rows = store.db.execute(_ROWS_SQL, (since, until)).fetchall()
    answers = store.answers([r[7] for r in rows if r[7]]) if labelled else {}
    for event_id, payload, level, score, reasons_json, alerts, outcome, closed_id in rows:
        try:
            event = jsontext.loads(payload)
        except ValueError as exc:
            out.not_json.append(f"{event_id}: {exc}")
            continue
        out.levels[level] += 1
        out.alerts += alerts
        if outcome:
            out.outcomes[outcome] += 1
        if not labelled:
            out.lines.append(payload)
            continue
        c = case(event, level, score, json.loads(reasons_json), outcome,
                 {a.key: a.answer for a in answers.get(closed_id, [])})
        line = json.dumps(c, ensure_ascii=False, allow_nan=False)
        if not line.isascii():
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate, kept by a gateway before the schema refused it
                line = json.dumps(c, ensure_ascii=True, allow_nan=False)
        out.labelled_fraud += c["label"]
        out.lines.append(line)
    out.history_outside = store.db.execute(_HISTORY_OUTSIDE_SQL, (since, until, DAY, since, until)).fetchone()[0]
    return out


def _day(option: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} must be a date YYYY-MM-DD, got {text!r}") from None


def _summary(exp: Export, span: str, labelled: bool, purged_before: bool, keep_days: int) -> list[str]:
    levels = ", ".join(f"{lvl} {exp.levels.get(lvl, 0)}" for lvl in ("green", "amber", "red"))
    notes = [f"{exp.events} events received {span}: {levels}"]
    if not exp.events:
        notes.append("no events were received in that range; the output is empty")
    if labelled and exp.events:
        recorded = ", ".join(f"{o} {exp.outcomes[o]}" for o in OUTCOMES if exp.outcomes.get(o)) or "none"
        notes.append(f"alerts {exp.alerts}, outcomes recorded {sum(exp.outcomes.values())} ({recorded})")
        if exp.owed:
            notes.append(f"{exp.owed} alert(s) still without an outcome: labelled 0 until an outcome is recorded "
                         "('counterguard alerts' lists them); export again afterwards")
        notes.append(f"label 1: {exp.labelled_fraud} event(s) (outcome {', '.join(FRAUD_OUTCOMES)})")
        notes.append("before judging a model on this file: a fraud reported later (e.g. a victim's report on a "
                     "green event) is still label 0 here; set its \"label\" to 1 by hand")
    if exp.not_json:
        notes.append(f"{len(exp.not_json)} event(s) stored before the gateway refused them are not strict JSON "
                     "(NaN, Infinity, a number too large or a repeated key) and were left out: "
                     + "; ".join(exp.not_json[:10]) + (" ..." if len(exp.not_json) > 10 else ""))
    if exp.history_outside:
        notes.append(f"{exp.history_outside} event(s) had earlier events of the same account in the 24 h before, "
                     "outside this range: a replay of this file alone sees less history for them "
                     "(start the export a day earlier to include it)")
    if purged_before:
        notes.append(f"part of the range is older than store.keep_days ({keep_days} days): green events that old "
                     "are purged, so those days hold only the events that raised alerts")
    return notes


def _export_events(args) -> int:
    name = "counterguard export-events"
    try:
        first = _day("--day", args.day)
        last = _day("--to", args.to) if args.to else first
    except ValueError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    if last < first:
        print(f"{name}: --to {last.isoformat()} is before --day {first.isoformat()}", file=sys.stderr)
        return 2
    config = _config(args)
    with _open_store(config) as store:
        exp = export_events(store, first, last, labelled=args.labelled)
        source = store.path
    text = "".join(line + "\n" for line in exp.lines)
    if args.output:
        try:
            # Through a temporary file and a rename, so a reader never sees half a file; 0600
            # because the events carry customers' account numbers.
            write_private(Path(args.output), text.encode("utf-8"))
        except OSError as exc:
            print(f"{name}: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    span = first.isoformat() if last == first else f"{first.isoformat()} to {last.isoformat()}"
    purged = day_bounds(first)[0] < time.time() - config.store.keep_days * DAY
    for note in _summary(exp, f"{span} (local time) in {source}", args.labelled, purged, config.store.keep_days):
        print(f"{name}: {note}", file=sys.stderr)
    if args.output:
        print(f"{name}: written to {args.output}", file=sys.stderr)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "export-events", help="write a day's stored events, for replay or as labelled cases",
        description="Write the events the gateway received on --day (to --to, inclusive; local days, as in the "
                    "shift report) in event time order: each stored event exactly as received, one per line "
                    "(input for 'counterguard replay'), or with --labelled one case per line with its verdict, "
                    "the supervisor's outcome and a label (1 for confirmed_fraud, customer_dissuaded, "
                    "police_called; else 0). A summary goes to stderr.")
    p.add_argument("--day", required=True, metavar="YYYY-MM-DD", help="first day (local time)")
    p.add_argument("--to", metavar="YYYY-MM-DD", help="last day, inclusive (default: --day)")
    p.add_argument("--labelled", action="store_true", help="one labelled case per line instead of the bare events")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically, mode 0600) instead of stdout")
    p.add_argument("-c", "--config", help="gateway TOML file (default: embedded defaults)")
    p.set_defaults(func=_export_events)
