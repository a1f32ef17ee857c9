"""The centre's live dashboard: a small web server over the centre's store.

The page (centre/assets/) polls ``/api/records?after=N`` a few times a second, so an alert shows
within a second of being stored, with no websocket: anything that speaks HTTP can watch the
stream. Store ids are handed out in commit order (see centre/store.py), so "after N" never skips a
row. Filters (region, branch, level, time range, search, and the handling level and outcome a chart
was clicked on; centre/overview.py) are applied by the server, to the table, the charts and the
exports alike.

    server = Dashboard(open_store("centre.db"), host="127.0.0.1", port=8080).start()
    print(server.url)      # http://127.0.0.1:8080/
    server.stop()

Endpoints (all JSON except the page and its assets):

| path | what |
|---|---|
| `/` | the dashboard |
| `/api/alerts?region=&branch=&level=&since=&until=&q=&handled=&outcome=&limit=` | the newest alerts of the selection, each with its trail |
| `/api/records?after=&...` | alerts of the selection and follow-ups stored after record id `after`, and the intake's broker link |
| `/api/charts?...` | alerts per hour and per day by region and level, precision by week with its interval, outcomes by handling level |
| `/api/link` | whether the centre's intake is connected to its broker |
| `/export.csv?...` | the selection's alerts as CSV (UTF-8 with BOM, for spreadsheets) |
| `/report?...&lang=` | the selection as a printable page (print it, or save it as PDF, from the browser) |
| `/api/fleet` | every gateway: presence, heartbeat age, outbox depth, versions, drift; the rollout of manifests; the latest canaries (challenger, gateways, state, why a rollback happened) |
| `/api/quarantine` | how many messages were quarantined, and the latest with their reasons |
| `/api/accuracy?by=branch` | precision of red and amber warnings (centre/accuracy.py) |
| `/api/levels?by=branch` | per level that handled the alerts (teller, supervisor, police): outcomes and red precision with its interval (centre/levels.py) |
| `/login`, `/logout` | an analyst's login form (GET), logging in (POST) and out (POST) |

With analysts configured (``users``: name -> scrypt hash, ``[dashboard.users]``), everything but
the login form and its style sheet needs a session: the branch console's login code
(core/weblogin.py), one password per analyst. The session cookie is HttpOnly and
SameSite=Strict; both POSTs carry a CSRF token (the login form's own, a cookie echoed in a
hidden field; the session's, for sign-out) and an ``Origin``, if sent, must be this server's. With
no analysts the dashboard has no login, and only a loopback address may serve it.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from urllib.parse import parse_qs, urlparse

from counterguard.centre import accuracy, drift, fleet, levels, overview
from counterguard.centre.config import ANALYST_NAME_MAX
from counterguard.core.weblogin import SECURITY_HEADERS, LockedOut, Sessions, cookie_value, is_loopback, same_origin

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
# The pages (index.html, login.html) are templates rendered per request, never served as files.
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
                 ".txt": "text/plain; charset=utf-8"}
PUBLIC_ASSETS = {"/assets/style.css"}   # what the login form needs before anyone has logged in
DRIFT_EVERY_S = 300.0                 # how often the fleet view works out drift again
COOKIE = "cg_centre_session"
LOGIN_COOKIE = "cg_centre_login"     # the login form's CSRF token, echoed in the form
MAX_FORM = 4096
SESSION_HOURS = 12.0                  # an analyst's shift, as the branch console's default



class NoLogin(ValueError):
    """The dashboard would serve every branch's alerts beyond this machine with no login."""


class BadRequest(ValueError):
    """A query parameter is wrong; the message names it."""


def _one(query: dict, name: str, default=None):
    values = query.get(name)
    return values[-1] if values else default


