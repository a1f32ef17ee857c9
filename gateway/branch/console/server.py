"""The branch console: a small web page the gateway serves on the branch LAN (a PC or a tablet).

It shows the open alerts with their reasons in plain words and the caring questions to ask, in
Chinese and English; staff acknowledge an alert and record its outcome there, and can raise an
alert themselves on one of the last events at each counter; today's history is below. Only staff
on the branch's roster (``console.staff``) who log in with the branch password can change anything:

- the session id travels in a cookie that scripts cannot read (HttpOnly) and that the browser
  never sends from another site (SameSite=Strict);
- every POST must also carry the session's CSRF token in ``X-CSRF-Token`` (the page reads it from
  a meta tag), and an ``Origin`` header, if sent, must be this console's own;
- five login attempts for one staff number, or from one address, use up a minute: each is
  counted before its password is checked, so parallel guesses get no more checks.

It listens on 127.0.0.1 unless configured otherwise; on any other address it serves HTTPS
(``console.cert_file``, ``console.key_file``) or sits behind the branch's TLS proxy
(``console.behind_proxy``), see docs/supervisor.md.

The page polls ``/api/state`` every two seconds, so a new alert shows up without a reload.

    console = BranchConsole.from_config(config, store, lifecycle).start()
    print(console.url)      # http://127.0.0.1:8080/
    console.stop()

Standard library only (http.server): nothing to install on the Pi, nothing that opens a port at
import time.
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import ssl
import sys
import threading
import time
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from urllib.parse import parse_qs, urlsplit

from counterguard.core import jsontext, messages
from counterguard.core.weblogin import (
    SECURITY_HEADERS,
    LockedOut,
    PasswordError,
    Sessions,
    cookie_value,
    same_origin,
)
from counterguard.gateway.questions import (
    ANSWER_TEXT,
    ANSWERS,
    LEVEL_TEXT,
    OUTCOME_TEXT,
    load_questions,
)
from counterguard.gateway.store.db import (
    OUTCOMES,
    RAISE_NOTE_MAX,
    RAISE_WITHIN_S,
    LifecycleError,
    UnknownAlert,
    UnknownEvent,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
COOKIE = "cg_session"
MAX_BODY = 16 * 1024  # a form or a note, never more
QUESTIONS_SHOWN = 6   # enough to start a conversation, short enough to read at the counter
EVENTS_PER_COUNTER = 5  # the last few customers at each counter, for staff reporting one the model let through
REQUEST_TIMEOUT_S = 30  # a client that stops sending (or never finishes TLS) frees its thread
# The three levels of dissuasion, as the outcome form offers them (docs/supervisor.md).
HANDLED_TEXT = {1: {"en": "Level 1: teller's caring questions", "zh": "一级：柜员关爱提问劝阻"},
                2: {"en": "Level 2: supervisor's talk", "zh": "二级：主管面谈劝阻"},
                3: {"en": "Level 3: police called (police-bank link)", "zh": "三级：警银联动报警"}}
STATIC = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}


class ConsoleError(Exception):
    """A request the console refuses; becomes a JSON error with this status (and the message in
    Chinese too, when there is one, for the page in Chinese)."""

    def __init__(self, status: HTTPStatus, message: str, zh: str = ""):
        super().__init__(message)
        self.status = status
        self.zh = zh

    def payload(self) -> dict:
        return {"error": str(self), **({"error_zh": self.zh} if self.zh else {})}


def _template(name: str) -> Template:
    return Template((HERE / "templates" / name).read_text(encoding="utf-8"))


def teller_text_zh(level: str, reasons, questions) -> str:
    """The teller's instruction in Chinese, as ``verdict_text`` gives it in English for the terminal."""
    shown = "、".join(questions.label(r, "zh") for r in list(reasons)[:3] if r != "model_score")
    if level == "green":
        return "正常办理"
    if level == "amber":
        return f"请进行关爱提问：{shown}" if shown else "请进行关爱提问"
    return f"暂停业务：{shown}，请通知主管" if shown else "暂停业务，请通知主管"


