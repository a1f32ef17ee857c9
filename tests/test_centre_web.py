"""The live dashboard, in real headless Chromium against a running centre (real mosquitto, real
SQLite): a new alert appears with its reasons and trail, filters work, the fleet table is live."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request

import pytest

from centre.ingest import IngestWorker
from centre.store import open_store
from centre.web import Dashboard
from centre_support import SimGateway, postgres, store_url  # noqa: F401  (fixtures)

CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def centre(broker, tmp_path):
    db = tmp_path / "centre.db"
    worker = IngestWorker(open_store(db), host=broker.host, port=broker.port).start()
    dashboard = Dashboard(open_store(db), host="127.0.0.1", port=0).start()
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
    browser.get(dashboard.url)
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
    gw.publish("outcome", gw.follow_up("outcome", alert_id, outcome="customer_dissuaded", note="daughter called")[1])
    _wait(browser, lambda d: len(row.find_elements(By.CSS_SELECTOR, ".trail li")) == 2)
    trail = [li.text for li in row.find_elements(By.CSS_SELECTOR, ".trail li")]
    assert trail[0].startswith("acknowledged by supervisor (button)")
    assert trail[1].startswith("outcome: customer dissuaded by s-0042 — daughter called")

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
    from centre import schema

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
