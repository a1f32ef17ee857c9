"""The branch console as a supervisor uses it on a PC and on a phone, and with the keyboard alone,
in real headless Chromium: nothing is chosen for them, every answer is named by its question, each
action is confirmed where a screen reader hears it and on screen where they are, focus follows an
alert someone else took, and the Chinese page stays Chinese, refusals and a lost gateway included."""

from __future__ import annotations

import re
import time

import pytest
import test_console
from counterguard.core.messages import OUTCOMES
from counterguard.hardware.pinmap import default_pinmap_path, load_pinmap
from counterguard.gateway.questions import OUTCOME_TEXT, load_questions
from conftest import wait_until
from harness import event, intercept
from test_console import Client, log_in, raise_red

gateway, browser = test_console.gateway, test_console.browser  # the console's own fixtures

DESKTOP, PHONE = 1280, 360


def no_sideways_scroll(driver) -> bool:
    return driver.execute_script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def at_width(driver, width: int) -> None:
    driver.set_window_size(width, 800)
    # The page really is that narrow (a window can refuse a size), else the checks below prove nothing.
    assert driver.execute_script("return window.innerWidth") == width


def in_view(driver, element) -> bool:
    """On screen without scrolling, and not covered by anything (the pinned notices included)."""
    return driver.execute_script("""
        const e = arguments[0], r = e.getBoundingClientRect();
        if (r.width === 0 || r.top < 0 || r.bottom > window.innerHeight) return false;
        const top = document.elementFromPoint(r.left + r.width / 2, r.top + Math.min(r.height / 2, 8));
        const label = e.closest('label');  // a radio button's words are part of it
        return top !== null && (e === top || e.contains(top) || (label !== null && label.contains(top)));""", element)


def english_words(driver, gw) -> set:
    """English words in the page's text, but for the product's name, the button that switches to
    English and the branch's own name (data, as configured)."""
    from selenium.webdriver.common.by import By

    words = set(re.findall(r"[A-Za-z]{2,}", driver.find_element(By.TAG_NAME, "body").text))
    return words - {"counterguard", "English", *re.findall(r"[A-Za-z]{2,}", gw.config.gateway.branch)}


def press_panel_button(gw) -> None:
    """The supervisor's acknowledge button on the lamp panel (a mock pin: the gateway cannot tell)."""
    button = gw._pin_factory.pin(load_pinmap(gw.config.lamps.pinmap or default_pinmap_path()).supervisor.acknowledge)
    button.drive_low()
    time.sleep(0.05)
    button.drive_high()