def local_day_start(now: float) -> float:
    d = datetime.fromtimestamp(now).astimezone()
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class BranchConsole:
    """The console's HTTP server, bound to one gateway's store and life cycle."""

    def __init__(self, store, lifecycle, sessions: Sessions, questions, *, host: str = "127.0.0.1", port: int = 8080,
                 branch: str = "", lamps=None, tls: ssl.SSLContext | None = None, behind_proxy: bool = False):
        self.store = store
        self.lifecycle = lifecycle
        self.sessions = sessions
        self.questions = questions
        self.branch = branch
        self.lamps = lamps
        self.tls = tls
        self.behind_proxy = behind_proxy
        self._server = _ConsoleServer((host, port), _handler_for(self), tls)
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config, store, lifecycle, questions=None) -> BranchConsole:
        """``questions``: the branch's caring questions if already loaded, else read from the config's file.

        Refuses (ConfigError, naming the key) a console with no roster, or one on a non-loopback
        address with neither TLS nor a proxy, even from a config built in code."""
        from counterguard.gateway.config import ConfigError, check_console

        c = config.console
        check_console(c, config.source)
        try:
            sessions = Sessions(c.password_hash, staff=c.staff, lifetime_s=c.session_hours * 3600)
        except PasswordError as exc:
            raise ConfigError(config.source, "console.staff" if c.password_hash else "console.password_hash",
                              str(exc)) from None
        tls = None
        if c.cert_file:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                tls.load_cert_chain(c.cert_file, c.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(config.source, "console.cert_file",
                                  f"cannot load {c.cert_file} with {c.key_file}: {exc}") from None
        if questions is None:
            questions = load_questions(config.supervisor.questions_file or None)
        return cls(store, lifecycle, sessions, questions, host=c.listen, port=c.port, branch=config.gateway.branch,
                   lamps=lifecycle.lamps, tls=tls, behind_proxy=c.behind_proxy)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def start(self) -> BranchConsole:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="branch-console", daemon=True)
        self._thread.start()
        log.info("branch console at %s", self.url)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    # -- what the page shows ----------------------------------------------------------------------
    def _alert_json(self, view, *, questions: bool = True, answers=(), said=None) -> dict:
        """``said``: the customer's answers to the caring dialogue for its event (Store.dialogue_views)."""
        q = self.questions
        # One list per alert: the questions shown are the ones whose answers can be recorded.
        shown = q.shown(view.reasons, QUESTIONS_SHOWN) if questions else []
        return {
            "alert_id": view.alert_id,
            "counter": view.counter,
            "level": view.level,
            "level_text": LEVEL_TEXT[view.level],
            "state": view.state,
            "amount": view.amount,
            "kind": view.kind,
            "text": view.text,
            "teller_text": {"en": view.text, "zh": teller_text_zh(view.level, view.reasons, q)},
            "reasons": [{"code": r, "en": q.label(r, "en"), "zh": q.label(r, "zh")} for r in view.reasons],
            "questions": {"en": [x.en or x.zh for x in shown], "zh": [x.zh or x.en for x in shown]},
            # The same questions with their keys, for recording the customer's answers with the outcome.
            "asked": [{"key": x.key, "en": x.en, "zh": x.zh} for x in shown],
            "answers": [{"key": a.key, "en": a.question_en, "zh": a.question_zh, "answer": a.answer}
                        for a in answers],
            "raised_at": view.raised_wall,
            "escalated": view.escalated_wall is not None,
            "ack_by": view.ack_by,
            "ack_via": view.ack_via,
            "ack_at": view.ack_wall,
            "response_s": None if view.response_s is None else round(view.response_s, 1),
            "outcome": view.outcome,
            "outcome_text": OUTCOME_TEXT.get(view.outcome) if view.outcome else None,
            "note": view.note,
            "outcome_by": view.outcome_by,
            "handled_at": view.handled_at,
            "handled_text": HANDLED_TEXT.get(view.handled_at),
            # What the outcome form chooses for the supervisor: level 1 when the customer answered the
            # caring questions at the counter (police_called always means 3, chosen in the page).
            "level_implied": (1 if said is not None and said[2] == "counter" else None)
            if view.state == "acknowledged" else None,
            # The final verdict once the customer answered: an amber the answers cleared says so here.
            "after_answers": None if said is None else {
                "level": said[1]["level"], "via": said[2],
                "text": {"en": said[1]["text"], "zh": teller_text_zh(said[1]["level"], said[1]["reasons"], q)}},
            "raised_by": view.raised_by,
            "raise_note": view.raise_note,
        }

    def state(self, session) -> dict:
        now = time.time()
        live = self.store.alert_views(states=("open", "acknowledged"))
        today = self.store.alert_views(since_wall=local_day_start(now))
        answers = self.store.answers([v.alert_id for v in today if v.state == "closed"])
        said = self.store.dialogue_views([v.event_id for v in (*live, *today)])  # one read for every card
        return {
            "staff": session.staff,
            "branch": self.branch,
            "now": now,
            "open": [self._alert_json(v, said=said.get(v.event_id)) for v in live if v.state == "open"],
            "awaiting_outcome": [self._alert_json(v, said=said.get(v.event_id)) for v in live
                                 if v.state == "acknowledged"],
            # The history table needs no questions: it keeps a busy day's poll small.
            "today": [self._alert_json(v, questions=False, answers=answers.get(v.alert_id, ()),
                                       said=said.get(v.event_id))
                      for v in reversed(today)],
            "lamps": {str(k): v for k, v in self.lamps.states().items()} if self.lamps is not None else {},
            # Staff can raise an alert on any of these (docs/supervisor.md, "Raising an alert yourself").
            "events": [{**e, "level_text": LEVEL_TEXT.get(e["level"])}
                       for e in self.store.recent_events(now - RAISE_WITHIN_S, per_counter=EVENTS_PER_COUNTER)],
            "raise_note_max": RAISE_NOTE_MAX,
            "outcomes": [{"code": o, **OUTCOME_TEXT[o]} for o in OUTCOMES],
            "answer_words": [{"code": a, **ANSWER_TEXT[a]} for a in ANSWERS],
            "handled_levels": [{"code": k, **v} for k, v in HANDLED_TEXT.items()],
        }

    def acknowledge(self, session, body: dict) -> dict:
        alert_id = _field(body, "alert_id")
        ack = self.lifecycle.acknowledge(alert_id, by=session.staff, via="console")
        if ack is None:
            view = self.store.alert_view(alert_id)
            by = view.ack_by if view and view.ack_by else ""
            raise ConsoleError(HTTPStatus.CONFLICT,
                               f"alert {alert_id} is already acknowledged" + (f" by {by}" if by else ""),
                               "该预警已被" + (f" {by} " if by else "他人") + "接手")
        return {"ok": True, "alert_id": ack.alert_id, "seq": ack.seq}

    def raise_alert(self, session, body: dict) -> dict:
        """Staff report an event the model let through: an alert raised in their name."""
        event_id = _field(body, "event_id")
        # The store refuses a level other than amber or red (a ValueError: 400, naming it).
        alert = self.lifecycle.raise_alert(event_id, body.get("level", "red"), by=session.staff, via="console",
                                           note=_note(body))
        return {"ok": True, "alert_id": alert.alert_id, "seq": alert.seq, "level": alert.level}

    def record_outcome(self, session, body: dict) -> dict:
        alert_id = _field(body, "alert_id")
        outcome = body.get("outcome")
        if not isinstance(outcome, str) or not outcome.strip():
            raise ConsoleError(HTTPStatus.BAD_REQUEST, f"outcome is required: one of {', '.join(OUTCOMES)}",
                               "请选择处理结果")
        outcome = outcome.strip()
        if outcome not in OUTCOMES:
            raise ConsoleError(HTTPStatus.BAD_REQUEST, f"outcome must be one of {', '.join(OUTCOMES)}",
                               "处理结果无效，请从列表中选择")
        note = _note(body)
        try:  # absent from an older page: the store then records what the outcome implies, if anything
            handled_at = messages.handled_at_level(body.get("handled_at"))
        except ValueError as exc:
            raise ConsoleError(HTTPStatus.BAD_REQUEST, str(exc), "处理层级无效，请选择一级、二级或三级") from None
        if outcome == "police_called" and handled_at not in (None, 3):
            raise ConsoleError(HTTPStatus.BAD_REQUEST, "handled_at: police_called is level 3 (police)",
                               "已报警属于三级（警银联动），请选择三级")
        answers = body.get("answers", {})
        if not isinstance(answers, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in answers.items()):
            raise ConsoleError(HTTPStatus.BAD_REQUEST, "answers must map question keys to yes, no or declined")
        view = self.store.alert_view(alert_id)
        if view is not None and answers:
            # Only the questions this page showed for the alert can have been asked from it.
            shown = [x.key for x in self.questions.shown(view.reasons, QUESTIONS_SHOWN)]
            for key in answers:
                if key not in shown:
                    raise ConsoleError(HTTPStatus.BAD_REQUEST,
                                       f"answer for {key!r}: not one of the questions shown for alert {alert_id} "
                                       f"({', '.join(shown)}); nothing was recorded",
                                       "回答对应的问题不在该预警的提问列表中，未登记任何内容；"
                                       "请刷新页面后重试")
        # The store checks each key against this alert's questions and refuses the whole outcome on a bad one.
        rec = self.lifecycle.record_outcome(alert_id, outcome, note=note, by=session.staff, via="console",
                                            answers=answers, questions=self.questions, handled_at=handled_at)
        return {"ok": True, "alert_id": rec.alert_id, "seq": rec.seq, "handled_at": rec.handled_at}


    def record_answers(self, session, body: dict) -> dict:
        """The customer's answers to an alert's caring questions, as the signals they give: the
        gateway's final verdict for its event (the lamps move if it rose)."""
        from counterguard.gateway.scoring.dialogue import DialogueRefused

        alert_id = _field(body, "alert_id")
        answers = body.get("answers", {})
        if not isinstance(answers, dict) or not all(isinstance(k, str) and v in ANSWERS
                                                    for k, v in answers.items()):
            raise ConsoleError(HTTPStatus.BAD_REQUEST, "answers must map question keys to yes, no or declined",
                               "回答格式有误，请刷新页面后重试")
        view = self.store.alert_view(alert_id)
        if view is None:
            raise ConsoleError(HTTPStatus.NOT_FOUND, f"no alert {alert_id!r} on this gateway", "找不到该预警")
        shown = [x.key for x in self.questions.shown(view.reasons, QUESTIONS_SHOWN)]
        signals = self.questions.signal_answers(view.reasons, {k: v for k, v in answers.items() if k in shown})
        if not signals:
            raise ConsoleError(HTTPStatus.BAD_REQUEST, "none of the answered questions tells the gateway anything "
                               "it scores; answer a question marked with a signal first",
                               "所答问题均不参与研判，请先回答带标记的问题")
        try:
            done = self.lifecycle.answer(view.event_id, signals, by=session.staff)
        except DialogueRefused as exc:
            zh = {"conflict": "该笔业务已登记过不同的客户回答，以首次登记为准",
                  "closed": "该预警已登记处理结果，客户回答请随结果一并登记"}.get(exc.code, "无法登记客户回答")
            raise ConsoleError(HTTPStatus.CONFLICT, exc.detail, zh) from None
        final = done.body
        return {"ok": True, "alert_id": alert_id, "signals": signals, "level": final["level"],
                "reasons": [{"en": self.questions.label(r, "en"), "zh": self.questions.label(r, "zh")}
                            for r in final["reasons"]],
                "text": {"en": final["text"], "zh": teller_text_zh(final["level"], final["reasons"], self.questions)}}


