"""What the centre dashboard's charts, table and exports show, worked out from the store.

One ``Selection`` (region, branch, level, time range, search, and the handling level and outcome
a chart was clicked on) narrows everything the same way: the alert table, the CSV export, the
printable report and the charts. It travels in the page's URL, so a link shows a colleague the
same alerts.

    sel = Selection.from_query({"region": ["610100"], "since": ["2026-12-01"]})
    per_bucket(store, sel, "hour")          # alerts per hour by region and level
    precision_by_week(store, sel)           # red precision per ISO week with its 95 % interval
    outcomes_by_level(store, sel)           # outcomes per handling level (teller, supervisor, police)
    csv_text(store, sel)                    # the alerts behind it, one per line
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta, timezone

from counterguard.centre import accuracy, downlink, fleet, levels
from counterguard.centre.learning import wilson
from counterguard.core.messages import HANDLED_AT, OUTCOMES

LEVELS = ("red", "amber")
HANDLED = (*HANDLED_AT.values(), levels.NOT_RECORDED, levels.AWAITING)
NO_OUTCOME = "none"                       # an alert still waiting for its outcome
HOURS_SHOWN = 48                          # the hour chart: the last two days of the range
DAYS_SHOWN = 31                           # the day chart: the last month of the range
EXPORT_MAX = 100_000                      # rows in one CSV export
CSV_COLUMNS = ("raised_at", "alert_id", "gateway_id", "region", "branch", "counter", "level", "score", "amount",
               "kind", "reasons", "acknowledged_by", "outcome", "handled_at", "outcome_by", "note")


def _utc_text(raw: str, name: str) -> str:
    """A date or date-time as typed or linked -> the stored form (RFC 3339 UTC, ms, ``Z``)."""
    text = raw.strip()
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), timezone.utc)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    except ValueError:
        raise ValueError(f"{name} must be a date (2026-12-04) or a UTC time (2026-12-04T08:00Z), got {raw!r}") from None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Selection:
    region: str | None = None
    branch: str | None = None
    level: str | None = None
    since: str | None = None       # stored form, inclusive
    until: str | None = None       # stored form, exclusive
    search: str | None = None      # an alert id or an account's keyed hash
    handled: str | None = None     # teller | supervisor | police | not_recorded | awaiting_outcome
    outcome: str | None = None     # one of OUTCOMES, or "none"

    @classmethod
    def from_query(cls, query: dict) -> "Selection":
        """From parsed query parameters (name -> list of values); ValueError names a bad one."""
        def one(name):
            values = query.get(name)
            value = values[-1].strip() if values else ""
            return value or None
        level, handled, outcome = one("level"), one("handled"), one("outcome")
        if level is not None and level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        if handled is not None and handled not in HANDLED:
            raise ValueError(f"handled must be one of {', '.join(HANDLED)}, got {handled!r}")
        if outcome is not None and outcome not in (*OUTCOMES, NO_OUTCOME):
            raise ValueError(f"outcome must be one of {', '.join((*OUTCOMES, NO_OUTCOME))}, got {outcome!r}")
        since = None if one("since") is None else _utc_text(one("since"), "since")
        until = None if one("until") is None else _utc_text(one("until"), "until")
        if since and until and until <= since:
            raise ValueError(f"until ({until}) must be after since ({since})")
        return cls(one("region"), one("branch"), level, since, until, one("q"), handled, outcome)

    def as_query(self) -> dict:
        names = {"search": "q"}
        return {names.get(f.name, f.name): getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def place(self, alert: dict) -> bool:
        return ((not self.region or alert["region"] == self.region) and (not self.branch or alert["branch"] == self.branch)
                and (not self.level or alert["level"] == self.level))

    def in_range(self, at: str | None) -> bool:
        at = at or ""
        return (not self.since or at >= self.since) and (not self.until or at < self.until)


class ScopedStore:
    """The store as centre/accuracy.py and centre/levels.py read it, narrowed to the selection's
    place and level, so the charts follow the same filters as the table."""

    def __init__(self, store, sel: Selection):
        self.store, self.sel = store, sel

    def alert_index(self) -> list[dict]:
        return [a for a in self.store.alert_index() if self.sel.place(a)]

    def outcomes(self) -> list[dict]:
        return self.store.outcomes()

    def staff_raised_alerts(self):
        return self.store.staff_raised_alerts()


def _last_outcomes(store) -> dict:
    # The last outcome stored for an alert counts (a correction replaces it), as in accuracy.py.
    return {(o["gateway_id"], o["alert_id"]): o for o in store.outcomes()}


def handled_name(outcome: dict | None) -> str:
    if outcome is None:
        return levels.AWAITING
    return HANDLED_AT.get(outcome.get("handled_at"), levels.NOT_RECORDED)


def alerts(store, sel: Selection, limit: int | None = 200) -> list[dict]:
    """The newest alerts of the selection, oldest first (decoded store records)."""
    wanted = sel.handled is not None or sel.outcome is not None
    rows = store.find_alerts(region=sel.region, branch=sel.branch, level=sel.level, since=sel.since, until=sel.until,
                             search=sel.search, limit=None if wanted else limit)
    if wanted:
        last = _last_outcomes(store)
        rows = [r for r in rows if _outcome_matches(sel, last.get((r["gateway_id"], r["alert_id"])))]
        rows = rows if limit is None else rows[-limit:]
    return rows


def _outcome_matches(sel: Selection, outcome: dict | None) -> bool:
    if sel.handled is not None and handled_name(outcome) != sel.handled:
        return False
    if sel.outcome is not None and (outcome["outcome"] if outcome else NO_OUTCOME) != sel.outcome:
        return False
    return True


def live_match(sel: Selection, record: dict) -> bool:
    """Whether a newly stored alert belongs on a page showing ``sel`` (a new alert has no outcome yet)."""
    p = record["payload"]
    if not sel.in_range(p.get("raised_at")):
        return False
    if sel.search and sel.search != record["alert_id"] and sel.search not in (
            p.get("customer_id_hash"), p.get("customer_phone_hash"), p.get("payee_account_hash")):
        return False
    return _outcome_matches(sel, None)


# -- charts -----------------------------------------------------------------------------------------
def _end(sel: Selection, now: float) -> datetime:
    if sel.until:
        return datetime.fromisoformat(sel.until.replace("Z", "+00:00")) - timedelta(milliseconds=1)
    return datetime.fromtimestamp(now, timezone.utc)


def per_bucket(store, sel: Selection, unit: str, *, now: float) -> dict:
    """Alerts per hour (the last HOURS_SHOWN of the range) or per day (the last DAYS_SHOWN), one
    series per region and level: {"buckets": [start, ...], "series": [{region, level, counts}]}."""
    step, count, width = (timedelta(hours=1), HOURS_SHOWN, 13) if unit == "hour" else (timedelta(days=1), DAYS_SHOWN, 10)
    end = _end(sel, now)
    last = end.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        last = last.replace(hour=0)
    starts = [last - step * i for i in range(count - 1, -1, -1)]
    if sel.since:
        since = datetime.fromisoformat(sel.since.replace("Z", "+00:00"))
        starts = [s for s in starts if s + step > since] or starts[-1:]
    keys = [s.isoformat()[:width] for s in starts]
    index = {k: i for i, k in enumerate(keys)}
    series: dict[tuple[str, str], list[int]] = {}
    for a in _selected_index(store, sel):
        i = index.get((a.get("at") or "")[:width])
        if i is not None:
            series.setdefault((a["region"], a["level"]), [0] * len(keys))[i] += 1
    return {"unit": unit, "buckets": [s.isoformat().replace("+00:00", "Z") for s in starts], "step_s": step.total_seconds(),
            "series": [{"region": r, "level": lv, "counts": c}
                       for (r, lv), c in sorted(series.items(), key=lambda kv: (kv[0][0], LEVELS.index(kv[0][1])
                                                                               if kv[0][1] in LEVELS else 9))]}


def _selected_index(store, sel: Selection) -> list[dict]:
    """alert_index rows of the selection (search, handling level and outcome included)."""
    rows = [a for a in store.alert_index() if sel.place(a) and sel.in_range(a.get("at"))]
    if sel.search:
        keep = {(r["gateway_id"], r["alert_id"]) for r in store.find_alerts(
            region=sel.region, branch=sel.branch, level=sel.level, since=sel.since, until=sel.until,
            search=sel.search, limit=None)}
        rows = [a for a in rows if (a["gateway_id"], a["alert_id"]) in keep]
    if sel.handled is not None or sel.outcome is not None:
        last = _last_outcomes(store)
        rows = [a for a in rows if _outcome_matches(sel, last.get((a["gateway_id"], a["alert_id"])))]
    return rows


def precision_by_week(store, sel: Selection) -> list[dict]:
    """Precision of the model's warnings (red, or the selection's level) per ISO week, from
    centre/accuracy.py, with its 95 % Wilson interval and the outcomes behind it."""
    level = sel.level or "red"
    out = []
    for row in accuracy.precision(ScopedStore(store, sel), by="week", since=sel.since, until=sel.until):
        if row.level != level or row.source != "model" or row.group == "unknown":
            continue
        judged = row.justified + row.false_alarms
        year, week = row.group.split("-W")
        start = date.fromisocalendar(int(year), int(week), 1)
        out.append({"week": row.group, "since": start.isoformat(), "until": (start + timedelta(days=7)).isoformat(),
                    "level": level, "precision": None if row.precision is None else round(row.precision, 4),
                    "interval_95": wilson(row.justified, judged), "judged": judged, "alerts": row.alerts})
    return out


def outcomes_by_level(store, sel: Selection) -> list[dict]:
    """Per handling level (centre/levels.py): alerts and what they came to."""
    rows = levels.levels(ScopedStore(store, sel), by="all", since=sel.since, until=sel.until)
    return [{"handled": r.handled, "level": r.level, "alerts": r.alerts, "customer_dissuaded": r.customer_dissuaded,
             "confirmed_fraud": r.confirmed_fraud, "police_called": r.police_called, "false_alarm": r.false_alarms,
             "none": r.alerts if r.handled == levels.AWAITING else 0}
            for r in rows if r.handled != levels.ALL]


# -- the rollout, with why a gateway has not applied a push ----------------------------------------
def rollout(store, *, now: float, heartbeat_s: float) -> list[dict]:
    """centre/downlink.py's rollout, each gateway still pending with the reason: ``offline`` (or
    silent, stopped), ``refused`` (it reports refused manifests: ``rejected``, how many),
    ``waiting_for_red`` (it holds the push until its open red alerts close), or ``not_reported``
    (online, no refusal, not waiting: its next status or heartbeat will say)."""
    gateways = {g["gateway_id"]: g for g in store.gateways()}
    out = []
    for m in downlink.rollout(store):
        why = []
        for gid in m["pending"]:
            g = gateways.get(gid) or {}
            state = fleet.presence(g, now=now, heartbeat_s=heartbeat_s) if g else "unknown"
            waiting = json.loads(g.get("downlink_waiting") or "[]")
            if state != "online":
                reason = {"gateway_id": gid, "why": "offline", "state": state}
            elif m["kind"] in waiting:
                reason = {"gateway_id": gid, "why": "waiting_for_red"}
            elif g.get("downlink_rejected"):
                reason = {"gateway_id": gid, "why": "refused", "rejected": g["downlink_rejected"]}
            else:
                reason = {"gateway_id": gid, "why": "not_reported"}
            why.append(reason)
        out.append({**m, "why": why})
    return out


# -- exports --------------------------------------------------------------------------------------
def export_rows(store, sel: Selection) -> list[dict]:
    """One flat row per alert of the selection, oldest first, with its acknowledgement and last outcome."""
    rows = alerts(store, sel, limit=EXPORT_MAX)
    trail = store.trail([r["alert_id"] for r in rows]) if rows else []
    acks, last = {}, {}
    for t in trail:
        key = (t["gateway_id"], t["alert_id"])
        if t["type"] == "acknowledgement":
            acks.setdefault(key, t["payload"].get("by"))
        elif t["type"] == "outcome":
            last[key] = t["payload"]
    out = []
    for r in rows:
        p, key = r["payload"], (r["gateway_id"], r["alert_id"])
        o = last.get(key)
        out.append({"raised_at": p.get("raised_at"), "alert_id": r["alert_id"], "gateway_id": r["gateway_id"],
                    "region": r["region"], "branch": r["branch"], "counter": p.get("counter"), "level": r["level"],
                    "score": p.get("score"), "amount": p.get("amount"), "kind": p.get("kind"),
                    "reasons": " ".join(p.get("reasons") or ()), "acknowledged_by": acks.get(key, ""),
                    "outcome": o["outcome"] if o else "", "handled_at": HANDLED_AT.get(o.get("handled_at"), "") if o else "",
                    "outcome_by": o.get("by", "") if o else "", "note": o.get("note", "") if o else ""})
    return out


def _cell(value) -> str:
    # A spreadsheet runs a cell that starts with = + - @ as a formula: a gateway's text never does.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _number(text) else text


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def csv_text(store, sel: Selection) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in export_rows(store, sel):
        writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
    return buf.getvalue()