def tab_to(driver, css: str, most: int = 80) -> None:
    """Press Tab until the focused element matches ``css``."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    for _ in range(most):
        if driver.execute_script("return document.activeElement.matches(arguments[0])", css):
            return
        ActionChains(driver).send_keys(Keys.TAB).perform()
    raise AssertionError(f"Tab never reached {css}")


def focused_in(driver, box: str) -> list | None:
    """The alert whose card in ``box`` (open, awaiting) holds the focus, and which control: "heading", "ack", ..."""
    return driver.execute_script("""
        const e = document.activeElement, card = e && e.closest(`#${arguments[0]} .card`);
        return card ? [card.dataset.alertId, e.dataset.focus] : null;""", box)


def shown_questions(gw, alert_id, lang="zh"):
    """The questions the console shows for this alert, in the page's language."""
    return [getattr(q, lang) or q.en for q in load_questions().shown(gw.store.alert_view(alert_id).reasons, 6)]


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_a_supervisor_acknowledges_and_records_an_outcome_with_nothing_chosen_for_them(gateway, browser, width):
    from selenium.webdriver.common.by import By

    gw, terminal = gateway
    first = raise_red(gw, terminal, "a11y-1")
    assert terminal.send(intercept(counter=4, event_id="a11y-2")).body["level"] == "red"
    second = next(a.alert_id for a in gw.store.open_alerts() if a.alert_id != first)
    # A customer the lamp let through: the Report controls are on the page, and must fit the phone too.
    assert terminal.send(event(counter=1, event_id="a11y-green", amount=4200)).body["level"] == "green"
    at_width(browser, width)
    wait = log_in(browser, gw, "S1024")
    card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#open .card[data-alert-id="{first}"]'))[0]
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#events tr[data-event-id="a11y-green"] button.raise'))
    assert browser.title == "(2) 柜面预警 — counterguard"
    # The open card shows the questions the supervisor will record answers to, no more.
    questions = shown_questions(gw, first)
    assert [q.text for q in card.find_elements(By.CSS_SELECTOR, "li.question")] == questions
    # A screen reader listing the buttons hears which alert each Acknowledge is for.
    ack = card.find_element(By.CSS_SELECTOR, "button.ack")
    assert ack.accessible_name == f"确认接手 {card.find_element(By.TAG_NAME, 'h3').text}"
    assert no_sideways_scroll(browser)

    ack.click()
    status = browser.find_element(By.ID, "status")
    assert status.get_attribute("aria-live") == "polite"
    wait.until(lambda d: "已接手" in status.text)
    assert "3号柜台" in status.text and gw.store.alert_view(first).state == "acknowledged"
    # Focus goes to the alert still waiting for someone, not back to the top of the page, and the
    # confirmation is on screen there without hiding it.
    focused = browser.switch_to.active_element
    assert focused_in(browser, "open") == [second, "ack"]
    assert in_view(browser, status) and in_view(browser, focused)
    wait.until(lambda d: d.title == "(1) 柜面预警 — counterguard")

    card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#awaiting .card[data-alert-id="{first}"]'))[0]
    answers = card.find_elements(By.CSS_SELECTOR, "select.answer")
    assert len(answers) == len(card.find_elements(By.CSS_SELECTOR, "label.question")) == len(questions)
    assert [a.accessible_name for a in answers] == questions
    radios = card.find_elements(By.CSS_SELECTOR, "input.outcome")
    assert len(radios) == len(OUTCOMES) and not any(r.is_selected() for r in radios)
    assert [r.accessible_name for r in radios] == [OUTCOME_TEXT[r.get_attribute("value")]["zh"] for r in radios]
    # Nor the level that handled it: no answers came from the counter and nobody called the police.
    levels = card.find_elements(By.CSS_SELECTOR, "input.handled")
    assert len(levels) == 3 and not any(r.is_selected() for r in levels)
    assert levels[1].accessible_name == "二级：主管面谈劝阻"
    assert no_sideways_scroll(browser)

    # Recording without an outcome is refused in the page: nothing reaches the gateway, and the
    # reason is on screen by the choice it asks for, even at the foot of a phone's page.
    card.find_element(By.CSS_SELECTOR, "button.record").click()
    message = browser.find_element(By.ID, "message")
    wait.until(lambda d: message.is_displayed() and "请先选择处理结果" in message.text)
    assert gw.store.alert_view(first).state == "acknowledged"
    assert browser.switch_to.active_element == radios[0]
    assert in_view(browser, message) and in_view(browser, radios[0])

    card.find_element(By.CSS_SELECTOR, "input.outcome[value='false_alarm']").click()
    wait.until(lambda d: not message.is_displayed())  # chosen now: the reminder goes
    card.find_element(By.CSS_SELECTOR, "select.answer option[value='no']").click()
    card.find_element(By.CSS_SELECTOR, "button.record").click()  # the level is still to choose
    wait.until(lambda d: message.is_displayed() and "请先选择处理层级" in message.text)
    assert gw.store.alert_view(first).state == "acknowledged"
    assert browser.switch_to.active_element == levels[0] and in_view(browser, message)
    levels[1].click()
    wait.until(lambda d: not message.is_displayed())
    card.find_element(By.CSS_SELECTOR, "button.record").click()
    wait.until(lambda d: "已登记" in d.find_element(By.ID, "status").text)
    view = gw.store.alert_view(first)
    assert (view.state, view.outcome, view.handled_at) == ("closed", "false_alarm", 2)
    assert [(a.question_zh, a.answer) for a in gw.store.answers([first])[first]] == [(questions[0], "no")]
    assert focused_in(browser, "open") == [second, "ack"]
    assert in_view(browser, status) and in_view(browser, browser.switch_to.active_element)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#today tr[data-alert-id="{first}"] ul.answers'))
    assert no_sideways_scroll(browser)
    # Every part of the page now has something in it (an open card, events with their Report
    # controls, today's history with answers): all of it in Chinese.
    assert english_words(browser, gw) == set()


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_the_keyboard_alone_acknowledges_an_alert_and_records_its_outcome(gateway, browser, width):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    gw, terminal = gateway
    alert_id = raise_red(gw, terminal, "keys-1")
    questions = load_questions().shown(gw.store.alert_view(alert_id).reasons, 6)
    at_width(browser, width)
    wait = log_in(browser, gw, "S2048")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#open .card[data-alert-id="{alert_id}"]'))

    def press(*keys):
        ActionChains(browser).send_keys(*keys).perform()

    tab_to(browser, "#open button.ack")
    press(Keys.ENTER)
    wait.until(lambda d: gw.store.alert_view(alert_id).state == "acknowledged"
               and "已接手" in d.find_element(By.ID, "status").text)
    # Nobody else is waiting: focus goes to the alert just acknowledged, where its outcome is recorded.
    assert focused_in(browser, "awaiting") == [alert_id, "heading"]

    tab_to(browser, "#awaiting select.answer")   # the first question: the arrow picks "yes"
    press(Keys.ARROW_DOWN)
    tab_to(browser, "#awaiting button.record")   # forgot the outcome: refused, focus to the choice
    press(Keys.ENTER)
    message = browser.find_element(By.ID, "message")
    wait.until(lambda d: message.is_displayed() and "请先选择处理结果" in message.text)
    assert focused_in(browser, "awaiting") == [alert_id, "outcome:confirmed_fraud"]
    assert in_view(browser, message)
    press(Keys.SPACE)          # the first outcome, then the arrow moves the choice within the group
    press(Keys.ARROW_DOWN)
    tab_to(browser, "#awaiting textarea.note")
    press("walked her to the lobby phone to call her son")
    tab_to(browser, "#awaiting button.record")
    press(Keys.ENTER)          # forgot the level: refused, focus to that choice
    wait.until(lambda d: message.is_displayed() and "请先选择处理层级" in message.text)
    assert focused_in(browser, "awaiting") == [alert_id, "handled:1"]
    press(Keys.SPACE)          # level 1: the teller's caring questions
    tab_to(browser, "#awaiting button.record")
    press(Keys.ENTER)
    wait.until(lambda d: gw.store.alert_view(alert_id).state == "closed"
               and "已登记" in d.find_element(By.ID, "status").text)
    view = gw.store.alert_view(alert_id)
    assert (view.outcome, view.note, view.outcome_by, view.handled_at) == (
        "customer_dissuaded", "walked her to the lobby phone to call her son", "S2048", 1)
    assert [(a.key, a.answer) for a in gw.store.answers([alert_id])[alert_id]] == [(questions[0].key, "yes")]
    # Nothing left to do: focus rests on the confirmation, not the top of the page.
    assert browser.switch_to.active_element.get_attribute("id") == "status"
    assert no_sideways_scroll(browser)


