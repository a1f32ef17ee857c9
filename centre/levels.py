"""The three levels of dissuasion, measured: per branch (or region, week, ...) and per level, what
the alerts came to and how precise the red warnings were.

Every outcome a supervisor records says which level handled the alert (``handled_at``, docs/mqtt.md):

    1  teller      the teller's caring questions at the counter
    2  supervisor  the supervisor's talk with the customer
    3  police      police called through the police-bank link

Per group and level: alerts, customers dissuaded, confirmed frauds, police called, false alarms,
and the precision of red warnings (justified / judged, "justified" as in centre/accuracy.py) with
its 95 % Wilson interval and the number of labels (judged red alerts) behind it. Four warnings
out of four is "100 %" with an interval from 51 %: the labels and the interval are printed beside
every precision, so a small branch's figure is read for what it is.

Rows that are not a level: ``not_recorded`` (an outcome without ``handled_at``, from a gateway
older than the field), ``awaiting_outcome`` (alerts with no outcome yet, so no level yet) and
``all`` (the group's total). The last outcome stored for an alert counts (a correction replaces it).
Red precision counts the model's red alerts; alerts branch staff raised themselves (reason
``teller_report``) are counted in every other column and in ``staff_raised``, as in ``centre accuracy``.

    for row in levels(store, by="branch"):
        print(row.group, row.handled, row.alerts, row.red_precision, row.red_interval_95, row.red_labels)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from counterguard.centre.accuracy import FALSE_ALARM, GROUPINGS, JUSTIFIED, _group
from counterguard.centre.learning import wilson
from counterguard.core.messages import HANDLED_AT

NOT_RECORDED = "not_recorded"
AWAITING = "awaiting_outcome"
ALL = "all"
# Row order within a group: the three levels, then what is not a level, then the total.
ORDER = (*HANDLED_AT.values(), NOT_RECORDED, AWAITING, ALL)


@dataclass
class LevelRow:
    group: str
    handled: str                     # teller | supervisor | police | not_recorded | awaiting_outcome | all
    level: int | None = None         # 1, 2, 3 for the levels themselves
    alerts: int = 0
    reds: int = 0
    customer_dissuaded: int = 0
    confirmed_fraud: int = 0
    police_called: int = 0
    false_alarms: int = 0
    staff_raised: int = 0
    red_labels: int = 0              # the model's red alerts with an outcome: what precision stands on
    red_justified: int = 0

    @property
    def red_precision(self) -> float | None:
        return None if self.red_labels == 0 else self.red_justified / self.red_labels

    @property
    def red_interval_95(self) -> list | None:
        return wilson(self.red_justified, self.red_labels)

    def as_dict(self) -> dict:
        p = self.red_precision
        return {**asdict(self), "red_precision": None if p is None else round(p, 4), "red_interval_95": self.red_interval_95}

    def count(self, *, level: str, outcome: str | None, staff: bool) -> None:
        self.alerts += 1
        self.reds += level == "red"
        self.staff_raised += staff
        if outcome is None:
            return
        self.customer_dissuaded += outcome == "customer_dissuaded"
        self.confirmed_fraud += outcome in ("confirmed_fraud", "card_sale_confirmed")  # a sale is a fraud's tool
        self.police_called += outcome == "police_called"
        self.false_alarms += outcome in FALSE_ALARM
        if level == "red" and not staff:
            self.red_labels += 1
            self.red_justified += outcome in JUSTIFIED


def levels(store, *, by: str = "branch", since: str | None = None, until: str | None = None) -> list[LevelRow]:
    """Rows per group (``by`` branch, region, day, week, month or all) and level, in ORDER within
    each group; ``since`` / ``until`` (RFC 3339, UTC) bound the alerts' raise time."""
    if by not in GROUPINGS:
        raise ValueError(f"levels can be grouped by {', '.join(GROUPINGS)}, not {by!r}")
    last = {(o["gateway_id"], o["alert_id"]): o for o in store.outcomes()}
    by_staff = store.staff_raised_alerts()
    rows: dict[tuple[str, str], LevelRow] = {}
    for alert in store.alert_index():
        at = alert.get("at") or ""
        if (since and at < since) or (until and at >= until):
            continue
        key = (alert["gateway_id"], alert["alert_id"])
        outcome = last.get(key)
        if outcome is None:
            handled, level = AWAITING, None
        elif outcome["handled_at"] in HANDLED_AT:
            level = outcome["handled_at"]
            handled = HANDLED_AT[level]
        else:
            handled, level = NOT_RECORDED, None
        group = _group(alert, by)
        for name, lvl in ((handled, level), (ALL, None)):
            row = rows.setdefault((group, name), LevelRow(group, name, lvl))
            row.count(level=alert["level"], outcome=outcome and outcome["outcome"], staff=key in by_staff)
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], ORDER.index(k[1])))]


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def table(rows: list[LevelRow]) -> str:
    """A plain-text table for the command line."""
    lines = [f"{'group':<24} {'handled at':<19} {'alerts':>6} {'reds':>5} {'dissuaded':>9} {'fraud':>6} "
             f"{'police':>6} {'false':>6} {'red precision':>13} {'95% interval':>15} {'labels':>6}"]
    for r in rows:
        name = f"{r.level} {r.handled}" if r.level else r.handled.replace("_", " ")
        ci = r.red_interval_95
        interval = "-" if ci is None else f"{ci[0]:.1%}-{ci[1]:.1%}"
        lines.append(f"{r.group:<24} {name:<19} {r.alerts:>6} {r.reds:>5} {r.customer_dissuaded:>9} "
                     f"{r.confirmed_fraud:>6} {r.police_called:>6} {r.false_alarms:>6} {_share(r.red_precision):>13} "
                     f"{interval:>15} {r.red_labels:>6}")
    return "\n".join(lines)
