"""How accurate the warnings are: precision of red and amber alerts, from supervisors' outcomes.

A warning was *justified* when the supervisor recorded ``confirmed_fraud``, ``customer_dissuaded``
(the customer was talked out of a payment to fraudsters: the warning did its job) or
``police_called``; it was a false alarm when they recorded ``false_alarm``. Precision is
justified / (justified + false alarms) over the alerts that have an outcome; alerts still without
one are counted separately, because a precision over few outcomes says little. When an alert has
several outcomes (a correction), the last one stored counts.

Alerts branch staff raised themselves (reason ``teller_report``) are counted in rows of their own
(``source`` "staff"), never in the model's (``source`` "model"): a teller's report on an event the
model answered green says how the model missed, not how precise its warnings are.

    for row in precision(store, by="branch"):
        print(row.group, row.level, row.source, row.precision, row.with_outcome, row.alerts)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

JUSTIFIED = ("confirmed_fraud", "customer_dissuaded", "police_called", "card_sale_confirmed")
FALSE_ALARM = ("false_alarm",)
GROUPINGS = ("branch", "region", "day", "week", "month", "all")
SOURCES = ("model", "staff")  # who raised the alert: the gateway's verdict, or branch staff themselves


@dataclass
class Precision:
    group: str
    level: str
    alerts: int = 0
    with_outcome: int = 0
    justified: int = 0
    false_alarms: int = 0
    source: str = "model"

    @property
    def precision(self) -> float | None:
        judged = self.justified + self.false_alarms
        return None if judged == 0 else self.justified / judged

    def as_dict(self) -> dict:
        return {**asdict(self), "precision": None if self.precision is None else round(self.precision, 4)}


def _group(alert: dict, by: str) -> str:
    at = alert.get("at") or ""
    if by == "branch":
        return f"{alert['region']}/{alert['branch']}"
    if by == "region":
        return alert["region"]
    if by == "all":
        return "all"
    day = at[:10]
    if by == "day":
        return day
    if by == "month":
        return day[:7]
    try:
        year, week, _ = date.fromisoformat(day).isocalendar()
    except ValueError:
        return "unknown"
    return f"{year}-W{week:02d}"


def precision(store, *, by: str = "branch", since: str | None = None, until: str | None = None) -> list[Precision]:
    """Precision of red and amber warnings grouped ``by`` branch, region, day, week, month or all;
    ``since`` / ``until`` (RFC 3339 dates or times, UTC) bound the alerts' raise time."""
    if by not in GROUPINGS:
        raise ValueError(f"accuracy can be grouped by {', '.join(GROUPINGS)}, not {by!r}")
    last_outcome = {(o["gateway_id"], o["alert_id"]): o["outcome"] for o in store.outcomes()}
    by_staff = store.staff_raised_alerts()
    rows: dict[tuple[str, str, str], Precision] = {}
    for alert in store.alert_index():
        at = alert.get("at") or ""
        if (since and at < since) or (until and at >= until):
            continue
        source = "staff" if (alert["gateway_id"], alert["alert_id"]) in by_staff else "model"
        key = (_group(alert, by), alert["level"], source)
        row = rows.setdefault(key, Precision(*key[:2], source=source))
        row.alerts += 1
        outcome = last_outcome.get((alert["gateway_id"], alert["alert_id"]))
        if outcome is not None:
            row.with_outcome += 1
            row.justified += outcome in JUSTIFIED
            row.false_alarms += outcome in FALSE_ALARM
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[2] != "model", k[1] != "red"))]


def table(rows: list[Precision]) -> str:
    """A plain-text table for the command line."""
    lines = [f"{'group':<24} {'level':<6} {'precision':>9} {'justified':>9} {'false':>6} {'judged':>7} {'alerts':>7}"
             "  raised by"]
    for r in rows:
        p = "-" if r.precision is None else f"{r.precision:.1%}"
        lines.append(f"{r.group:<24} {r.level:<6} {p:>9} {r.justified:>9} {r.false_alarms:>6} "
                     f"{r.with_outcome:>7} {r.alerts:>7}  {r.source}")
    return "\n".join(lines)
