"""The supervisor's commands on a real store file: ack, outcome, alerts, and the shift report with
its HTML chart."""

from __future__ import annotations

import re
import sqlite3
from datetime import date, datetime

import pytest

from counterguard.cli import main
from counterguard.core.clock import Stamp
from counterguard.core.decision import Verdict
from counterguard.core.events import parse_event
from counterguard.gateway.store.db import Store

DAY = date(2026, 11, 20)


def at(hour: int, minute: int = 0, second: int = 0, day: date = DAY) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, second).astimezone().timestamp()


def _record(store, n, level, wall, counter=1, reasons=("large_cash",)):
    ev = parse_event({"event_id": f"ev-{n}", "ts": "2026-11-20T09:30:00+08:00", "counter": counter,
                      "kind": "cash_withdrawal", "account": "6222020200000000101", "amount": 50000.0})
    v = Verdict(ev.event_id, level, {"green": 0.1, "amber": 0.6, "red": 0.95}[level],
                () if level == "green" else reasons, "text", counter)
    return store.record_verdict(ev, b"{}", f"sha-{n}", v, Stamp(wall, 0.0, True), model_version="m-1",
                                watchlist_version=1, gateway_id="gw-rep")


@pytest.fixture
def branch_day(tmp_path):
    """A morning: 6 green, 1 amber, 2 red (one acknowledged after 90 s and dissuaded, one left open),
    plus a red the day before that must not be counted."""
    db = tmp_path / "gateway.db"
    with Store(db) as s:
        for i in range(6):
            _record(s, i, "green", at(9, 10 * i))
        amber = _record(s, 10, "amber", at(10, 5), counter=2, reasons=("elderly_customer",))
        red = _record(s, 11, "red", at(10, 30), counter=3, reasons=("customer_on_phone", "large_cash"))
        _record(s, 12, "red", at(11, 45), counter=4)
        _record(s, 13, "red", at(15, 0, day=date(2026, 11, 19)))
        s.acknowledge(red.alert_id, by="S1024", via="button", stamp=Stamp(at(10, 31, 30), 0.0, True))
        s.record_outcome(red.alert_id, "customer_dissuaded", note="son called", by="S1024", via="console",
                         stamp=Stamp(at(10, 50), 0.0, True),
                         answers={"general.1": "yes", "customer_on_phone.2": "yes", "large_cash.1": "declined"})
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[gateway]\nid = "gw-rep"\nbranch = "xa-017"\n[store]\npath = "{db}"\n')
    return cfg, db, red.alert_id, amber.alert_id


def test_the_report_prints_the_days_verdicts_alerts_response_times_and_outcomes(branch_day, capsys, tmp_path):
    cfg, _, _, _ = branch_day
    out_html = tmp_path / "day.html"
    assert main(["report", "--day", DAY.isoformat(), "--config", str(cfg), "--html", str(out_html)]) == 0
    text = capsys.readouterr().out
    assert "verdicts   9  (green 6, amber 1, red 2)" in text
    assert "alerts     3  (acknowledged 1, still open 2, escalated 0)" in text
    assert "response   median 90 s, slowest 90 s" in text
    assert "outcomes   customer_dissuaded 1" in text
    assert "S1024 (button)" in text and "note: son called" in text
    assert re.search(r"customer_dissuaded +3 asked, 2 yes ", text)  # general.1 and customer_on_phone.2 yes
    page = out_html.read_text()
    assert "<td>3 asked, 2 yes</td>" in page
    assert "<svg" in page and "customer on the phone / 客户正在通话" in page
    # The chart has one bar segment per (hour, level) with verdicts: 09 green, 10 green+amber+red, 11 red.
    bars = re.findall(r'<rect class="(\w+)"[^>]*><title>(\d\d):00 \w+ (\d+)</title>', page)
    assert sorted(bars) == sorted([("green", "09", "6"), ("amber", "10", "1"), ("red", "10", "1"), ("red", "11", "1")])


