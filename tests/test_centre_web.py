"""The live dashboard, in real headless Chromium against a running centre (real mosquitto, real
SQLite): a new alert appears with its reasons and trail, filters work, the fleet table is live.
With analysts configured, nothing but the login form answers without a session."""

from __future__ import annotations

import http.client
import json
import logging
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from counterguard.centre.config import CentreConfigError, load_config
from counterguard.centre.ingest import IngestWorker
from counterguard.centre.store import open_store
from counterguard.centre.web import Dashboard, NoLogin
from centre_support import SimGateway, postgres, store_url  # noqa: F401  (fixtures)
from counterguard.cli import main
from counterguard.core import messages
from counterguard.core.weblogin import FAILURES_ALLOWED, hash_password, verify_password

CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def centre(broker, tmp_path):
    db = tmp_path / "centre.db"
    worker = IngestWorker(open_store(db), host=broker.host, port=broker.port).start()
    dashboard = Dashboard(open_store(db), host="127.0.0.1", port=0, intake=[worker]).start()
    yield worker, dashboard
    dashboard.stop()
    worker.stop()


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium")
    if chromium is None or not shutil.os.path.exists(CHROMEDRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed (setup.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=25):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def test_the_dashboard_shows_a_new_alert_with_its_reasons_and_trail(broker, centre, browser, tmp_path):
    from selenium.webdriver.common.by import By

    worker, dashboard = centre
    browser.get(dashboard.url + "?lang=en")
    _wait(browser, lambda d: d.find_element(By.ID, "alerts-empty").is_displayed())
    gw = SimGateway(broker.host, broker.port, "gw-0231", region="610100", branch="b0231")
    _, alert_id, payload = gw.alert_payload(level="red", amount=50000)
    gw.publish("alert", payload)

    row = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr.alert[data-alert-id="{alert_id}"]'))[0]
    assert row.get_attribute("data-level") == "red"
    assert [r.text for r in row.find_elements(By.CSS_SELECTOR, ".reason")] == ["large_cash", "elderly_customer"]
    assert "610100 / b0231" in row.text and "50,000" in row.text

    # The supervisor's acknowledgement and outcome join the alert's row as they arrive.
    gw.publish("ack", gw.follow_up("ack", alert_id)[1])
    outcome = json.loads(gw.follow_up("outcome", alert_id, outcome="customer_dissuaded", note="daughter called")[1])
    outcome["answers"] = [{"key": "general.2", "question": "Has anyone told you to keep this visit secret?",
                           "answer": "yes"}, {"key": "large_cash.1", "question": "What is the cash for?",
                                              "answer": "declined"}]
    gw.publish("outcome", json.dumps(outcome))
    _wait(browser, lambda d: len(row.find_elements(By.CSS_SELECTOR, ".trail > li")) == 2)
    trail = [li.text for li in row.find_elements(By.CSS_SELECTOR, ".trail > li")]
    assert trail[0].startswith("acknowledged by supervisor (button)")
    assert trail[1].startswith("outcome: customer dissuaded by s-0042 — daughter called")
    # The customer's answers to the caring questions are listed under the outcome.
    assert [(li.get_attribute("data-key"), li.text) for li in row.find_elements(By.CSS_SELECTOR, ".answers li")] == [
        ("general.2", "Has anyone told you to keep this visit secret? — yes"),
        ("large_cash.1", "What is the cash for? — would not say")]

    # The fleet table shows the gateway online.
    state = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-gateway-id="gw-0231"] td.state'))[0]
    _wait(browser, lambda d: state.text == "online")

    # The outcome counts towards the branch's precision (refreshed on load and every 10 s).
    browser.refresh()
    _wait(browser, lambda d: [td.text for td in d.find_elements(By.CSS_SELECTOR, "#precision td")][:3]
          == ["610100/b0231", "red", "100.0%"])

    shot = tmp_path / "centre-dashboard.png"
    browser.save_screenshot(str(shot))
    print(f"dashboard screenshot: {shot}")
    assert shot.stat().st_size > 10_000

    # Filtering on amber hides the red alert; a new amber one appears live.
    browser.find_element(By.ID, "filter-level").send_keys("amber only")
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    _wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f'tr.alert[data-alert-id="{alert_id}"]'))
    _, amber_id, payload = gw.alert_payload(level="amber", amount=9000)
    gw.publish("alert", payload)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr.alert[data-alert-id="{amber_id}"]'))
    assert not browser.find_elements(By.CSS_SELECTOR, 'tr.alert[data-level="red"]')
    gw.close()


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_dashboard_api_names_a_bad_parameter(centre):
    _, dashboard = centre
    status, body = _get(dashboard.url + "api/records?level=purple")
    assert status == 400 and "level" in body["error"]
    status, body = _get(dashboard.url + "api/records?after=soon")
    assert status == 400 and "after" in body["error"]
    status, body = _get(dashboard.url + "api/accuracy?by=year")
    assert status == 400 and "'year'" in body["error"]
    status, _ = _get(dashboard.url + "assets/../store.py")
    assert status == 404


