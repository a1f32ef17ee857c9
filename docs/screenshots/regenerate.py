"""Regenerate the screenshots in this folder: the branch console and the centre dashboard.

Run by hand from the repository root after a change to either page (not part of the tests):

    .venv/bin/python docs/screenshots/regenerate.py

It starts ``counterguard demo --keep`` (a simulated branch with its console, and a real centre with
the morning's alerts), logs in to both pages in headless Chromium (Debian's ``chromium`` and
``chromium-driver``, as setup.sh installs them), saves the pictures, and stops the demo. Needs
mosquitto, as the demo does.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = {  # file -> (page, language, window width x height)
    "branch-console.png": ("console", "zh", (1280, 900)),
    "branch-console-phone.png": ("console", "zh", (390, 900)),
    "centre-dashboard.png": ("centre", "zh", (1440, 1200)),
    "centre-dashboard-en.png": ("centre", "en", (1440, 1200)),
}


def start_demo() -> tuple[subprocess.Popen, dict]:
    demo = subprocess.Popen([sys.executable, "-m", "counterguard", "demo", "--keep", "--pace", "0.05"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found: dict = {}
    deadline = time.monotonic() + 120
    for line in demo.stdout:
        m = re.search(r"branch console\s*:\s*(\S+)\s+staff number (\S+), password (\S+)", line)
        if m:
            found["console"], found["staff"], found["password"] = m.groups()
        m = re.search(r"centre dashboard\s*:\s*(\S+)\s+(\S+), password (\S+)", line)
        if m:
            found["centre"], found["analyst"], _ = m.groups()
        if "console" in found and "centre" in found:
            return demo, found
        if time.monotonic() > deadline:
            break
    demo.send_signal(signal.SIGINT)
    raise SystemExit("the demo did not print its URLs; run 'counterguard demo --keep' to see why")


def browser(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait(driver, condition, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def shoot(name: str, page: str, lang: str, size: tuple[int, int], demo: dict) -> None:
    from selenium.webdriver.common.by import By

    driver = browser(*size)
    try:
        driver.get(demo[page])
        wait(driver, lambda d: d.find_elements(By.ID, "login-form"))
        driver.find_element(By.ID, "staff" if page == "console" else "analyst").send_keys(
            demo["staff"] if page == "console" else demo["analyst"])
        driver.find_element(By.ID, "password").send_keys(demo["password"])
        driver.find_element(By.ID, "login").click()
        wait(driver, lambda d: not d.find_elements(By.ID, "login-form"))
        driver.execute_script("localStorage.setItem('cg-lang', arguments[0]);", lang)
        driver.refresh()
        if page == "centre":
            # Every chart drawn and the fleet known before the picture.
            wait(driver, lambda d: all(d.find_element(By.ID, c).get_attribute("data-drawn") == "1"
                                       for c in ("chart-hour", "chart-day", "chart-precision", "chart-outcomes")))
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#fleet-tiles .tile"))
        else:
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "main"))
        time.sleep(1.0)
        # The whole page, not only the window.
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(size[0], min(max(size[1], height), 4000))
        time.sleep(0.5)
        driver.save_screenshot(str(HERE / name))
        print(f"wrote {HERE / name}")
    finally:
        driver.quit()


def main() -> int:
    demo, found = start_demo()
    try:
        for name, (page, lang, size) in SHOTS.items():
            shoot(name, page, lang, size, found)
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            demo.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
