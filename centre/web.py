"""The centre's live dashboard: a small web server over the centre's store.

The page (centre/assets/) polls ``/api/records?after=N`` a few times a second, so an alert shows
within a second of being stored, with no websocket: anything that speaks HTTP can watch the
stream. Store ids are handed out in commit order (see centre/store.py), so "after N" never skips a
row. Filters (region, branch, level) are applied by the server.

    server = Dashboard(open_store("centre.db"), host="127.0.0.1", port=8080).start()
    print(server.url)      # http://127.0.0.1:8080/
    server.stop()

Endpoints (all JSON except the page and its assets):

| path | what |
|---|---|
| `/` | the dashboard |
| `/api/alerts?region=&branch=&level=&limit=` | the newest alerts, each with its trail |
| `/api/records?after=&region=&branch=&level=` | alerts and follow-ups stored after record id `after` |
| `/api/fleet` | every gateway: presence, heartbeat age, outbox depth, versions; and the rollout of manifests |
| `/api/quarantine` | how many messages were quarantined, and the latest with their reasons |
| `/api/accuracy?by=branch` | precision of red and amber warnings (centre/accuracy.py) |
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from . import accuracy, downlink, fleet

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
LEVELS = ("red", "amber")


class BadRequest(ValueError):
    """A query parameter is wrong; the message names it."""


def _one(query: dict, name: str, default=None):
    values = query.get(name)
    return values[-1] if values else default


def _filters(query: dict) -> dict:
    level = _one(query, "level") or None
    if level is not None and level not in LEVELS:
        raise BadRequest(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    return {"region": _one(query, "region") or None, "branch": _one(query, "branch") or None, "level": level}


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


class DashboardApi:
    """The JSON answers, separate from HTTP so they read as what the centre's staff see."""

    def __init__(self, store, *, heartbeat_s: float = 30.0):
        self.store = store
        self.heartbeat_s = heartbeat_s

    def alerts(self, query: dict) -> dict:
        f = _filters(query)
        alerts = self.store.latest_alerts(limit=_int(query, "limit", 200, 1, 2000), **f)
        trail = self.store.trail([a["alert_id"] for a in alerts]) if alerts else []
        # Read the high-water mark after the rows: a row stored in between is fetched again, never missed.
        return {"records": alerts + trail, "last_id": min([a["id"] for a in alerts[-1:]] + [self.store.last_id()])}

    def records(self, query: dict) -> dict:
        f = _filters(query)
        after = _int(query, "after", 0, 0, 2**63 - 1)
        rows = self.store.records(after=after, region=f["region"], branch=f["branch"], limit=1000)
        last = rows[-1]["id"] if rows else after
        # Follow-ups (acknowledgement, outcome, escalation) carry no level of their own; keep them.
        if f["level"]:
            rows = [r for r in rows if r["type"] != "alert" or r["level"] == f["level"]]
        return {"records": rows, "last_id": last}

    def fleet(self, query: dict) -> dict:
        now = time.time()
        gateways = []
        for g in self.store.gateways():
            g["presence"] = fleet.presence(g, now=now, heartbeat_s=self.heartbeat_s)
            g["heartbeat_age_s"] = None if g["last_heartbeat_at"] is None else round(now - g["last_heartbeat_at"], 1)
            gateways.append(g)
        counts: dict[str, int] = {}
        for g in gateways:
            counts[g["presence"]] = counts.get(g["presence"], 0) + 1
        return {"gateways": gateways, "counts": counts, "rollout": downlink.rollout(self.store)}

    def quarantine(self, query: dict) -> dict:
        return {"count": self.store.quarantine_count(), "latest": self.store.quarantined(_int(query, "limit", 50, 1, 500))}

    def accuracy(self, query: dict) -> dict:
        by = _one(query, "by", "branch")
        try:
            rows = accuracy.precision(self.store, by=by)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return {"by": by, "rows": [r.as_dict() for r in rows]}


class Dashboard:
    """The HTTP server in a background thread."""

    def __init__(self, store, *, host: str = "127.0.0.1", port: int = 8080, heartbeat_s: float = 30.0):
        self.api = DashboardApi(store, heartbeat_s=heartbeat_s)
        self.host = host
        self._server = ThreadingHTTPServer((host, port), _handler(self.api))
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


def _handler(api: DashboardApi):
    routes = {"/api/alerts": api.alerts, "/api/records": api.records, "/api/fleet": api.fleet,
              "/api/quarantine": api.quarantine, "/api/accuracy": api.accuracy}

    class Handler(BaseHTTPRequestHandler):
        server_version = "counterguard-centre"

        def log_message(self, fmt, *args):  # the access log goes to debug, not to the terminal
            log.debug("dashboard %s: " + fmt, self.client_address[0], *args)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, body: dict) -> None:
            self._send(status, json.dumps(body, ensure_ascii=False, default=str).encode("utf-8"),
                       "application/json; charset=utf-8")

        def do_GET(self):  # noqa: N802  (http.server's name)
            url = urlparse(self.path)
            try:
                if url.path in routes:
                    return self._json(200, routes[url.path](parse_qs(url.query)))
                name = "index.html" if url.path in ("/", "/index.html") else url.path.removeprefix("/assets/")
                path = (ASSETS / name).resolve()
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

    return Handler