def test_the_stream_endpoints_give_each_record_once_in_order(store_url):
    from counterguard.centre import schema

    store = open_store(store_url)
    gw = SimGateway(None, None, "gw-0001")
    with Dashboard(open_store(store_url), port=0) as dashboard:
        _, red_id, red = gw.alert_payload(level="red")
        _, amber_id, amber = gw.alert_payload(level="amber")
        store.ingest([schema.check(f"{gw.topics.root}/alert", p.encode()) for p in (red, amber)])
        _, first = _get(dashboard.url + "api/alerts?level=red")
        assert [r["alert_id"] for r in first["records"]] == [red_id]
        ack = gw.follow_up("ack", red_id)[1]
        store.ingest([schema.check(f"{gw.topics.root}/ack", ack.encode())])
        _, more = _get(dashboard.url + f"api/records?level=red&after={first['last_id']}")
        # After the red alert: the amber one is filtered out, the red one's acknowledgement comes.
        assert [(r["type"], r["alert_id"]) for r in more["records"]] == [("acknowledgement", red_id)]
        _, nothing = _get(dashboard.url + f"api/records?after={more['last_id']}")
        assert nothing["records"] == [] and nothing["last_id"] == more["last_id"]
    store.close()


# -- the analysts' login ------------------------------------------------------------------------------
ANALYST, PASSWORD = "Li Wei", "xian-centre-0427"
USERS = {ANALYST: hash_password(PASSWORD), "zhang.min": hash_password("another-analyst-pass")}
API_PATHS = ["/api/alerts", "/api/records?after=0", "/api/fleet", "/api/quarantine", "/api/accuracy?by=branch",
             "/api/no-such-thing"]