def test_when_the_panel_button_takes_the_alert_under_the_focus_the_focus_follows_it_and_the_page_says_so(
        gateway, browser):
    from selenium.webdriver.common.by import By

    gw, terminal = gateway
    alert_id = raise_red(gw, terminal, "panel-1")
    wait = log_in(browser, gw, "S1024")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#open .card[data-alert-id="{alert_id}"]'))
    tab_to(browser, "#open button.ack")
    press_panel_button(gw)   # the supervisor at the counter was quicker
    assert wait_until(lambda: gw.store.alert_view(alert_id).ack_via == "button", timeout=10)
    # The card moves on the next refresh; the keyboard user is taken with it and told why.
    wait.until(lambda d: focused_in(d, "awaiting") == [alert_id, "heading"])
    assert browser.find_element(By.ID, "status").text == "3号柜台的预警已由主管按钮接手，请在下方登记结果。"
    assert "接手人 主管 (主管按钮)" in browser.find_element(By.CSS_SELECTOR, "#awaiting .card").text
    assert english_words(browser, gw) == set()


def test_an_alert_someone_else_acknowledged_first_is_refused_in_chinese_and_the_focus_follows_it(gateway, browser):
    from selenium.webdriver.common.by import By

    gw, terminal = gateway
    alert_id = raise_red(gw, terminal, "taken-1")
    wait = log_in(browser, gw, "S1024")
    card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#open .card[data-alert-id="{alert_id}"]'))[0]
    # The page cannot refresh for a moment, so it still offers Acknowledge after S2048 took the alert.
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/api/state*"]})
    other = Client(gw.branch_console.port)
    other.login("S2048")
    assert other.post("/api/ack", {"alert_id": alert_id})[0].status == 200
    card.find_element(By.CSS_SELECTOR, "button.ack").click()
    message = browser.find_element(By.ID, "message")
    wait.until(lambda d: message.is_displayed() and message.text)
    assert message.text == "该预警已被 S2048 接手"
    assert gw.store.alert_view(alert_id).ack_by == "S2048"
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    # Back in touch: the alert is shown where it is now, and focus goes with it.
    wait.until(lambda d: focused_in(d, "awaiting") == [alert_id, "heading"])
    assert "3号柜台的预警已由 S2048 接手" in browser.find_element(By.ID, "status").text


def test_the_chinese_page_says_in_chinese_that_the_gateway_cannot_be_reached(gateway, browser):
    from selenium.webdriver.common.by import By

    gw, terminal = gateway
    alert_id = raise_red(gw, terminal, "offline-1")
    browser.get(f"http://127.0.0.1:{gw.branch_console.port}/")
    at_width(browser, PHONE)
    assert no_sideways_scroll(browser)  # the login page fits the phone too
    wait = log_in(browser, gw, "S1024")
    card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#open .card[data-alert-id="{alert_id}"]'))[0]
    gw.branch_console.stop()  # the gateway's console goes away under the open page

    button = card.find_element(By.CSS_SELECTOR, "button.ack")
    button.click()
    message = browser.find_element(By.ID, "message")
    wait.until(lambda d: message.is_displayed() and message.text)
    assert message.text == "无法连接网关，请稍后重试。"  # not the browser's "Failed to fetch"
    assert in_view(browser, message)
    wait.until(lambda d: d.find_element(By.ID, "connection").is_displayed())
    assert browser.find_element(By.ID, "connection").text == "无法连接网关，正在重试"
    assert english_words(browser, gw) == set()
    assert button.is_enabled() and browser.switch_to.active_element == button
    assert gw.store.alert_view(alert_id).state == "open"  # nothing was lost: press again when it is back
