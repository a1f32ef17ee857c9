"""The branch console: a real gateway serving the page on loopback, driven over HTTP and in real
headless Chromium (selenium + /usr/bin/chromedriver)."""

from __future__ import annotations

import http.client
import json
import shutil
import sqlite3
import subprocess
import sys
import urllib.parse
from datetime import date

import pytest
from gpiozero.pins.mock import MockFactory

from counterguard.gateway.ops.app import Gateway
from counterguard.gateway.config import ConfigError, parse_config
from counterguard.core.weblogin import hash_password, verify_password
from counterguard.gateway.questions import QuestionsError, load_questions
from counterguard.gateway.counter.terminal import TellerTerminal

from counterguard.centre.ingest import IngestWorker
from counterguard.centre.store import open_store
from counterguard.core.dialogue import SIGNALS
from conftest import wait_until
from harness import config_toml, event, gateway_config, intercept, pty_pair

PASSWORD = "yanta-017-branch"
PASSWORD_HASH = hash_password(PASSWORD)
ROSTER = ("S1024", "S2048", "T0311")  # the branch's staff numbers (console.staff)


@pytest.fixture
def gateway(tmp_path, broker):
    factory = MockFactory()
    with pty_pair() as (master, path):
        cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path)
        cfg = cfg.with_changes("console", enabled=True, listen="127.0.0.1", port=0, password_hash=PASSWORD_HASH,
                               staff=ROSTER)
        gw = Gateway(cfg, pin_factory=factory)
        gw.start()
        yield gw, TellerTerminal(master, timeout=2.0)
        gw.stop()
    factory.reset()


