"""``counterguard demo --keep``: after the scripted morning the branch console and a real centre
dashboard stay up with the morning's alerts, their URLs and a one-time login printed, until Ctrl-C
stops everything cleanly (the real command in its own process, real HTTP)."""

from __future__ import annotations

import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


def read_until(proc, pattern: str, timeout: float = 90.0) -> tuple[str, re.Match]:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen, deadline = "", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen += lines.get(timeout=0.5)
        except queue.Empty:
            continue
        found = re.search(pattern, seen, re.S)
        if found:
            return seen, found
    raise AssertionError(f"no {pattern!r} in the demo's output:\n{seen[-3000:]}")


def test_the_kept_demo_serves_console_and_dashboard_with_the_mornings_alerts_until_ctrl_c():
    proc = subprocess.Popen([sys.executable, "-m", "counterguard", "demo", "--keep", "--pace", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        seen, found = read_until(proc, r"branch console\s+: (http://127\.0\.0\.1:\d+/)\s+staff number (\S+), "
                                       r"password (\S+)\n.*centre dashboard : (http://127\.0\.0\.1:\d+/)\s+analyst, "
                                       r"password (\S+)\n.*centre store\s+: (\S+)\n")
        console, staff, password, dashboard, password2, store = found.groups()
        assert staff == "S-demo" and password == password2 and len(password) >= 12
        assert "50,000-yuan intercept: RED at the centre" in seen
        for url in (console, dashboard):  # both answer, and ask who is there first
            page = urllib.request.urlopen(url, timeout=10).read().decode()
            assert "password" in page.lower()
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            alerts = db.execute("SELECT count(*) FROM records WHERE type = 'alert'").fetchone()[0]
            outcomes = db.execute("SELECT count(*) FROM records WHERE type = 'outcome'").fetchone()[0]
        assert alerts >= 4 and outcomes >= 3  # the morning's reds and ambers, and what supervisors recorded
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, proc.stderr.read()[-3000:]
        assert "Traceback" not in proc.stderr.read()
        assert not Path(store).parent.exists()  # the demo's folder is gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