def _selection(query: dict) -> overview.Selection:
    try:
        return overview.Selection.from_query(query)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _int(query: dict, name: str, default: int, lo: int = 0, hi: int = 10_000) -> int:
    raw = _one(query, name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _export_name(sel: overview.Selection) -> str:
    parts = [sel.region, sel.branch, sel.level, (sel.since or "")[:10], (sel.until or "")[:10]]
    return "counterguard-alerts" + "".join(f"-{p}" for p in parts if p and p.replace("-", "").isalnum()) + ".csv"


# The printable report's words; the page itself (assets/report.html) follows the chosen language.
REPORT_TEXT = {
    "en": {"title": "Alerts", "filters": "Selection", "none": "everything", "printed": "Printed", "count": "alerts",
           "print": "Print or save as PDF", "empty": "No alerts match this selection.",
           "columns": ("Raised (UTC)", "Level", "Region / branch", "Counter", "Amount", "Reasons", "Acknowledged",
                       "Outcome", "Handled at")},
    "zh": {"title": "预警清单", "filters": "筛选条件", "none": "全部", "printed": "打印时间", "count": "条预警",
           "print": "打印或另存为 PDF", "empty": "没有符合筛选条件的预警。",
           "columns": ("预警时间 (UTC)", "级别", "地区 / 网点", "柜台", "金额", "原因", "响应", "处理结果", "处置层级")},
}


# Codes as the report says them in Chinese (English: the code with spaces).
REPORT_ZH = {"red": "红色", "amber": "黄色", "confirmed_fraud": "确认诈骗", "customer_dissuaded": "劝阻成功",
             "false_alarm": "误报", "police_called": "已报警", "teller": "一级 柜员", "supervisor": "二级 主管",
             "police": "三级 报警"}


def _report(page: Template, store, sel: overview.Selection, lang: str) -> str:
    words = REPORT_TEXT.get(lang, REPORT_TEXT["zh"])
    say = (lambda code: REPORT_ZH.get(code, code)) if lang == "zh" else (lambda code: code.replace("_", " "))
    rows = overview.export_rows(store, sel)
    cells = []
    for r in rows:
        values = (r["raised_at"].replace("T", " ")[:19], say(r["level"]), f"{r['region']} / {r['branch']}", r["counter"],
                  f"{r['amount']:,.0f}" if isinstance(r["amount"], (int, float)) else r["amount"], r["reasons"],
                  r["acknowledged_by"], say(r["outcome"]), say(r["handled_at"]))
        cells.append(f'<tr class="{html.escape(r["level"])}">' +
                     "".join(f"<td>{html.escape(str(v if v is not None else ''))}</td>" for v in values) + "</tr>")
    chosen = "; ".join(f"{k} = {v}" for k, v in sel.as_query().items()) or words["none"]
    return page.substitute(
        lang="zh-CN" if lang == "zh" else "en", title=words["title"], filters_label=words["filters"],
        filters=html.escape(chosen), printed_label=words["printed"],
        printed=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), count=len(rows), count_label=words["count"],
        print_label=words["print"], head="".join(f"<th>{html.escape(c)}</th>" for c in words["columns"]),
        rows="".join(cells) or f'<tr><td colspan="9">{html.escape(words["empty"])}</td></tr>')