class Analyst:
    """An HTTP client that keeps its cookies as a browser does (http.client: no redirects followed)."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(method, path, body=body, headers=headers)
        res = conn.getresponse()
        data = res.read()
        conn.close()
        for raw in res.headers.get_all("Set-Cookie") or []:
            name, _, rest = raw.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in raw:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return res, data

    def post_form(self, path, fields, headers=None):
        return self.request("POST", path, urllib.parse.urlencode(fields),
                            {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})

    def login(self, name=ANALYST, password=PASSWORD):
        res, page = self.request("GET", "/login")
        assert res.status == 200
        return self.post_form("/login", {"csrf": _hidden(page, "csrf"), "analyst": name, "password": password})


def _hidden(page: bytes, name: str) -> str:
    m = re.search(rb'name="' + name.encode() + rb'" value="([^"]*)"', page)
    assert m, page[:500]
    return m.group(1).decode()


@pytest.fixture
def guarded(tmp_path):
    """A dashboard with two analysts over a real SQLite store; records go in as the intake writes them."""
    db = tmp_path / "centre.db"
    store = open_store(db)
    with Dashboard(open_store(db), host="127.0.0.1", port=0, users=USERS) as dashboard:
        yield dashboard, store
    store.close()


def _ingest_alert(store, level="red"):
    from counterguard.centre import schema

    gw = SimGateway(None, None, "gw-0107", region="610100", branch="b0107")
    _, alert_id, payload = gw.alert_payload(level=level)
    store.ingest([schema.check(f"{gw.topics.root}/alert", payload.encode())])
    return alert_id


def test_without_a_session_every_api_path_is_refused_and_the_page_sends_to_the_login_form(guarded):
    dashboard, store = guarded
    _ingest_alert(store)
    anyone = Analyst(dashboard.port)
    for path in API_PATHS + ["/assets/app.js"]:
        res, data = anyone.request("GET", path)
        assert res.status == 401, path
        assert "log in" in json.loads(data)["error"] and b"gw-0107" not in data
    res, _ = anyone.request("GET", "/")
    assert res.status == 303 and res.getheader("Location") == "/login"
    res, page = anyone.request("GET", "/login")
    assert res.status == 200 and b'name="password"' in page and b"gw-0107" not in page
    assert anyone.request("GET", "/assets/style.css")[0].status == 200   # the form's own style sheet
    # A made-up session id is no session.
    anyone.cookies["cg_centre_session"] = "guessed"
    assert anyone.request("GET", "/api/alerts")[0].status == 401


def test_the_right_password_opens_the_stream_with_the_analysts_name_and_logout_ends_it(guarded, caplog):
    dashboard, store = guarded
    analyst = Analyst(dashboard.port)
    with caplog.at_level(logging.INFO, logger="counterguard.centre.web"):
        res, _ = analyst.login()
    assert res.status == 303 and res.getheader("Location") == "/"
    cookie = next(c for c in res.headers.get_all("Set-Cookie") if c.startswith("cg_centre_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert f"{ANALYST} logged in from 127.0.0.1" in caplog.text and PASSWORD not in caplog.text

    res, page = analyst.request("GET", "/")
    assert res.status == 200 and f'<span id="analyst">{ANALYST}</span>'.encode() in page
    _, first = analyst.request("GET", "/api/records?after=0")
    alert_id = _ingest_alert(store)
    res, more = analyst.request("GET", f"/api/records?after={json.loads(first)['last_id']}")
    assert res.status == 200 and [r["alert_id"] for r in json.loads(more)["records"]] == [alert_id]

    # Logging out ends the session on the server, not only in this browser.
    session = dict(analyst.cookies)
    res, _ = analyst.post_form("/logout", {"csrf": _hidden(page, "csrf")})
    assert res.status == 303 and res.getheader("Location") == "/login"
    assert "cg_centre_session" not in analyst.cookies
    analyst.cookies = session
    assert analyst.request("GET", "/api/records?after=0")[0].status == 401


def test_wrong_passwords_are_refused_and_lock_the_address_out(guarded, caplog):
    dashboard, _ = guarded
    analyst = Analyst(dashboard.port)
    with caplog.at_level(logging.WARNING, logger="counterguard.centre.web"):
        res, page = analyst.login(password="xian-centre-0428")
        assert res.status == 401 and b"Name or password is wrong" in page
        # Another analyst's password is not this one's; an unknown name is refused the same way.
        assert analyst.login(password="another-analyst-pass")[0].status == 401
        assert analyst.login(name="nobody")[0].status == 401
        for _ in range(FAILURES_ALLOWED - 3):
            assert analyst.login(password="guess")[0].status == 401
        assert "cg_centre_session" not in analyst.cookies
        # Locked out: now even the right password is refused, and no session is given.
        res, page = analyst.login()
    assert res.status == 429 and b"Too many wrong passwords" in page
    assert "cg_centre_session" not in analyst.cookies
    assert analyst.request("GET", "/api/alerts")[0].status == 401
    assert "failed login for 'nobody' from 127.0.0.1" in caplog.text and "guess" not in caplog.text


def test_forged_login_and_logout_posts_are_refused(guarded):
    dashboard, _ = guarded
    forger = Analyst(dashboard.port)
    # A page elsewhere posting the login form has neither the form's token nor its cookie.
    res, _ = forger.post_form("/login", {"analyst": ANALYST, "password": PASSWORD})
    assert res.status == 403 and "cg_centre_session" not in forger.cookies
    res, page = forger.request("GET", "/login")
    fields = {"csrf": _hidden(page, "csrf"), "analyst": ANALYST, "password": PASSWORD}
    res, _ = forger.post_form("/login", {**fields, "csrf": "made-up"})
    assert res.status == 403 and "cg_centre_session" not in forger.cookies
    res, _ = forger.post_form("/login", fields, {"Origin": "http://evil.example"})
    assert res.status == 403 and "cg_centre_session" not in forger.cookies

    analyst = Analyst(dashboard.port)
    assert analyst.login()[0].status == 303
    # Logging out needs the session's token, which only the dashboard's own page carries.
    res, data = analyst.post_form("/logout", {})
    assert res.status == 403 and "CSRF" in json.loads(data)["error"]
    res, _ = analyst.post_form("/logout", {"csrf": "made-up"})
    assert res.status == 403
    assert analyst.request("GET", "/api/fleet")[0].status == 200   # still logged in


def test_without_analysts_the_dashboard_serves_only_loopback(tmp_path, capsys, caplog):
    cfg = tmp_path / "centre.toml"
    cfg.write_text('[dashboard]\nhost = "0.0.0.0"\n')
    assert main(["centre", "run", "--config", str(cfg), "--store", str(tmp_path / "c.db"), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "[dashboard] users" in err and str(cfg) in err and "counterguard centre dashboard-user NAME" in err
    store = open_store(tmp_path / "c.db")
    with pytest.raises(NoLogin):
        Dashboard(store, host="0.0.0.0", port=0)
    store.close()
    # On loopback it starts, says it has no login, and answers without one.
    with caplog.at_level(logging.WARNING, logger="counterguard.centre.web"):
        with Dashboard(open_store(tmp_path / "c.db"), host="127.0.0.1", port=0) as dashboard:
            assert _get(dashboard.url + "api/fleet")[0] == 200
    assert "has no login" in caplog.text


def test_a_bad_hash_in_the_config_names_the_key_and_the_file(tmp_path, capsys):
    cfg = tmp_path / "centre.toml"
    cfg.write_text('[dashboard.users]\nli-wei = "scrypt$16384$8$1$abc"\n')
    with pytest.raises(CentreConfigError, match=re.escape(f"{cfg}: dashboard.users.li-wei is not a password hash")):
        load_config(cfg)
    cfg.write_text('[dashboard.users]\n"Li Wei" = 42\n')
    with pytest.raises(CentreConfigError, match=re.escape(f'{cfg}: dashboard.users."Li Wei" must be')):
        load_config(cfg)
    assert main(["centre", "run", "--config", str(cfg), "--store", str(tmp_path / "c.db")]) == 2
    assert 'dashboard.users."Li Wei"' in capsys.readouterr().err


def test_dashboard_user_prints_a_line_the_config_accepts_and_that_verifies(tmp_path):
    done = subprocess.run([sys.executable, "-m", "counterguard", "centre", "dashboard-user", "王芳 (night)"],
                          input="a-long-night-shift\n", capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert "a-long-night-shift" not in line
    cfg = tmp_path / "centre.toml"
    cfg.write_text(f'[dashboard]\nhost = "10.0.0.5"\n\n[dashboard.users]\n{line}\n', encoding="utf-8")
    users = load_config(cfg).dashboard.users
    assert list(users) == ["王芳 (night)"]
    assert verify_password("a-long-night-shift", users["王芳 (night)"])
    assert not verify_password("a-long-night-shif", users["王芳 (night)"])


def test_an_analyst_logs_in_in_chromium_and_sees_an_alert_arrive(broker, tmp_path, browser):
    from selenium.webdriver.common.by import By

    db = tmp_path / "centre.db"
    worker = IngestWorker(open_store(db), host=broker.host, port=broker.port).start()
    try:
        with Dashboard(open_store(db), host="127.0.0.1", port=0, users=USERS) as dashboard:
            browser.get(dashboard.url)
            _wait(browser, lambda d: d.find_elements(By.ID, "login-form"))
            browser.find_element(By.ID, "analyst").send_keys(ANALYST)
            browser.find_element(By.ID, "password").send_keys(PASSWORD)
            browser.find_element(By.ID, "login").click()
            _wait(browser, lambda d: d.find_elements(By.ID, "alerts-empty") and d.find_element(By.ID, "alerts-empty").is_displayed())
            assert browser.find_element(By.ID, "analyst").text == ANALYST

            gw = SimGateway(broker.host, broker.port, "gw-0231", region="610100", branch="b0231")
            _, alert_id, payload = gw.alert_payload(level="red", amount=50000)
            gw.publish("alert", payload)
            row = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr.alert[data-alert-id="{alert_id}"]'))[0]
            assert row.get_attribute("data-level") == "red" and "50,000" in row.text
            gw.close()

            browser.find_element(By.ID, "logout").click()
            _wait(browser, lambda d: d.find_elements(By.ID, "login-form"))
            browser.get(dashboard.url)   # the session is gone: back to the login form
            _wait(browser, lambda d: d.find_elements(By.ID, "login-form"))
    finally:
        worker.stop()


# -- the analyst's dashboard: charts, drill-down, selection in the URL, exports, language, live link --------
GW_A = dict(gateway_id="gw-0231", region="610100", branch="b0231")
GW_B = dict(gateway_id="gw-0502", region="610200", branch="b0502")
PAYEE = "ab" * 32     # a payee account's keyed hash, as a v2 alert carries it
ACCOUNT = "cd" * 32   # an account's keyed hash, as the gateway's uploaded events carry it


def _events_batch(gw, event_ids):
    """The gateway's upload of these scored events, all from ACCOUNT (docs/mqtt.md, events)."""
    events = [{"event_id": e, "counter": 3, "kind": "cash_withdrawal", "amount": 50000.0,
               "ts": "2026-12-04T09:30:00+08:00", "account_hash": ACCOUNT, "level": "red", "score": 0.93,
               "reasons": ["large_cash"], "model_version": "fraud-mlp-1", "watchlist_version": 1, "features": None,
               "shadow_score": None, "shadow_version": None, "decided_at": "2026-12-04T01:30:00.000Z"}
              for e in event_ids]
    return json.dumps({"type": "events", "gateway_id": gw.gateway_id, "seq": 900, "region": gw.region,
                       "branch": gw.branch, "historical": False, "features_version": 2, "first": 1,
                       "last": len(events), "count": len(events), "events": events})


