"""The shift report: one branch day's verdicts, alerts, response times and outcomes, as text for
the terminal and as a self-contained HTML page with an inline SVG chart (print it to PDF from any
browser). ``counterguard report --day 2026-11-25 --html report.html``.

The day runs midnight to midnight in the gateway's local time zone (the ``TZ`` of the machine).
"""

from __future__ import annotations

import html
import shutil
import statistics
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

from counterguard.core.decision import LEVELS
from counterguard.gateway.questions import OUTCOME_TEXT, load_questions
from counterguard.gateway.store.db import OUTCOMES

COLOURS = {"green": "#2e7d32", "amber": "#f9a825", "red": "#c62828"}
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


class ReportError(RuntimeError):
    """The report could not be written in the form asked for; the message says what to do."""


@dataclass
class ShiftReport:
    day: date
    branch: str
    gateway_id: str
    verdicts: Counter = field(default_factory=Counter)          # level -> count
    by_hour: dict = field(default_factory=dict)                  # hour -> Counter(level -> count)
    alerts: list = field(default_factory=list)                   # AlertView, oldest first
    answers: dict = field(default_factory=dict)                  # alert id -> the caring questions' answers

    def asked(self, alert) -> str:
        """How many caring questions were asked and answered yes (the answers are in the store)."""
        got = self.answers.get(alert.alert_id, [])
        return f"{len(got)} asked, {sum(a.answer == 'yes' for a in got)} yes" if got else "-"

    @property
    def response_times(self) -> list[float]:
        return [a.response_s for a in self.alerts if a.response_s is not None]

    @property
    def outcomes(self) -> Counter:
        return Counter(a.outcome for a in self.alerts if a.outcome)

    @property
    def unacknowledged(self) -> list:
        return [a for a in self.alerts if a.state == "open"]

    @property
    def escalated(self) -> list:
        return [a for a in self.alerts if a.escalated_wall is not None]

    def response_summary(self) -> dict:
        times = sorted(self.response_times)
        if not times:
            return {"count": 0, "median_s": None, "max_s": None}
        return {"count": len(times), "median_s": round(statistics.median(times), 1), "max_s": round(times[-1], 1)}


def day_bounds(day: date) -> tuple[float, float]:
    start = datetime.combine(day, dtime(0)).astimezone()
    end = datetime.combine(day + timedelta(days=1), dtime(0)).astimezone()
    return start.timestamp(), end.timestamp()


def build_report(store, day: date, *, branch: str = "", gateway_id: str = "") -> ShiftReport:
    since, until = day_bounds(day)
    report = ShiftReport(day, branch, gateway_id)
    for wall, level, _counter in store.verdict_times(since, until):
        report.verdicts[level] += 1
        hour = datetime.fromtimestamp(wall).hour
        report.by_hour.setdefault(hour, Counter())[level] += 1
    report.alerts = store.alert_views(since_wall=since, until_wall=until)
    report.answers = store.answers([a.alert_id for a in report.alerts])
    return report


def _clock(wall: float | None) -> str:
    return "-" if wall is None else datetime.fromtimestamp(wall).strftime("%H:%M:%S")


def _seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def render_text(report: ShiftReport) -> str:
    q = load_questions()
    total = sum(report.verdicts.values())
    lines = [f"Shift report {report.day.isoformat()}  branch {report.branch or '-'}  gateway {report.gateway_id or '-'}",
             "",
             f"verdicts   {total}  (" + ", ".join(f"{lvl} {report.verdicts.get(lvl, 0)}" for lvl in LEVELS) + ")"]
    resp = report.response_summary()
    lines.append(f"alerts     {len(report.alerts)}  (acknowledged {resp['count']}, still open {len(report.unacknowledged)}, "
                 f"escalated {len(report.escalated)})")
    lines.append(f"response   median {_seconds(resp['median_s'])}, slowest {_seconds(resp['max_s'])} (raised -> acknowledged)")
    lines.append("outcomes   " + (", ".join(f"{o} {report.outcomes[o]}" for o in OUTCOMES if report.outcomes.get(o))
                                  or "none recorded"))
    if report.alerts:
        lines += ["", "raised    counter level  acknowledged            response  outcome             "
                      "questions        reasons"]
        for a in report.alerts:
            ack = f"{a.ack_by} ({a.ack_via})" if a.ack_by else ("ESCALATED" if a.escalated_wall else "OPEN")
            outcome = a.outcome or ("(owed)" if a.state == "acknowledged" else "")
            reasons = ", ".join(q.label(r) for r in a.reasons)
            lines.append(f"{_clock(a.raised_wall)}  {a.counter:>7} {a.level:<6} {ack:<23} {_seconds(a.response_s):>8}  "
                         f"{outcome:<19} {report.asked(a):<16} {reasons}")
            if a.note:
                lines.append(f"{'':>26}note: {a.note}")
    return "\n".join(lines) + "\n"