class DashboardApi:
    """The JSON answers, separate from HTTP so they read as what the centre's staff see."""

    def __init__(self, store, *, heartbeat_s: float = 30.0, intake=()):
        self.store = store
        self.heartbeat_s = heartbeat_s
        self.intake = list(intake)   # the centre's workers: each knows whether it holds its broker link

    def alerts(self, query: dict) -> dict:
        sel = _selection(query)
        # The high-water mark before the rows: a row stored in between is fetched again, never missed.
        mark = self.store.last_id()
        alerts = overview.alerts(self.store, sel, limit=_int(query, "limit", 200, 1, 2000))
        trail = self.store.trail([a["alert_id"] for a in alerts]) if alerts else []
        return {"records": alerts + trail, "last_id": mark, "selection": sel.as_query()}

    def records(self, query: dict) -> dict:
        sel = _selection(query)
        after = _int(query, "after", 0, 0, 2**63 - 1)
        rows = self.store.records(after=after, region=sel.region, branch=sel.branch, limit=1000)
        last = rows[-1]["id"] if rows else after
        # Follow-ups (acknowledgement, outcome, escalation) carry no level of their own; keep them.
        rows = [r for r in rows if r["type"] != "alert" or ((not sel.level or r["level"] == sel.level)
                                                          and overview.live_match(sel, r))]
        return {"records": rows, "last_id": last, "link": self.link({})}

    def link(self, query: dict) -> dict:
        """The intake's broker link: ``connected`` (every worker), ``degraded`` (some), ``disconnected``
        (none), or ``unknown`` (this dashboard runs without an intake of its own)."""
        states = [bool(getattr(w, "connected", False)) for w in self.intake]
        if not states:
            return {"broker": "unknown", "workers": 0, "connected": 0}
        up = sum(states)
        return {"broker": "connected" if up == len(states) else "degraded" if up else "disconnected",
                "workers": len(states), "connected": up}

    def charts(self, query: dict) -> dict:
        sel = _selection(query)
        now = time.time()
        return {"selection": sel.as_query(), "per_hour": overview.per_bucket(self.store, sel, "hour", now=now),
                "per_day": overview.per_bucket(self.store, sel, "day", now=now),
                "precision_by_week": overview.precision_by_week(self.store, sel),
                "outcomes_by_level": overview.outcomes_by_level(self.store, sel)}

    def fleet(self, query: dict) -> dict:
        now = time.time()
        gateways = []
        for g in self.store.gateways():
            g["presence"] = fleet.presence(g, now=now, heartbeat_s=self.heartbeat_s)
            g["heartbeat_age_s"] = None if g["last_heartbeat_at"] is None else round(now - g["last_heartbeat_at"], 1)
            gateways.append(g)
        counts: dict[str, int] = {}
        drifted = self._drift(now)
        for g in gateways:
            counts[g["presence"]] = counts.get(g["presence"], 0) + 1
            g["drift"] = drifted.get(g["gateway_id"])
        return {"gateways": gateways, "counts": counts,
                "rollout": overview.rollout(self.store, now=now, heartbeat_s=self.heartbeat_s),
                "canaries": self.store.canaries()[-10:]}

    def _drift(self, now: float) -> dict:
        # Reading a day's and four weeks' events is not for every poll: worked out at most every 5 minutes.
        cached = getattr(self, "_drift_cache", None)
        if cached is None or now - cached[0] > DRIFT_EVERY_S:
            try:
                value = drift.worst(drift.drift(self.store, now=now))
            except drift.DriftError:
                value = {}
            self._drift_cache = cached = (now, value)
        return cached[1]

    def quarantine(self, query: dict) -> dict:
        return {"count": self.store.quarantine_count(), "latest": self.store.quarantined(_int(query, "limit", 50, 1, 500))}

    def _grouped(self, query: dict, compute) -> dict:
        by = _one(query, "by", "branch")
        try:
            rows = compute(self.store, by=by)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return {"by": by, "rows": [r.as_dict() for r in rows]}

    def accuracy(self, query: dict) -> dict:
        return self._grouped(query, accuracy.precision)

    def levels(self, query: dict) -> dict:
        return self._grouped(query, levels.levels)


