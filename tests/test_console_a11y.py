"""The branch console as a supervisor uses it on a PC and on a phone, and with the keyboard alone,
in real headless Chromium: nothing is chosen for them, every answer is named by its question, each
action is confirmed where a screen reader hears it, and the Chinese page stays Chinese when the
gateway cannot be reached."""

from __future__ import annotations

import re

import pytest
import test_console
from counterguard.gateway.questions import load_questions
from harness import intercept
from test_console import log_in, raise_red

gateway, browser = test_console.gateway, test_console.browser  # the console's own fixtures

DESKTOP, PHONE = 1280, 360


def no_sideways_scroll(driver) -> bool:
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


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
    browser.set_window_size(width, 900)
    wait = log_in(browser, gw, "S1024")
    card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#open .card[data-alert-id="{first}"]'))[0]
    assert browser.title == "(2) 柜面预警 — counterguard"
    # The open card shows the questions the supervisor will record answers to, no more.
    questions = shown_questions(gw, first)
    assert [q.text for q in card.find_elements(By.CSS_SELECTOR, "li.question")] == questions
    assert no_sideways_scroll(browser)

    card.find_element(By.CSS_SELECTOR, "button.ack").click()
    status = browser.find_element(By.ID, "status")
    assert status.get_attribute("aria-live") == "polite"
    wait.until(lambda d: "已接手" in d.find_element(By.ID, "status").text)
    assert "3号柜台" in status.text and gw.store.alert_view(first).state == "acknowledged"
    # Focus goes to the alert still waiting for someone, not back to the top of the page.
    focused = browser.switch_to.active_element
    assert focused.tag_name == "button" and "ack" in focused.get_attribute("class")
    assert browser.execute_script("return arguments[0].closest('.card').dataset.alertId", focused) == second
    wait.until(lambda d: d.title == "(1) 柜面预警 — counterguard")

    card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#awaiting .card[data-alert-id="{first}"]'))[0]
    answers = card.find_elements(By.CSS_SELECTOR, "select.answer")
    assert len(answers) == len(card.find_elements(By.CSS_SELECTOR, "label.question")) == len(questions)
    assert [a.accessible_name for a in answers] == questions
    radios = card.find_elements(By.CSS_SELECTOR, "input.outcome")
    assert len(radios) == 4 and not any(r.is_selected() for r in radios)
    assert no_sideways_scroll(browser)

    # Recording without an outcome is refused in the page: nothing reaches the gateway.
    card.find_element(By.CSS_SELECTOR, "button.record").click()
    message = browser.find_element(By.ID, "message")
    wait.until(lambda d: message.is_displayed() and "请先选择处理结果" in message.text)
    assert gw.store.alert_view(first).state == "acknowledged"
    assert browser.switch_to.active_element == radios[0]

    card.find_element(By.CSS_SELECTOR, "input.outcome[value='false_alarm']").click()
    wait.until(lambda d: not message.is_displayed())  # chosen now: the reminder goes
    card.find_element(By.CSS_SELECTOR, "select.answer option[value='no']").click()
    card.find_element(By.CSS_SELECTOR, "button.record").click()
    wait.until(lambda d: "已登记" in d.find_element(By.ID, "status").text)
    view = gw.store.alert_view(first)
    assert (view.state, view.outcome) == ("closed", "false_alarm")
    assert [(a.question_zh, a.answer) for a in gw.store.answers([first])[first]] == [(questions[0], "no")]
    assert browser.switch_to.active_element.tag_name != "body"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#today tr[data-alert-id="{first}"]'))
    assert no_sideways_scroll(browser)


def test_the_keyboard_alone_acknowledges_an_alert_and_records_its_outcome(gateway, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    gw, terminal = gateway
    alert_id = raise_red(gw, terminal, "keys-1")
    wait = log_in(browser, gw, "S2048")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#open .card[data-alert-id="{alert_id}"]'))

    def press(*keys):
        ActionChains(browser).send_keys(*keys).perform()

    def tab_to(css: str, most: int = 60) -> None:
        for _ in range(most):
            if browser.execute_script("return document.activeElement.matches(arguments[0])", css):
                return
            press(Keys.TAB)
        raise AssertionError(f"Tab never reached {css}")

    tab_to("#open button.ack")
    press(Keys.ENTER)
    wait.until(lambda d: gw.store.alert_view(alert_id).state == "acknowledged"
               and "已接手" in d.find_element(By.ID, "status").text)
    assert browser.switch_to.active_element.tag_name != "body"
    tab_to("#awaiting input.outcome")
    press(Keys.SPACE)          # the first outcome, then the arrow moves the choice within the group
    press(Keys.ARROW_DOWN)
    tab_to("#awaiting textarea.note")
    press("walked her to the lobby phone to call her son")
    tab_to("#awaiting button.record")
    press(Keys.ENTER)
    wait.until(lambda d: gw.store.alert_view(alert_id).state == "closed")
    view = gw.store.alert_view(alert_id)
    assert (view.outcome, view.note, view.outcome_by) == (
        "customer_dissuaded", "walked her to the lobby phone to call her son", "S2048")


def test_the_chinese_page_says_in_chinese_that_the_gateway_cannot_be_reached(gateway, browser):
    from selenium.webdriver.common.by import By

    gw, terminal = gateway
    alert_id = raise_red(gw, terminal, "offline-1")
    browser.set_window_size(PHONE, 900)
    browser.get(f"http://127.0.0.1:{gw.branch_console.port}/")
    assert no_sideways_scroll(browser)  # the login page fits the phone too
    wait = log_in(browser, gw, "S1024")
    card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#open .card[data-alert-id="{alert_id}"]'))[0]
    gw.branch_console.stop()  # the gateway's console goes away under the open page

    button = card.find_element(By.CSS_SELECTOR, "button.ack")
    button.click()
    message = browser.find_element(By.ID, "message")
    wait.until(lambda d: message.is_displayed() and message.text)
    assert message.text == "无法连接网关，请稍后重试。"
    wait.until(lambda d: d.find_element(By.ID, "connection").is_displayed())
    assert browser.find_element(By.ID, "connection").text == "无法连接网关，正在重试"
    # Nothing English left on the page but the product's name, the button to switch language and
    # the branch's own name (data, as configured).
    words = set(re.findall(r"[A-Za-z]{2,}", browser.find_element(By.TAG_NAME, "body").text))
    assert words <= {"counterguard", "English", *re.findall(r"[A-Za-z]{2,}", gw.config.gateway.branch)}, words
    assert button.is_enabled() and browser.switch_to.active_element == button
    assert gw.store.alert_view(alert_id).state == "open"  # nothing was lost: press again when it is back