def chart_svg(report: ShiftReport, width: int = 720, height: int = 240) -> str:
    """Verdicts per hour as stacked bars (green, amber, red), drawn as plain SVG."""
    hours = sorted(report.by_hour) or [9]
    first, last = min(hours[0], 8), max(hours[-1], 17)
    span = list(range(first, last + 1))
    peak = max([sum(report.by_hour.get(h, Counter()).values()) for h in span] + [1])
    left, bottom, top = 40, 24, 16
    plot_h = height - bottom - top
    slot = (width - left - 8) / len(span)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="Verdicts per hour">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" stroke="#555"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">{peak}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>']
    for i, hour in enumerate(span):
        x = left + i * slot + slot * 0.15
        y = top + plot_h
        counts = report.by_hour.get(hour, Counter())
        for level in LEVELS:
            n = counts.get(level, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            parts.append(f'<rect class="{level}" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                         f'fill="{COLOURS[level]}"><title>{hour:02d}:00 {level} {n}</title></rect>')
        parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{height - 8}" text-anchor="middle" font-size="11">{hour:02d}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: ShiftReport) -> str:
    q = load_questions()
    e = html.escape
    resp = report.response_summary()
    rows = []
    for a in report.alerts:
        outcome = OUTCOME_TEXT[a.outcome]["en"] + " / " + OUTCOME_TEXT[a.outcome]["zh"] if a.outcome else (
            "owed" if a.state == "acknowledged" else "")
        rows.append("<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            e(a.level), e(_clock(a.raised_wall)), a.counter, e(a.level),
            e(", ".join(f"{q.label(r)} / {q.label(r, 'zh')}" for r in a.reasons)),
            e(f"{a.ack_by} ({a.ack_via})" if a.ack_by else ("escalated" if a.escalated_wall else "open")),
            e(_seconds(a.response_s)), e(outcome), e(report.asked(a)), e(a.note or "")))
    verdicts = "".join(f"<li>{lvl}: {report.verdicts.get(lvl, 0)}</li>" for lvl in LEVELS)
    outcomes = "".join(f"<li>{OUTCOME_TEXT[o]['en']} / {OUTCOME_TEXT[o]['zh']}: {report.outcomes[o]}</li>"
                       for o in OUTCOMES if report.outcomes.get(o)) or "<li>none recorded</li>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Shift report {report.day.isoformat()} {e(report.branch)}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", system-ui, sans-serif; margin: 2rem; color: #1d2329; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ border-bottom: 1px solid #ddd; padding: .3rem .5rem; text-align: left; font-size: .9rem; }}
tr.red td:nth-child(3) {{ color: {COLOURS['red']}; font-weight: bold; }} tr.amber td:nth-child(3) {{ color: #a86f00; }}
.summary {{ display: flex; gap: 3rem; }}
@media print {{ body {{ margin: 1cm; }} }}
</style></head><body>
<h1>Shift report 营业日报 {report.day.isoformat()}</h1>
<p>Branch {e(report.branch or '-')} · gateway {e(report.gateway_id or '-')}</p>
<div class="summary">
<div><h2>Verdicts</h2><ul id="verdicts">{verdicts}</ul></div>
<div><h2>Alerts</h2><ul id="alerts"><li>raised: {len(report.alerts)}</li><li>acknowledged: {resp['count']}</li>
<li>still open: {len(report.unacknowledged)}</li><li>escalated: {len(report.escalated)}</li>
<li>response median: {e(_seconds(resp['median_s']))}</li><li>slowest: {e(_seconds(resp['max_s']))}</li></ul></div>
<div><h2>Outcomes</h2><ul id="outcomes">{outcomes}</ul></div>
</div>
<h2>Verdicts per hour</h2>
{chart_svg(report)}
<h2>Alerts</h2>
<table id="alert-table"><thead><tr><th>Raised</th><th>Counter</th><th>Level</th><th>Reasons</th><th>Acknowledged</th>
<th>Response</th><th>Outcome</th><th>Caring questions</th><th>Note</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
</body></html>
"""


def write_pdf(html_text: str, out: str | Path, *, browser: str | None = None, timeout_s: float = 120.0) -> Path:
    """Print the HTML report to PDF with headless Chromium (no PDF library on the gateway)."""
    exe = browser or next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if not exe:
        raise ReportError("no Chromium to print the PDF with: install chromium, or open the --html file in a "
                          "browser and print it")
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory(prefix="counterguard-report-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html_text, encoding="utf-8")
        cmd = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
               f"--user-data-dir={tmp}/profile", f"--print-to-pdf={out}", page.as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ReportError(f"{exe} did not finish printing {out} within {timeout_s:.0f} s") from None
    if done.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        raise ReportError(f"{exe} could not print {out}: {done.stderr.strip()[-300:] or 'no output'}")
    return out