class Dashboard:
    """The HTTP server in a background thread; ``users`` (analyst name -> scrypt hash) turns the login on."""

    def __init__(self, store, *, host: str = "127.0.0.1", port: int = 8080, heartbeat_s: float = 30.0,
                 users: Mapping[str, str] | None = None, session_hours: float = SESSION_HOURS, intake=()):
        if not users and not is_loopback(host):
            raise NoLogin(f"the dashboard has no analysts to log in, so it listens only on a loopback address, "
                          f"not {host!r}")
        self.api = DashboardApi(store, heartbeat_s=heartbeat_s, intake=intake)
        self.sessions = Sessions(dict(users), lifetime_s=session_hours * 3600) if users else None
        self.host = host
        self._server = ThreadingHTTPServer((host, port), _handler(self.api, self.sessions))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> "Dashboard":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="centre-dashboard", daemon=True)
        self._thread.start()
        if self.sessions is None:
            log.warning("the dashboard at %s has no login ([dashboard.users] is empty): anyone on this machine "
                        "sees every branch's alerts; add analysts with 'counterguard centre dashboard-user NAME'",
                        self.url)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> "Dashboard":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _handler(api: DashboardApi, sessions: Sessions | None):
    routes = {"/api/alerts": api.alerts, "/api/records": api.records, "/api/fleet": api.fleet,
              "/api/quarantine": api.quarantine, "/api/accuracy": api.accuracy,
              "/api/levels": api.levels, "/api/charts": api.charts, "/api/link": api.link}
    pages = {name: Template((ASSETS / name).read_text(encoding="utf-8"))
             for name in ("index.html", "login.html", "report.html")}

    class Handler(BaseHTTPRequestHandler):
        server_version = "counterguard-centre"
        sys_version = ""

        def log_message(self, fmt, *args):  # the access log goes to debug, not to the terminal
            log.debug("dashboard %s: " + fmt, self.client_address[0], *args)

        def _send(self, status: int, body: bytes, content_type: str, cookies: list[str] = (),
                  headers: Mapping[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self._end_headers(cookies)
            self.wfile.write(body)

        def _end_headers(self, cookies: list[str]) -> None:
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            for cookie in cookies:
                self.send_header("Set-Cookie", cookie)
            self.end_headers()

        def _json(self, status: int, body: dict) -> None:
            self._send(status, json.dumps(body, ensure_ascii=False, default=str).encode("utf-8"),
                       "application/json; charset=utf-8")

        def _redirect(self, location: str, cookies: list[str] = ()) -> None:
            self.send_response(303)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self._end_headers(cookies)

        def _session(self):
            return sessions.get(cookie_value(self.headers, COOKIE)) if sessions is not None else None

        # -- pages --------------------------------------------------------------------------------
        def _page(self, session) -> None:
            text = pages["index.html"].substitute(
                analyst=html.escape(session.staff if session else ""), csrf=html.escape(session.csrf if session else ""),
                account_class="account" if session else "account hidden")
            self._send(200, text.encode("utf-8"), "text/html; charset=utf-8")

        def _login_page(self, error: str = "", status: int = 200) -> None:
            # A fresh token per form: a page from another site cannot know it, so cannot log anyone in.
            token = secrets.token_urlsafe(32)
            text = pages["login.html"].substitute(csrf=token, error=html.escape(error),
                                                  error_class="error" if error else "error hidden")
            self._send(status, text.encode("utf-8"), "text/html; charset=utf-8",
                       [f"{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600"])

        def do_GET(self):  # noqa: N802  (http.server's name)
            url = urlparse(self.path)
            try:
                if url.path == "/login":
                    if sessions is None or self._session() is not None:
                        return self._redirect("/")
                    return self._login_page()
                session = self._session()
                if sessions is not None and session is None and url.path not in PUBLIC_ASSETS:
                    if url.path in ("/", "/index.html"):
                        return self._redirect("/login")
                    return self._json(401, {"error": "log in first: the dashboard needs an analyst's session"})
                if url.path in routes:
                    return self._json(200, routes[url.path](parse_qs(url.query)))
                if url.path in ("/", "/index.html"):
                    return self._page(session)
                if url.path == "/export.csv":
                    sel = _selection(parse_qs(url.query))
                    # With a BOM, so a spreadsheet opens the Chinese branch names as UTF-8.
                    body = ("\ufeff" + overview.csv_text(api.store, sel)).encode("utf-8")
                    return self._send(200, body, "text/csv; charset=utf-8",
                                      headers={"Content-Disposition": f'attachment; filename="{_export_name(sel)}"'})
                if url.path == "/report":
                    query = parse_qs(url.query)
                    text = _report(pages["report.html"], api.store, _selection(query), _one(query, "lang", "zh"))
                    return self._send(200, text.encode("utf-8"), "text/html; charset=utf-8")
                path = (ASSETS / url.path.removeprefix("/assets/")).resolve()
                if path.parent != ASSETS or not path.is_file() or path.suffix not in CONTENT_TYPES:
                    return self._json(404, {"error": f"no such page: {url.path}"})
                return self._send(200, path.read_bytes(), CONTENT_TYPES[path.suffix])
            except BadRequest as exc:
                return self._json(400, {"error": str(exc)})
            except (BrokenPipeError, ConnectionResetError):
                return None
            except Exception as exc:  # the dashboard must keep serving whatever one request hit
                log.exception("dashboard: %s failed", url.path)
                return self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

        # -- login and logout: the only requests that change anything ----------------------------
        def _form(self) -> dict:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                raise BadRequest("Content-Length must be a number") from None
            if not 0 <= length <= MAX_FORM:
                raise BadRequest(f"the form must be at most {MAX_FORM} bytes")
            form = parse_qs(self.rfile.read(length).decode("utf-8", "replace")) if length else {}
            return {k: v[-1] for k, v in form.items()}

        def do_POST(self):  # noqa: N802
            path = urlparse(self.path).path
            try:
                if sessions is None:
                    return self._json(404, {"error": "the dashboard has no login: no analysts are configured"})
                if not same_origin(self.headers):
                    return self._json(403, {"error": "request from another site refused"})
                form = self._form()
                if path == "/login":
                    return self._login(form)
                session = self._session()
                if session is None:
                    return self._json(401, {"error": "log in first: the dashboard needs an analyst's session"})
                if path != "/logout":
                    return self._json(404, {"error": f"no action {path}"})
                token = self.headers.get("X-CSRF-Token") or form.get("csrf") or ""
                if not hmac.compare_digest(token.encode(), session.csrf.encode()):
                    return self._json(403, {"error": "missing or wrong CSRF token; reload the page"})
                sessions.logout(session.sid)
                log.info("dashboard: %s logged out", session.staff)
                return self._redirect("/login", [f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"])
            except BadRequest as exc:
                return self._json(400, {"error": str(exc)})
            except (BrokenPipeError, ConnectionResetError):
                return None
            except Exception as exc:
                log.exception("dashboard: POST %s failed", path)
                return self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

        def _login(self, form: dict) -> None:
            address = self.client_address[0]
            token, expected = form.get("csrf") or "", cookie_value(self.headers, LOGIN_COOKIE) or ""
            if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
                return self._login_page("The login form had expired or came from elsewhere: log in again.", 403)
            name = (form.get("analyst") or "").strip()[:ANALYST_NAME_MAX]
            try:
                # Counted per name and per address before the password is checked (core/weblogin.py).
                session = sessions.login(name, form.get("password") or "", address)
            except LockedOut:
                log.warning("dashboard: login for %r from %s refused: too many wrong passwords", name, address)
                return self._login_page("Too many wrong passwords for this name or from this address: "
                                        "wait a minute.", 429)
            if session is None:
                log.warning("dashboard: failed login for %r from %s", name, address)
                return self._login_page("Name or password is wrong.", 401)
            log.info("dashboard: %s logged in from %s", name, address)
            self._redirect("/", [f"{COOKIE}={session.sid}; HttpOnly; SameSite=Strict; Path=/; "
                                 f"Max-Age={int(sessions.lifetime_s)}",
                                 f"{LOGIN_COOKIE}=; HttpOnly; SameSite=Strict; Path=/login; Max-Age=0"])

    return Handler