class Client:
    """A plain HTTP client that keeps the session cookie, as a browser would."""

    def __init__(self, port: int):
        self.port = port
        self.cookie = None
        self.csrf = None

    def request(self, method: str, path: str, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = dict(headers or {})
        if self.cookie:
            headers["Cookie"] = self.cookie
        if isinstance(body, dict):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=headers)
        res = conn.getresponse()
        data = res.read()
        conn.close()
        return res, data

    def login(self, staff="S1024", password=PASSWORD):
        form = urllib.parse.urlencode({"staff": staff, "password": password})
        res, data = self.request("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
        if res.status == 303:
            self.cookie = res.getheader("Set-Cookie").split(";")[0]
            _, page = self.request("GET", "/")
            marker = b'name="csrf-token" content="'
            start = page.index(marker) + len(marker)
            self.csrf = page[start:page.index(b'"', start)].decode()
        return res, data

    def post(self, path, body, csrf=True):
        return self.request("POST", path, body, {"X-CSRF-Token": self.csrf} if csrf and self.csrf else {})


def raise_red(gw, terminal, event_id="console-1"):
    assert terminal.send(intercept(counter=3, event_id=event_id)).body["level"] == "red"
    return gw.store.open_alerts()[0].alert_id


def test_acknowledging_without_logging_in_is_refused_and_changes_nothing(gateway):
    gw, terminal = gateway
    alert_id = raise_red(gw, terminal)
    anon = Client(gw.branch_console.port)
    res, data = anon.post("/api/ack", {"alert_id": alert_id})
    assert res.status == 401 and "log in" in json.loads(data)["error"]
    res, _ = anon.request("GET", "/api/state")
    assert res.status == 401
    res, page = anon.request("GET", "/")
    assert res.status == 200 and b'id="login-form"' in page and alert_id.encode() not in page
    res, _ = anon.login(password="wrong")
    assert res.status == 401 and anon.cookie is None
    assert gw.store.alert_view(alert_id).state == "open"


def test_a_logged_in_post_needs_the_csrf_token_and_this_origin(gateway):
    gw, terminal = gateway
    alert_id = raise_red(gw, terminal)
    staff = Client(gw.branch_console.port)
    res, _ = staff.login()
    assert res.status == 303
    cookie = res.getheader("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    res, data = staff.post("/api/ack", {"alert_id": alert_id}, csrf=False)
    assert res.status == 403 and "CSRF" in json.loads(data)["error"]
    res, _ = staff.request("POST", "/api/ack", {"alert_id": alert_id},
                           {"X-CSRF-Token": staff.csrf, "Origin": "http://evil.example"})
    assert res.status == 403
    assert gw.store.alert_view(alert_id).state == "open"
    res, data = staff.post("/api/ack", {"alert_id": alert_id})
    assert res.status == 200, data
    view = gw.store.alert_view(alert_id)
    assert (view.state, view.ack_by, view.ack_via) == ("acknowledged", "S1024", "console")
    res, data = staff.post("/api/ack", {"alert_id": alert_id})
    assert res.status == 409 and "already acknowledged by S1024" in json.loads(data)["error"]


def test_outcomes_are_checked_by_name_and_close_the_alert(gateway):
    gw, terminal = gateway
    alert_id = raise_red(gw, terminal)
    staff = Client(gw.branch_console.port)
    staff.login()
    res, data = staff.post("/api/outcome", {"alert_id": alert_id, "outcome": "police_called"})
    assert res.status == 409 and "acknowledge it first" in json.loads(data)["error"]
    staff.post("/api/ack", {"alert_id": alert_id})
    res, data = staff.post("/api/outcome", {"alert_id": alert_id, "outcome": "sent_home"})
    assert res.status == 400 and "outcome must be one of" in json.loads(data)["error"]
    # Nothing is recorded for a supervisor who chose nothing; the page in Chinese gets Chinese words.
    for missing in ({}, {"outcome": ""}, {"outcome": None}):
        res, data = staff.post("/api/outcome", {"alert_id": alert_id} | missing)
        assert res.status == 400 and "outcome is required: one of confirmed_fraud," in json.loads(data)["error"]
        assert json.loads(data)["error_zh"] == "请选择处理结果"
    assert gw.store.alert_view(alert_id).state == "acknowledged"
    res, data = staff.post("/api/outcome", {"outcome": "police_called"})
    assert res.status == 400 and "alert_id is required" in json.loads(data)["error"]
    res, data = staff.post("/api/outcome", {"alert_id": "nope", "outcome": "police_called"})
    assert res.status == 404
    res, _ = staff.post("/api/outcome", {"alert_id": alert_id, "outcome": "police_called", "note": "110 at 09:41"})
    assert res.status == 200
    state = json.loads(staff.request("GET", "/api/state")[1])
    assert state["open"] == [] and state["awaiting_outcome"] == []
    today = state["today"][0]
    assert (today["outcome"], today["note"], today["outcome_by"]) == ("police_called", "110 at 09:41", "S1024")
    assert today["outcome_text"]["zh"] == "已报警" and today["response_s"] >= 0


def test_the_customers_answers_are_posted_with_the_outcome_and_a_wrong_key_records_nothing(gateway):
    gw, terminal = gateway
    alert_id = raise_red(gw, terminal)
    staff = Client(gw.branch_console.port)
    staff.login()
    staff.post("/api/ack", {"alert_id": alert_id})
    state = json.loads(staff.request("GET", "/api/state")[1])
    alert = state["awaiting_outcome"][0]
    asked = alert["asked"]
    # One list: the questions shown are the ones that can be answered, each reason's first question first.
    assert [q["en"] for q in asked] == alert["questions"]["en"] and len(asked) == 6
    assert [q["key"] for q in asked] == [q.key for q in load_questions().shown(gw.store.alert_view(alert_id).reasons, 6)]
    phone = {q["key"]: q for q in asked}["customer_on_phone.1"]
    assert (phone["en"], phone["zh"]) == ("Who are you talking to on the phone?", "请问您在和谁通电话？")
    assert [w["code"] for w in state["answer_words"]] == ["yes", "no", "declined"]
    outcome = {"alert_id": alert_id, "outcome": "police_called"}
    for answers, status, message in (({"urgent.1": "yes", "new_account.1": "no"}, 400, "'new_account.1'"),
                                     # A question of the alert the page did not show was not asked from it.
                                     ({"general.1": "yes"}, 400, "'general.1': not one of the questions shown"),
                                     ({"urgent.1": "perhaps"}, 400, "got 'perhaps'"),
                                     (["urgent.1"], 400, "answers must map question keys")):
        res, data = staff.post("/api/outcome", outcome | {"answers": answers})
        assert res.status == status and message in json.loads(data)["error"]
        assert gw.store.alert_view(alert_id).state == "acknowledged" and gw.store.answers([alert_id]) == {}
    res, _ = staff.post("/api/outcome", outcome | {"answers": {"customer_on_phone.1": "no", "urgent.1": "yes"}})
    assert res.status == 200
    today = json.loads(staff.request("GET", "/api/state")[1])["today"][0]
    assert [(a["key"], a["answer"]) for a in today["answers"]] == [("customer_on_phone.1", "no"), ("urgent.1", "yes")]
    assert today["answers"][0]["zh"] == "请问您在和谁通电话？"


def test_five_wrong_passwords_lock_the_address_out(gateway):
    gw, _ = gateway
    client = Client(gw.branch_console.port)
    for _ in range(5):
        assert client.login(password="guess")[0].status == 401
    res, _ = client.login()  # even the right password waits now
    assert res.status == 429 and client.cookie is None


def test_the_state_gives_reasons_in_plain_words_and_caring_questions_in_both_languages(gateway):
    gw, terminal = gateway
    raise_red(gw, terminal)
    staff = Client(gw.branch_console.port)
    staff.login()
    alert = json.loads(staff.request("GET", "/api/state")[1])["open"][0]
    reasons = {r["code"]: r for r in alert["reasons"]}
    assert reasons["customer_on_phone"]["zh"] == "客户正在通话"
    assert reasons["customer_on_phone"]["en"] == "customer on the phone"
    assert "请问您在和谁通电话？" in alert["questions"]["zh"]
    assert "Who are you talking to on the phone?" in alert["questions"]["en"]


def test_a_console_without_a_password_or_with_a_bad_hash_is_refused_by_key():
    with pytest.raises(ConfigError, match="console.password_hash: is required"):
        parse_config({"console": {"enabled": True}})
    with pytest.raises(ConfigError, match="console.password_hash: not a console password hash"):
        parse_config({"console": {"password_hash": "plaintext"}})
    assert verify_password(PASSWORD, PASSWORD_HASH) and not verify_password("x", PASSWORD_HASH)


def test_a_branch_questions_file_overrides_some_reasons_and_bad_keys_are_named(tmp_path):
    own = tmp_path / "questions.toml"
    own.write_text('[reasons.urgent]\nlabel_zh = "着急"\nen = ["Why today?"]\nzh = ["为什么今天办？"]\n')
    q = load_questions(own)
    assert q.for_reasons(["urgent"], "en")[0] == "Why today?"
    assert q.label("urgent", "zh") == "着急" and q.label("customer_on_phone", "zh") == "客户正在通话"
    # A short list takes every reason's first question before anyone's second.
    assert q.for_reasons(["elderly_customer", "customer_on_phone"], "en", limit=2) == [
        "Do your children or family know about this withdrawal?", "Who are you talking to on the phone?"]
    # The keyed list the console shows and records answers to is the same list, in the same order.
    for reasons in (["elderly_customer", "customer_on_phone"], ["urgent", "new_payee", "teller_report"]):
        for lang in ("en", "zh"):
            assert [getattr(x, lang) for x in q.shown(reasons, 4)] == q.for_reasons(reasons, lang, limit=4)
    own.write_text('[reasons.hurry]\nen = ["?"]\n')
    with pytest.raises(QuestionsError, match=r"reasons.hurry: unknown reason"):
        load_questions(own)
    own.write_text('[reasons.urgent]\nen = "not a list"\n')
    with pytest.raises(QuestionsError, match=r"reasons.urgent.en: must be a list"):
        load_questions(own)


# -- in a real browser ------------------------------------------------------------------------------
@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not shutil.which("chromedriver") and not shutil.which("/usr/bin/chromedriver"):
        pytest.skip("chromedriver is not installed (./setup.sh installs it)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--lang=zh-CN"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def log_in(browser, gw, staff: str):
    """Open the branch console and log in as ``staff``; a wait for the page's later changes."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"http://127.0.0.1:{gw.branch_console.port}/")
    browser.find_element(By.ID, "staff").send_keys(staff)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    return WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))


def test_the_console_shows_a_new_alert_and_accepts_an_acknowledgement_in_chromium(gateway, browser):
    from selenium.webdriver.common.by import By

    gw, terminal = gateway
    wait = log_in(browser, gw, "S1024")
    wait.until(lambda d: d.find_elements(By.ID, "no-open") and d.find_element(By.ID, "no-open").is_displayed())
    assert browser.get_cookie("cg_session")["httpOnly"] is True

    # The alert is raised after the page is open: the page picks it up by itself.
    alert_id = raise_red(gw, terminal, "browser-1")
    card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#open .card[data-alert-id="{alert_id}"]'))[0]
    assert "客户正在通话" in card.text and "请问您在和谁通电话？" in card.text
    card.find_element(By.CSS_SELECTOR, "button.ack").click()
    assert wait_until(lambda: gw.store.alert_view(alert_id).state == "acknowledged", timeout=30)
    view = gw.store.alert_view(alert_id)
    assert (view.ack_by, view.ack_via) == ("S1024", "console")

    # The card moves to "waiting for an outcome"; record one with a note, in English this time.
    browser.find_element(By.ID, "lang").click()
    card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#awaiting .card[data-alert-id="{alert_id}"]'))[0]
    assert "customer on the phone" in card.text
    assert browser.title == "Counter alerts — counterguard"  # the title follows the language; nothing open
    card.find_element(By.CSS_SELECTOR, "input.outcome[value='customer_dissuaded']").click()
    card.find_element(By.CSS_SELECTOR, "textarea.note").send_keys("daughter came; kept her savings")
    # What the customer answered to two of the caring questions; the others stay "not asked".
    assert "Who are you talking to on the phone?" in card.text
    card.find_element(By.CSS_SELECTOR, "select.answer[data-key='urgent.1'] option[value='yes']").click()
    card.find_element(By.CSS_SELECTOR, "select.answer[data-key='customer_on_phone.1'] option[value='declined']").click()
    card.find_element(By.CSS_SELECTOR, "input.handled[value='2']").click()  # the supervisor talked with her
    card.find_element(By.CSS_SELECTOR, "button.record").click()
    assert wait_until(lambda: gw.store.alert_view(alert_id).state == "closed", timeout=30)
    assert gw.store.alert_view(alert_id).note == "daughter came; kept her savings"
    assert gw.store.alert_view(alert_id).handled_at == 2
    assert [(a.key, a.answer) for a in gw.store.answers([alert_id])[alert_id]] == [
        ("customer_on_phone.1", "declined"), ("urgent.1", "yes")]
    # The history redraws itself: look the row up afresh each time. The closed alert shows its answers.
    wait.until(lambda d: any("Customer dissuaded · Level 2: supervisor's talk" in r.text and
                             "Who are you talking to on the phone? — would not say" in r.text
                             for r in d.find_elements(By.CSS_SELECTOR, f'#today tr[data-alert-id="{alert_id}"]')))


def test_a_teller_reports_an_event_the_lamp_let_through_from_the_console_in_chromium(gateway, browser):
    from selenium.webdriver.common.by import By

    gw, terminal = gateway
    wait = log_in(browser, gw, "T0311")
    assert terminal.send(event(counter=1, event_id="browser-green", amount=4200)).body["level"] == "green"
    row = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#events tr[data-event-id="browser-green"]'))[0]
    assert "4,200" in row.text and "绿" in row.text and "取现" in row.text
    row.find_element(By.CSS_SELECTOR, "select.raise-level option[value='amber']").click()
    row.find_element(By.CSS_SELECTOR, "textarea.raise-note").send_keys("asked twice whether the police would know")
    row.find_element(By.CSS_SELECTOR, "button.raise").click()
    assert wait_until(lambda: gw.store.open_alerts(level=None), timeout=30)
    wait.until(lambda d: "已在1号柜台发起黄色预警" in d.find_element(By.ID, "status").text)
    [alert] = gw.store.open_alerts(level=None)
    view = gw.store.alert_view(alert.alert_id)
    assert (view.level, view.raised_by, view.raise_note, view.event_id) == (
        "amber", "T0311", "asked twice whether the police would know", "browser-green")
    assert wait_until(lambda: gw.lamps.states()[1] == "amber", timeout=10)  # lamps follow the commit
    card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#open .card[data-alert-id="{alert.alert_id}"]'))[0]
    assert "发起人 T0311" in card.text and "网点员工发起的预警" in card.text


def test_a_busy_console_port_or_a_bad_questions_file_stops_start_up_by_key(gateway, tmp_path):
    from counterguard.gateway.ops.app import check_ready

    gw, _ = gateway
    taken = gw.config.with_changes("store", path=str(tmp_path / "other.db")).with_changes(
        "console", port=gw.branch_console.port, listen="127.0.0.1")
    with pytest.raises(ConfigError, match="console.port: cannot listen on 127.0.0.1"):
        Gateway(taken, pin_factory=MockFactory()).start()
    bad = tmp_path / "q.toml"
    bad.write_text("[reasons.nope]\n")
    with pytest.raises(ConfigError, match="supervisor.questions_file: .*reasons.nope: unknown reason"):
        check_ready(gw.config.with_changes("supervisor", questions_file=str(bad)))


# -- staff raising an alert the model did not -------------------------------------------------------
def counterguard(cfg_file, *args) -> subprocess.CompletedProcess:
    """The installed command in its own process, on the running gateway's store file."""
    return subprocess.run([sys.executable, "-m", "counterguard", *args, "--config", str(cfg_file)],
                          capture_output=True, text=True, timeout=60)


def outbox_row(gw, alert_id):
    with sqlite3.connect(gw.config.store_path) as db:
        return db.execute("SELECT kind, payload FROM outbox WHERE ref_id = ? AND kind = 'alert'", (alert_id,)).fetchone()


def test_staff_raise_an_alert_on_a_green_event_from_the_console_and_the_shell_and_it_flows_like_a_model_alert(
        gateway, broker, tmp_path):
    gw, terminal = gateway
    assert terminal.send(event(counter=2, event_id="coached-1", amount=3000)).body["level"] == "green"
    centre = open_store(tmp_path / "centre.db")
    with IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port):
        staff = Client(gw.branch_console.port)
        staff.login()
        shown = {e["event_id"]: e for e in json.loads(staff.request("GET", "/api/state")[1])["events"]}
        assert (shown["coached-1"]["counter"], shown["coached-1"]["level"], shown["coached-1"]["amount"]) == (2, "green", 3000)
        res, data = staff.post("/api/raise", {"event_id": "coached-1", "level": "red",
                                              "note": "a caller on speaker told him what to say"})
        assert res.status == 200, data
        alert_id = json.loads(data)["alert_id"]
        # On disk with its outbox row, and the lamps lit, before the console answered.
        view = gw.store.alert_view(alert_id)
        assert (view.state, view.level, view.raised_by, view.reasons) == ("open", "red", "S1024", ("teller_report",))
        assert json.loads(outbox_row(gw, alert_id)[1])["raised_by"] == "S1024"
        assert gw.lamps.states()[2] == "red" and gw.lamps.states()["supervisor"] == "red"
        card = json.loads(staff.request("GET", "/api/state")[1])["open"][0]
        assert (card["raised_by"], card["raise_note"]) == ("S1024", "a caller on speaker told him what to say")
        assert card["reasons"][0]["zh"] == "网点员工发起的预警" and card["text"].startswith("Hold: raised by branch staff")

        def at_centre(aid):
            return next((r["payload"] for r in centre.records(kind="alert") if r["alert_id"] == aid), None)

        assert wait_until(lambda: at_centre(alert_id) is not None, 30), "the alert never reached the centre"
        sent = at_centre(alert_id)
        assert (sent["reasons"], sent["raised_by"], sent["note"], sent["level"]) == (
            ["teller_report"], "S1024", "a caller on speaker told him what to say", "red")
        assert staff.post("/api/ack", {"alert_id": alert_id})[0].status == 200
        assert wait_until(lambda: gw.lamps.states()[2] == "amber-blinking" and gw.lamps.states()["supervisor"] == "off")
        assert staff.post("/api/outcome", {"alert_id": alert_id, "outcome": "customer_dissuaded"})[0].status == 200
        assert wait_until(lambda: gw.lamps.states()[2] == "off")

        # From a shell, on the running gateway's store: its lamps follow.
        assert terminal.send(event(counter=4, event_id="coached-2", amount=2500)).body["level"] == "green"
        cfg_file = tmp_path / "gateway.toml"
        cfg_file.write_text(config_toml(gw.config))
        done = counterguard(cfg_file, "raise", "coached-2", "--by", "S2048", "--note", "withdrawing for a 'safe account'")
        assert done.returncode == 0, done.stderr
        assert "raised red alert" in done.stdout
        assert wait_until(lambda: gw.lamps.states()[4] == "red" and gw.lamps.states()["supervisor"] == "red", 10)
        [shell_alert] = gw.store.open_alerts()
        listed = counterguard(cfg_file, "alerts").stdout
        assert f"{shell_alert.alert_id}" in listed and "RAISED BY STAFF S2048" in listed
        assert wait_until(lambda: (at_centre(shell_alert.alert_id) or {}).get("raised_by") == "S2048", 30)
    centre.close()
    # The outcome labels the event the model answered green: a miss the centre can learn from.
    cases = counterguard(cfg_file, "export-events", "--day", date.today().isoformat(), "--labelled")
    labelled = {json.loads(line)["event"]["event_id"]: json.loads(line) for line in cases.stdout.splitlines()}
    assert (labelled["coached-1"]["level"], labelled["coached-1"]["outcome"], labelled["coached-1"]["label"]) == (
        "green", "customer_dissuaded", 1)


def test_a_report_the_console_or_the_shell_refuses_says_why_and_raises_nothing(gateway, tmp_path):
    gw, terminal = gateway
    assert terminal.send(event(counter=1, event_id="seen-1")).body["level"] == "green"
    red_id = raise_red(gw, terminal, event_id="red-1")
    staff = Client(gw.branch_console.port)
    staff.login()
    for body, csrf, status, message in (
            ({"event_id": "seen-1"}, False, 403, "CSRF"),
            ({"event_id": "nobody-1"}, True, 404, "no event 'nobody-1' at this gateway"),
            ({"event_id": "red-1"}, True, 409, f"already has a red alert {red_id} (open)"),
            ({"event_id": "seen-1", "level": "green"}, True, 400, "level must be one of amber, red"),
            ({"event_id": "seen-1", "note": "x" * 501}, True, 400, "note is 501 characters; keep it under 500"),
            ({"level": "red"}, True, 400, "event_id is required")):
        res, data = staff.post("/api/raise", body, csrf=csrf)
        assert (res.status, message in json.loads(data)["error"]) == (status, True), data
    res, _ = Client(gw.branch_console.port).post("/api/raise", {"event_id": "seen-1"})
    assert res.status == 401
    cfg_file = tmp_path / "gateway.toml"
    cfg_file.write_text(config_toml(gw.config))
    for args, code, message in ((("raise", "seen-1"), 2, "the following arguments are required: --by"),
                                (("raise", "nobody-1", "--by", "S1"), 1, "no event 'nobody-1' at this gateway"),
                                (("raise", "seen-1", "--by", "S1", "--level", "blue"), 2, "invalid choice: 'blue'"),
                                (("raise", "seen-1", "--by", "S1", "--note", "x" * 501), 1, "note is 501 characters")):
        done = counterguard(cfg_file, *args)
        assert (done.returncode, message in done.stderr) == (code, True), done.stderr
    assert [a.alert_id for a in gw.store.open_alerts(level=None)] == [red_id]
    assert gw.lamps.states()[1] != "red"


def test_the_customers_answers_from_the_console_give_the_final_verdict_and_move_the_lamps(gateway):
    gw, terminal = gateway
    # A teller's amber report on an event the model let through; the supervisor asks the questions.
    assert terminal.send(event(counter=2, event_id="asked-1", amount=30000, customer_age=70)).body["level"] == "green"
    staff = Client(gw.branch_console.port)
    staff.login()
    res, data = staff.post("/api/raise", {"event_id": "asked-1", "level": "amber", "note": "on the phone"})
    alert_id = json.loads(data)["alert_id"]
    staff.post("/api/ack", {"alert_id": alert_id})
    assert gw.lamps.states()[2] == "amber-blinking"
    # A question without a signal tells the gateway nothing it scores.
    res, data = staff.post("/api/answers", {"alert_id": alert_id, "answers": {"teller_report.9": "yes"}})
    assert res.status == 400 and "answer a question marked with a signal" in json.loads(data)["error"]
    # "Is anyone on the phone telling you what to do?" and "asked to keep it secret?" - yes: a caller's
    # script; the model's re-score with these answers holds the customer.
    res, data = staff.post("/api/answers", {"alert_id": alert_id, "answers": {"teller_report.1": "yes",
                                                                              "general.2": "yes"}})
    assert res.status == 200, data
    final = json.loads(data)
    assert final["signals"] == {"told_to_by_caller": "yes", "told_to_keep_secret": "yes"}
    assert final["level"] == "red" and final["text"]["en"].startswith("Hold: a caller told them to do this")
    assert final["text"]["zh"] != final["text"]["en"] and final["reasons"][0]["zh"] != "caller_instructed"
    red = [a for a in gw.store.open_alerts("red") if a.event_id == "asked-1"]
    assert len(red) == 1 and red[0].reasons[0] == "caller_instructed"
    assert gw.lamps.states()[2] == "red" and gw.lamps.states()["supervisor"] == "red"
    # Answers scored at the console are the supervisor's own talk: no level is chosen for them.
    card = next(a for a in json.loads(staff.request("GET", "/api/state")[1])["awaiting_outcome"]
                if a["alert_id"] == alert_id)
    assert card["level_implied"] is None
    # The first answers stand: others for the same event are refused, in the page's language too.
    res, data = staff.post("/api/answers", {"alert_id": alert_id, "answers": {"teller_report.1": "no"}})
    assert res.status == 409 and json.loads(data)["error_zh"].startswith("该笔业务已登记过不同的客户回答")


def test_an_amber_the_customers_answers_cleared_at_the_counter_says_so_on_its_card(gateway):
    gw, terminal = gateway
    body = event(counter=3, event_id="cleared-1", amount=12000, customer_age=70, teller_flags=["anxious", "urgent"],
                 purpose="investment")
    assert terminal.send(body).body["level"] == "amber"
    reassured = {s: ("yes" if s == "knows_payee_in_person" else "no") for s in SIGNALS}
    final = terminal.answer("cleared-1", reassured, by="T0031").body
    assert final["level"] == "green" and final["final"] is True
    assert wait_until(lambda: gw.lamps.states()[3] == "green", 5)
    staff = Client(gw.branch_console.port)
    staff.login()
    card = next(a for a in json.loads(staff.request("GET", "/api/state")[1])["open"] if a["counter"] == 3)
    # The alert stays for the supervisor's outcome, and its card says what the answers decided.
    assert card["level"] == "amber" and card["after_answers"]["level"] == "green"
    assert card["after_answers"]["via"] == "counter" and card["after_answers"]["text"]["en"] == "Proceed"
    assert card["after_answers"]["text"]["zh"] != "Proceed"