def _populate(store):
    """Two branches' morning: alerts at both levels, outcomes at the three handling levels, both online.
    Returns {(gateway_id, level): [alert ids]}."""
    from counterguard.centre import schema

    made: dict = {}
    for spec, reds, ambers, outcomes in (
            (GW_A, 3, 1, [("customer_dissuaded", 2), ("false_alarm", 1), ("police_called", 3)]),
            (GW_B, 2, 2, [("confirmed_fraud", 2)])):
        gw = SimGateway(None, None, spec["gateway_id"], region=spec["region"], branch=spec["branch"])
        records = [schema.check(f"{gw.topics.root}/status", gw.status("online").encode())]
        for level, n in (("red", reds), ("amber", ambers)):
            for _ in range(n):
                _, alert_id, payload = gw.alert_payload(level=level)
                if spec is GW_B and level == "amber" and not made.get((spec["gateway_id"], "amber")):
                    payload = json.dumps({**json.loads(payload), "payee_account_hash": PAYEE})
                records.append(schema.check(f"{gw.topics.root}/alert", payload.encode()))
                made.setdefault((spec["gateway_id"], level), []).append(alert_id)
        if spec is GW_A:   # the second red alert's event came from ACCOUNT
            event_id = records[2].body["event_id"]
            records.append(schema.check(f"{gw.topics.root}/events", messages.pack_events(_events_batch(gw, [event_id]))))
        for alert_id, (outcome, handled) in zip(made[(spec["gateway_id"], "red")], outcomes):
            body = gw.follow_up("outcome", alert_id, outcome=outcome, handled_at=handled)[1]
            records.append(schema.check(f"{gw.topics.root}/outcome", body.encode()))
        store.ingest(records)
    return made