def test_a_day_with_nothing_says_so(branch_day, capsys):
    cfg, *_ = branch_day
    assert main(["report", "--day", "2026-11-21", "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "verdicts   0" in text and "outcomes   none recorded" in text


@pytest.mark.parametrize("argv, message", [
    (["report", "--day", "20-11-2026"], "--day must be YYYY-MM-DD"),
])
def test_a_bad_day_is_named(branch_day, capsys, argv, message):
    cfg, *_ = branch_day
    assert main(argv + ["--config", str(cfg)]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_store_is_named_and_not_created(tmp_path, capsys):
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "none.db"}"\n')
    assert main(["report", "--day", "today", "--config", str(cfg)]) == 2
    assert "store.path: no gateway store at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_acknowledge_and_close_an_alert_from_the_command_line(branch_day, capsys):
    cfg, db, _, amber_id = branch_day
    assert main(["alerts", "--config", str(cfg)]) == 0
    listed = capsys.readouterr().out
    assert amber_id in listed and "customer aged 60 or over" in listed
    assert main(["outcome", amber_id, "false_alarm", "--by", "S7", "--level", "2", "--config", str(cfg)]) == 1
    assert "acknowledge it first" in capsys.readouterr().err
    assert main(["ack", amber_id, "--by", "S7", "--config", str(cfg)]) == 0
    assert main(["ack", amber_id, "--by", "S7", "--config", str(cfg)]) == 1
    assert "not open" in capsys.readouterr().err
    assert main(["outcome", amber_id, "false_alarm", "--by", "S7", "--level", "2", "--note", "known customer",
                 "--config", str(cfg)]) == 0
    with sqlite3.connect(db) as c:
        assert c.execute("select state from alerts where alert_id = ?", (amber_id,)).fetchone() == ("closed",)
        assert c.execute("select via, by_whom from acknowledgements where alert_id = ?", (amber_id,)).fetchone() == ("cli", "S7")
        kinds = [k for (k,) in c.execute("select kind from outbox where ref_id = ? order by seq", (amber_id,))]
    assert kinds == ["alert", "ack", "outcome"]
    # The oldest open red by counter.
    assert main(["ack", "--counter", "4", "--by", "S7", "--config", str(cfg)]) == 0
    assert main(["ack", "--counter", "4", "--by", "S7", "--config", str(cfg)]) == 1


def test_a_supervisor_at_a_shell_sees_the_question_keys_and_records_the_answers(branch_day, capsys):
    cfg, db, red_id, amber_id = branch_day
    assert main(["ack", amber_id, "--by", "S7", "--config", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["alerts", "--questions", amber_id, "--config", str(cfg)]) == 0
    shown = capsys.readouterr().out
    for key in ("general.1", "general.2", "elderly_customer.1", "elderly_customer.2"):
        assert key in shown
    assert "Do your children or family know about this withdrawal?" in shown and "这笔钱家里人知道吗？" in shown
    # A key this alert does not have, a bad word, a malformed option: refused by name, nothing recorded.
    for answer, code, message in (("large_cash.1=no", 1, "'large_cash.1': not one of the questions"),
                                  ("general.1=maybe", 1, "got 'maybe'"),
                                  ("general.1", 2, "must be KEY=ANSWER")):
        assert main(["outcome", amber_id, "customer_dissuaded", "--by", "S7", "--level", "2", "--answer", "general.2=no",
                     "--answer", answer, "--config", str(cfg)]) == code
        assert message in capsys.readouterr().err
    with sqlite3.connect(db) as c:
        assert c.execute("select state from alerts where alert_id = ?", (amber_id,)).fetchone() == ("acknowledged",)
    assert main(["outcome", amber_id, "customer_dissuaded", "--by", "S7", "--level", "2", "--answer", "elderly_customer.1=no",
                 "--answer", "general.2=declined", "--config", str(cfg)]) == 0
    assert "2 answer(s) recorded" in capsys.readouterr().out
    with sqlite3.connect(db) as c:
        assert c.execute("select key, answer from answers where alert_id = ? order by rowid", (amber_id,)).fetchall() \
            == [("general.2", "declined"), ("elderly_customer.1", "no")]
    assert main(["alerts", "--questions", red_id, "--config", str(cfg)]) == 0
    assert re.search(r"customer_on_phone\.2 +Is the caller telling you what to say here at the counter\?  answered: yes",
                     capsys.readouterr().out)
    assert main(["alerts", "--questions", "nope", "--config", str(cfg)]) == 1
    assert "no alert 'nope'" in capsys.readouterr().err


def test_the_console_password_hash_checks_the_password(capsys, monkeypatch):
    import io

    from counterguard.core.weblogin import verify_password

    monkeypatch.setattr("sys.stdin", io.StringIO("branch-secret\n"))
    assert main(["console-password"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert verify_password("branch-secret", hashed) and not verify_password("branch-secre", hashed)


def test_the_report_prints_to_pdf_with_headless_chromium(branch_day, capsys, tmp_path):
    import shutil

    if not shutil.which("chromium"):
        pytest.skip("chromium is not installed (./setup.sh installs it)")
    cfg, *_ = branch_day
    pdf = tmp_path / "day.pdf"
    assert main(["report", "--day", DAY.isoformat(), "--config", str(cfg), "--pdf", str(pdf)]) == 0
    assert f"PDF report written to {pdf}" in capsys.readouterr().out
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and pdf.stat().st_size > 2000
    # The Chinese labels (营业日报, 确认诈骗...) are drawn with a CJK font, not left as empty boxes.
    fonts = set(re.findall(rb"/BaseFont\s*/(?:[A-Z]{6}\+)?([A-Za-z0-9-]+)", data))
    assert any(b"WenQuanYi" in f or b"CJK" in f for f in fonts), fonts