class _ConsoleServer(ThreadingHTTPServer):
    """One thread per request; with TLS, each connection's handshake runs on its own thread (in
    the handler's ``setup``), so a client that never finishes one holds up nobody else."""

    daemon_threads = True
    request_queue_size = 64  # a tablet's page and a burst of logins queue, not get refused

    def __init__(self, address, handler, tls: ssl.SSLContext | None):
        self.tls = tls
        super().__init__(address, handler)

    def get_request(self):
        sock, address = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request, client_address) -> None:
        # A port scan, a plain-HTTP request to the HTTPS port, a client gone quiet: a debug line, not
        # a traceback on stderr. Anything else is ours, and goes to the log.
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            log.debug("console: connection from %s failed", client_address[0], exc_info=True)
        else:
            log.exception("console: request from %s failed", client_address[0])



def _field(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ConsoleError(HTTPStatus.BAD_REQUEST, f"{name} is required")
    return value.strip()


def _note(body: dict) -> str:
    note = body.get("note", "")
    if not isinstance(note, str):
        raise ConsoleError(HTTPStatus.BAD_REQUEST, "note must be text")
    return note


def _handler_for(console: BranchConsole):
    class Handler(_Handler):
        pass

    Handler.console = console
    return Handler


class _Handler(BaseHTTPRequestHandler):
    console: BranchConsole
    server_version = "counterguard-console"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, fmt, *args) -> None:  # into the gateway's log, not stderr
        log.debug("console %s: " + fmt, self.client_address[0], *args)

    # -- plumbing ---------------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: HTTPStatus, payload: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8",
                   headers)

    def _html(self, status: HTTPStatus, text: str, headers: dict | None = None) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8", headers)

    def _session(self):
        return self.console.sessions.get(cookie_value(self.headers, COOKIE))

    def _client_address(self) -> str:
        """Who is logging in, for the lockout. Behind a proxy on this machine, the address it
        forwards (the last X-Forwarded-For hop, the one the proxy wrote); a client that reaches
        the console directly cannot choose its own."""
        peer = self.client_address[0]
        forwarded = self.headers.get("X-Forwarded-For")
        if self.console.behind_proxy and forwarded and ipaddress.ip_address(peer).is_loopback:
            return forwarded.split(",")[-1].strip()[:64] or peer
        return peer

    def _cookie(self, value: str, max_age: int) -> str:
        # Secure when the browser reaches the console over HTTPS (its own, or the proxy's).
        secure = "; Secure" if self.console.tls or self.console.behind_proxy else ""
        return f"{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise ConsoleError(HTTPStatus.BAD_REQUEST, "Content-Length must be a number") from None
        if length > MAX_BODY:
            raise ConsoleError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {MAX_BODY} bytes")
        return self.rfile.read(length) if length > 0 else b""

    # -- routes -----------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        try:
            if path == "/":
                return self._page()
            if path.startswith("/static/") and path[len("/static/"):] in STATIC:
                name = path[len("/static/"):]
                return self._send(HTTPStatus.OK, (HERE / "static" / name).read_bytes(), STATIC[name])
            if path == "/api/state":
                session = self._session()
                if session is None:
                    raise ConsoleError(HTTPStatus.UNAUTHORIZED, "log in first")
                return self._json(HTTPStatus.OK, self.console.state(session))
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {path}"})
        except ConsoleError as exc:
            self._json(exc.status, exc.payload())
        except Exception:
            log.exception("console: GET %s failed", path)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "the gateway could not answer; see its log"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        try:
            if not same_origin(self.headers):
                raise ConsoleError(HTTPStatus.FORBIDDEN, "request from another site refused")
            if path == "/login":
                return self._login()
            session = self._session()
            if session is None:
                raise ConsoleError(HTTPStatus.UNAUTHORIZED, "log in first: only branch staff can acknowledge alerts",
                                   "请先登录：只有本网点员工可以处理预警")
            if self.headers.get("X-CSRF-Token") != session.csrf:
                raise ConsoleError(HTTPStatus.FORBIDDEN, "missing or wrong CSRF token; reload the page",
                                   "页面已过期，请刷新后重试")
            if path == "/logout":
                self.console.sessions.logout(session.sid)
                return self._json(HTTPStatus.OK, {"ok": True},
                                  {"Set-Cookie": self._cookie("", 0)})
            raw = self._body()
            try:
                body = jsontext.loads(raw or b"{}")
            except ValueError:
                raise ConsoleError(HTTPStatus.BAD_REQUEST, "the request body must be JSON") from None
            if not isinstance(body, dict):
                raise ConsoleError(HTTPStatus.BAD_REQUEST, "the request body must be a JSON object")
            if path == "/api/ack":
                return self._json(HTTPStatus.OK, self.console.acknowledge(session, body))
            if path == "/api/outcome":
                return self._json(HTTPStatus.OK, self.console.record_outcome(session, body))
            if path == "/api/raise":
                return self._json(HTTPStatus.OK, self.console.raise_alert(session, body))
            if path == "/api/answers":
                return self._json(HTTPStatus.OK, self.console.record_answers(session, body))
            raise ConsoleError(HTTPStatus.NOT_FOUND, f"no action {path}")
        except ConsoleError as exc:
            self._json(exc.status, exc.payload())
        except (UnknownAlert, UnknownEvent) as exc:
            self._json(HTTPStatus.NOT_FOUND, {"error": str(exc)})
        except LifecycleError as exc:
            self._json(HTTPStatus.CONFLICT, {"error": str(exc)})
        except ValueError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except Exception:
            log.exception("console: POST %s failed", path)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "the gateway could not record that; see its log"})

    def _page(self, error: str = "", status: HTTPStatus = HTTPStatus.OK) -> None:
        session = self._session()
        branch = html.escape(self.console.branch)
        if session is None:
            text = _template("login.html").substitute(branch=branch, error=html.escape(error),
                                                      error_class="error" if error else "error hidden")
            return self._html(status, text)
        text = _template("console.html").substitute(branch=branch, staff=html.escape(session.staff),
                                                    csrf=html.escape(session.csrf))
        self._html(HTTPStatus.OK, text)

    def _login(self) -> None:
        address = self._client_address()
        form = parse_qs(self._body().decode("utf-8", "replace"))
        staff = (form.get("staff") or [""])[0].strip()[:64]
        password = (form.get("password") or [""])[0]
        try:
            # A staff number not on the roster gets the same answer as a wrong password.
            session = self.console.sessions.login(staff, password, address)
        except LockedOut:
            log.warning("console: login for %r from %s refused: too many attempts", staff, address)
            return self._page("Too many wrong passwords: wait a minute. 密码错误次数过多，请一分钟后再试。",
                              HTTPStatus.TOO_MANY_REQUESTS)
        if session is None:
            log.warning("console: failed login for %r from %s", staff, address)
            return self._page("Staff number or password is wrong. 工号或密码错误。", HTTPStatus.UNAUTHORIZED)
        log.info("console: %s logged in from %s", staff, address)
        max_age = int(self.console.sessions.lifetime_s)
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", "/")
        self.send_header("Set-Cookie", self._cookie(session.sid, max_age))
        self.send_header("Content-Length", "0")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