@pytest.fixture
def morning(tmp_path):
    """A dashboard over a real SQLite store holding _populate's alerts (no broker: nothing live here)."""
    db = tmp_path / "centre.db"
    store = open_store(db)
    made = _populate(store)
    with Dashboard(open_store(db), host="127.0.0.1", port=0) as dashboard:
        yield dashboard, store, made
    store.close()


def _shown(browser) -> set[str]:
    # Read in one go in the page: the table is redrawn while the selection changes.
    return set(browser.execute_script(
        "return [...document.querySelectorAll('#alerts tr.alert')].map(tr => tr.dataset.alertId);"))


def _series(browser, chart_id):
    # What ECharts itself holds, not what our code meant to give it.
    return browser.execute_script(
        "const c = echarts.getInstanceByDom(document.getElementById(arguments[0]));"
        "return c ? c.getOption().series.map(s => ({name: s.name, data: s.data})) : null;", chart_id)


def _click_chart(browser, chart_id, series_index, data_index, value):
    """A real mouse click on a drawn bar or point (inside it, at half its value)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    box = browser.find_element(By.ID, chart_id)
    _wait(browser, lambda d: box.get_attribute("data-drawn") == "1")   # not while the bars still grow
    x, y = browser.execute_script(
        "const c = echarts.getInstanceByDom(document.getElementById(arguments[0]));"
        "return c.convertToPixel({seriesIndex: arguments[1]}, [arguments[2], arguments[3]]);",
        chart_id, series_index, data_index, value)
    size = box.size
    ActionChains(browser).move_to_element_with_offset(box, int(x - size["width"] / 2), int(y - size["height"] / 2)) \
        .click().perform()


def test_the_charts_show_the_stores_alerts_and_precision_with_its_interval(morning, browser):
    from selenium.webdriver.common.by import By
    from counterguard.centre.learning import wilson

    dashboard, store, made = morning
    browser.get(dashboard.url + "?lang=en")
    for chart_id in ("chart-hour", "chart-day", "chart-precision", "chart-outcomes"):
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"#{chart_id} canvas"))
    _wait(browser, lambda d: _series(d, "chart-outcomes"))

    # Per hour and per day: one series per region and level, adding up to the store's alerts.
    index = store.alert_index()
    for chart_id in ("chart-hour", "chart-day"):
        got = {s["name"]: sum(s["data"]) for s in _series(browser, chart_id)}
        expected = {}
        for a in index:
            name = f"{a['region']} · {a['level']}"
            expected[name] = expected.get(name, 0) + 1
        assert got == expected == {"610100 · red": 3, "610100 · amber": 1, "610200 · red": 2, "610200 · amber": 2}

    # Red precision this week: 3 justified (dissuaded, police, fraud) of 4 judged, with its Wilson band.
    low, band, precision = _series(browser, "chart-precision")
    assert precision["data"] == [75.0]
    lo, hi = wilson(3, 4)
    assert low["data"] == [round(1000 * lo) / 10] and band["data"] == [round(1000 * (hi - lo)) / 10]

    # Outcomes by handling level: x axis teller, supervisor, police, awaiting outcome.
    by_name = {s["name"]: s["data"] for s in _series(browser, "chart-outcomes")}
    assert by_name["customer dissuaded"] == [0, 1, 0, 0] and by_name["confirmed fraud"] == [0, 1, 0, 0]
    assert by_name["police called"] == [0, 0, 1, 0] and by_name["false alarm"] == [1, 0, 0, 0]
    assert by_name["no outcome yet"] == [0, 0, 0, 4]   # the ambers: no outcome recorded


def test_clicking_a_bar_narrows_the_table_to_the_alerts_behind_it(morning, browser):
    from selenium.webdriver.common.by import By

    dashboard, store, made = morning
    browser.get(dashboard.url + "?lang=en")
    everything = {a for ids in made.values() for a in ids}
    _wait(browser, lambda d: _shown(d) == everything)
    _wait(browser, lambda d: _series(d, "chart-outcomes"))

    # "Supervisor" x "customer dissuaded" (the first series, the bottom of the stack).
    _click_chart(browser, "chart-outcomes", 0, 1, 0.5)
    dissuaded = made[("gw-0231", "red")][0]
    _wait(browser, lambda d: _shown(d) == {dissuaded})
    assert "handled=supervisor" in browser.current_url and "outcome=customer_dissuaded" in browser.current_url
    assert "handled at 2 supervisor" in browser.find_element(By.ID, "drill").text

    # Back to everything, then the hour chart: 610100's red alerts in the newest hour.
    browser.back()
    _wait(browser, lambda d: _shown(d) == everything)
    _wait(browser, lambda d: sum(sum(s["data"]) for s in _series(d, "chart-hour")) == len(everything))
    hour = _series(browser, "chart-hour")
    newest = len(hour[0]["data"]) - 1
    assert hour[0]["name"] == "610100 · red" and hour[0]["data"][newest] >= 1
    _click_chart(browser, "chart-hour", 0, newest, hour[0]["data"][newest] / 2)
    _wait(browser, lambda d: "level=red" in d.current_url and "region=610100" in d.current_url)
    q = urllib.parse.parse_qs(urllib.parse.urlparse(browser.current_url).query)
    since, until = q["since"][0], q["until"][0]
    # The table holds exactly the store's alerts of that region, level and hour.
    behind = {a["alert_id"] for a in store.alert_index()
              if a["region"] == "610100" and a["level"] == "red" and since <= a["at"].replace(".000Z", "Z") < until}
    assert behind and behind <= set(made[("gw-0231", "red")])
    _wait(browser, lambda d: _shown(d) == behind)
    assert browser.find_element(By.ID, "filter-region").get_attribute("value") == "610100"


def test_the_selection_lives_in_the_url_and_back_and_forward_restore_it(morning, browser):
    from selenium.webdriver.common.by import By

    dashboard, store, made = morning
    browser.get(dashboard.url + "?lang=en&region=610200&level=amber")
    _wait(browser, lambda d: _shown(d) == set(made[("gw-0502", "amber")]))
    assert browser.find_element(By.ID, "filter-region").get_attribute("value") == "610200"
    assert browser.find_element(By.ID, "filter-level").get_attribute("value") == "amber"

    # Searching by alert id: the form's choice goes into the URL.
    wanted = made[("gw-0231", "red")][1]
    browser.find_element(By.ID, "clear").click()
    _wait(browser, lambda d: len(_shown(d)) == 8)
    browser.find_element(By.ID, "filter-q").send_keys(wanted)
    browser.find_element(By.ID, "apply").click()
    _wait(browser, lambda d: _shown(d) == {wanted})
    assert f"q={wanted}" in browser.current_url
    # By a payee account's keyed hash, from a shared link.
    browser.get(dashboard.url + f"?lang=en&q={PAYEE}")
    _wait(browser, lambda d: _shown(d) == {made[("gw-0502", "amber")][0]})
    # By an account's keyed hash: the alert whose event the gateway uploaded from that account.
    browser.get(dashboard.url + f"?lang=en&q={ACCOUNT}")
    _wait(browser, lambda d: _shown(d) == {made[("gw-0231", "red")][1]})
    browser.back()

    browser.back()
    _wait(browser, lambda d: _shown(d) == {wanted})
    assert browser.find_element(By.ID, "filter-q").get_attribute("value") == wanted
    browser.back()
    _wait(browser, lambda d: len(_shown(d)) == 8)
    browser.back()
    _wait(browser, lambda d: _shown(d) == set(made[("gw-0502", "amber")]))
    assert browser.find_element(By.ID, "filter-level").get_attribute("value") == "amber"
    browser.forward()
    _wait(browser, lambda d: len(_shown(d)) == 8)


def test_no_alerts_match_names_the_filter_and_the_unknown_branch(morning, browser, tmp_path):
    from selenium.webdriver.common.by import By

    dashboard, _, _ = morning
    browser.get(dashboard.url + "?lang=en&branch=b023l&level=red")
    empty = _wait(browser, lambda d: [e for e in d.find_elements(By.ID, "alerts-empty") if "b0231" in e.text])[0]
    assert empty.text.startswith("No alerts match branch “b023l”, level red.")
    assert "No gateway reports branch “b023l” (known: b0231, b0502)." in empty.text
    assert not _shown(browser)
    # An empty store with no selection is simply empty.
    with Dashboard(open_store(tmp_path / "empty.db"), host="127.0.0.1", port=0) as fresh:
        browser.get(fresh.url + "?lang=en")
        _wait(browser, lambda d: d.find_element(By.ID, "alerts-empty").text == "No alerts yet.")
    # A bad value in a shared link is named, not shown as "no alerts".
    browser.get(dashboard.url + "?lang=en&since=yesterday")
    _wait(browser, lambda d: "since must be a date" in d.find_element(By.ID, "alerts-empty").text)


def test_csv_and_printable_exports_hold_the_selection(morning, browser):
    import base64
    import csv
    import io
    from selenium.webdriver.common.by import By

    dashboard, store, made = morning
    browser.get(dashboard.url + "?lang=en&region=610100&level=red")
    expected = set(made[("gw-0231", "red")])
    _wait(browser, lambda d: _shown(d) == expected)
    href = browser.find_element(By.ID, "export-csv").get_attribute("href")
    with urllib.request.urlopen(href, timeout=10) as res:
        assert res.headers["Content-Type"].startswith("text/csv")
        assert 'filename="counterguard-alerts-610100-red.csv"' in res.headers["Content-Disposition"]
        text = res.read().decode("utf-8-sig")
    lines = list(csv.DictReader(io.StringIO(text)))
    assert {r["alert_id"] for r in lines} == expected == _shown(browser)
    assert {(r["region"], r["level"]) for r in lines} == {("610100", "red")}
    by_id = {r["alert_id"]: r for r in lines}
    first = by_id[made[("gw-0231", "red")][0]]
    assert (first["outcome"], first["handled_at"], first["outcome_by"]) == ("customer_dissuaded", "supervisor", "s-0042")

    # The printable report of the same selection, printed to PDF by the browser.
    browser.get(browser.find_element(By.ID, "export-pdf").get_attribute("href"))
    assert browser.find_element(By.ID, "report-count").text == "3"
    assert browser.find_element(By.ID, "report-filters").text == "region = 610100; level = red"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#report-alerts tbody tr.red")) == 3
    pdf = base64.b64decode(browser.print_page())
    assert pdf.startswith(b"%PDF") and len(pdf) > 2000


def test_the_language_button_switches_page_charts_and_table(morning, browser):
    from selenium.webdriver.common.by import By

    dashboard, _, made = morning
    browser.get(dashboard.url)      # a new analyst: Chinese first, as on the branch console
    _wait(browser, lambda d: len(_shown(d)) == 8 and _series(d, "chart-hour"))
    assert browser.find_element(By.CSS_SELECTOR, "#stream h2").text == "预警"
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    assert {s["name"] for s in _series(browser, "chart-hour")} >= {"610100 · 红色"}
    row = browser.find_element(By.CSS_SELECTOR, f'tr.alert[data-alert-id="{made[("gw-0231", "red")][0]}"]')
    assert row.find_element(By.CSS_SELECTOR, ".level").get_attribute("textContent") == "红色"

    browser.find_element(By.ID, "lang").click()
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#stream h2").text == "Alerts")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    _wait(browser, lambda d: {s["name"] for s in (_series(d, "chart-hour") or [])} >= {"610100 · red"})
    red = f'tr.alert[data-alert-id="{made[("gw-0231", "red")][0]}"] .level'
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, red).get_attribute("textContent") == "red")
    assert browser.find_element(By.ID, "lang").text == "中文"
    # The choice is kept for the next visit.
    browser.refresh()
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#stream h2").text == "Alerts")


def test_the_live_indicator_follows_the_centres_own_broker_link(broker, centre, browser):
    from selenium.webdriver.common.by import By

    worker, dashboard = centre
    browser.get(dashboard.url + "?lang=en")
    state = lambda d: d.find_element(By.ID, "link-state").get_attribute("data-state")  # noqa: E731
    _wait(browser, lambda d: state(d) == "connected")
    assert browser.find_element(By.ID, "link-state").text == "live"

    broker.stop()
    _wait(browser, lambda d: state(d) == "disconnected")
    assert "the centre has lost the broker" in browser.find_element(By.ID, "link-state").text
    assert not worker.connected

    broker.start()
    _wait(browser, lambda d: state(d) == "connected", timeout=40)   # paho's reconnect backs off up to 10 s
    # And it is live for real: an alert sent now shows.
    gw = SimGateway(broker.host, broker.port, "gw-0231", region="610100", branch="b0231")
    _, alert_id, payload = gw.alert_payload(level="red")
    gw.publish("alert", payload)
    _wait(browser, lambda d: alert_id in _shown(d))
    gw.close()


def test_a_rollout_row_says_why_each_gateway_has_not_applied_the_push(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from counterguard.centre import schema

    db = tmp_path / "centre.db"
    store = open_store(db)
    gateways = {"gw-1": {}, "gw-2": {"downlink_waiting": ["thresholds"]}, "gw-3": {"downlink_rejected": 2},
                "gw-4": {}, "gw-5": {"thresholds_version": "7"}}
    for gid, fields in gateways.items():
        gw = SimGateway(None, None, gid, region="610100", branch="b" + gid[-1])
        status = json.loads(gw.status("offline" if gid == "gw-1" else "online", **fields))
        store.ingest([schema.check(f"{gw.topics.root}/status", json.dumps(status).encode())])
    store.record_manifest(kind="thresholds", version=7, target="all", topic="counterguard/v1/all/manifest/thresholds",
                          issued_at="2026-12-04T01:00:00Z", summary={}, envelope="{}")
    with Dashboard(open_store(db), host="127.0.0.1", port=0) as dashboard:
        _, fleet = _get(dashboard.url + "api/fleet")
        (row,) = fleet["rollout"]
        assert row["applied"] == ["gw-5"]
        assert {w["gateway_id"]: w["why"] for w in row["why"]} == {
            "gw-1": "offline", "gw-2": "waiting_for_red", "gw-3": "refused", "gw-4": "not_reported"}
        browser.get(dashboard.url + "?lang=en")
        items = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#manifests li.why'))
        text = {li.get_attribute("data-gateway-id"): li.text for li in items}
        assert text == {"gw-1": "gw-1: offline", "gw-2": "gw-2: waiting for its open red alerts to close",
                        "gw-3": "gw-3: refused 2 manifest(s); the reason is in its log",
                        "gw-4": "gw-4: online, not reported yet"}
    store.close()
