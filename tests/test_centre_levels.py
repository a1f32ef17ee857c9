"""The three levels of dissuasion, measured: the level that handled an alert (1 the teller's caring
questions, 2 the supervisor's talk, 3 police called) is recorded with its outcome at the branch,
travels to the centre, and the centre reports per branch and per level the alerts, what came of
them and the precision of red warnings with its 95 % Wilson interval and the labels behind it.
Outcomes from gateways that do not record the level are counted apart (real gateway stores, real
mosquitto, real SQLite; PostgreSQL where installed)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from contextlib import ExitStack

import pytest

from counterguard.centre import schema
from counterguard.centre.ingest import IngestWorker
from counterguard.centre.levels import levels, table
from counterguard.centre.store import open_store
from counterguard.centre.web import Dashboard
from counterguard.cli import main
from counterguard.core.clock import Clock, Stamp
from counterguard.core.decision import Verdict
from counterguard.core.events import parse_event
from counterguard.gateway.link.uplink import Uplink
from counterguard.gateway.scoring.dialogue import answer_event
from counterguard.gateway.scoring.watchlist import Watchlist
from counterguard.gateway.store.db import LifecycleError, Store
import test_console
from centre_support import SimGateway, postgres, store_url  # noqa: F401  (fixtures)
from conftest import wait_until
from harness import config_toml, gateway_config, intercept
from test_console import Client, raise_red

gateway = test_console.gateway  # the console's own fixture: a real gateway serving the page

REGION = "610100"
CLOCK = Clock(assume_synced=True)


def acknowledged_alert(store, gateway_id: str, level: str = "red"):
    """An alert on a real event (kept as the gateway keeps it), acknowledged by the supervisor."""
    body = intercept(3)
    event = parse_event(body)
    verdict = Verdict(event.event_id, level, 0.93, ("large_cash",), "Hold - call supervisor", event.counter)
    alert = store.record_verdict(event, json.dumps(body).encode(), f"sha-{event.event_id}", verdict,
                                 Stamp(time.time(), time.monotonic(), True), model_version="m-1",
                                 watchlist_version=0, gateway_id=gateway_id)
    store.acknowledge(alert.alert_id, by="S1024", via="console", stamp=CLOCK.now())
    return alert


def row_of(rows, group: str, handled: str):
    [row] = [r for r in rows if (r.group, r.handled) == (group, handled)]
    return row


# -- from the counter to the centre's report --------------------------------------------------------
def test_the_level_recorded_at_the_branch_reaches_the_centre_and_is_counted_per_branch_and_level(
        broker, tmp_path, store_url):
    centre = open_store(store_url)
    with ExitStack() as stack:
        stores = {}
        for gw, branch in (("gw-lv-01", "b0231"), ("gw-lv-02", "b0417")):
            store = stack.enter_context(Store(tmp_path / f"{gw}.db", synchronous="NORMAL"))
            uplink = Uplink(store, Watchlist(store), host=broker.host, port=broker.port, gateway_id=gw, region=REGION,
                            branch=branch, heartbeat_s=1.0, republish_after_s=600.0, backoff_min=0.1,
                            backoff_max=0.5, clock=CLOCK)
            stack.callback(uplink.stop)
            stores[gw] = (store, uplink)
        xian, yanta = stores["gw-lv-01"][0], stores["gw-lv-02"][0]

        # At the first branch the customer answered the teller's caring questions at the counter (an
        # ANS frame): nobody says which level, so the teller's (1) is recorded.
        talked_out = acknowledged_alert(xian, "gw-lv-01")
        answer_event(xian, talked_out.event_id, {"told_to_by_caller": "yes"}, by="T0031", stamp=CLOCK.now(),
                     gateway_id="gw-lv-01")
        xian.record_outcome(talked_out.alert_id, "customer_dissuaded", by="S1024", via="console", stamp=CLOCK.now())
        supervisor = acknowledged_alert(xian, "gw-lv-01")
        xian.record_outcome(supervisor.alert_id, "customer_dissuaded", by="S1024", via="cli", stamp=CLOCK.now(),
                            handled_at="supervisor")
        police = acknowledged_alert(xian, "gw-lv-01")
        rec = xian.record_outcome(police.alert_id, "police_called", by="S1024", via="console", stamp=CLOCK.now())
        assert rec.handled_at == 3  # police called is level 3 without anyone saying so
        false_alarm = acknowledged_alert(xian, "gw-lv-01")
        xian.record_outcome(false_alarm.alert_id, "false_alarm", by="S1024", via="console", stamp=CLOCK.now(),
                            handled_at=1)
        acknowledged_alert(xian, "gw-lv-01", "amber")  # no outcome yet
        assert xian.alert_view(supervisor.alert_id).handled_at == 2

        # At the second branch: a fraud the supervisor confirmed, and an outcome with no level, as
        # a gateway older than the field sends it.
        fraud = acknowledged_alert(yanta, "gw-lv-02")
        yanta.record_outcome(fraud.alert_id, "confirmed_fraud", by="S2048", via="console", stamp=CLOCK.now(),
                             handled_at="2")
        unsaid = acknowledged_alert(yanta, "gw-lv-02")
        rec = yanta.record_outcome(unsaid.alert_id, "false_alarm", by="S2048", via="console", stamp=CLOCK.now())
        assert rec.handled_at is None

        stack.enter_context(IngestWorker(open_store(store_url), host=broker.host, port=broker.port))
        for _, uplink in stores.values():
            uplink.start()
        assert wait_until(lambda: centre.count("outcome") == 6 and centre.count("alert") == 7
                          and xian.outbox_depth() == yanta.outbox_depth() == 0, 30), \
            f"centre has {centre.count('outcome')} outcomes, {centre.count('alert')} alerts"

    sent = {o["alert_id"]: o["payload"] for o in centre.records(kind="outcome")}
    assert sent[talked_out.alert_id]["handled_at"] == 1 and sent[police.alert_id]["handled_at"] == 3
    assert "handled_at" not in sent[unsaid.alert_id]
    assert centre.quarantine_count() == 0

    rows = levels(centre, by="branch")
    got = {(r.group, r.handled): (r.alerts, r.customer_dissuaded, r.confirmed_fraud, r.police_called, r.false_alarms,
                                  r.red_labels, r.red_justified) for r in rows}
    assert got == {
        (f"{REGION}/b0231", "teller"): (2, 1, 0, 0, 1, 2, 1),
        (f"{REGION}/b0231", "supervisor"): (1, 1, 0, 0, 0, 1, 1),
        (f"{REGION}/b0231", "police"): (1, 0, 0, 1, 0, 1, 1),
        (f"{REGION}/b0231", "awaiting_outcome"): (1, 0, 0, 0, 0, 0, 0),
        (f"{REGION}/b0231", "all"): (5, 2, 0, 1, 1, 4, 3),
        (f"{REGION}/b0417", "supervisor"): (1, 0, 1, 0, 0, 1, 1),
        (f"{REGION}/b0417", "not_recorded"): (1, 0, 0, 0, 1, 1, 0),
        (f"{REGION}/b0417", "all"): (2, 0, 1, 0, 1, 2, 1),
    }
    # Levels first, then what is not a level, then the branch's total.
    assert [r.handled for r in rows if r.group.endswith("b0231")] == [
        "teller", "supervisor", "police", "awaiting_outcome", "all"]
    # The dashboard serves the same rows.
    with Dashboard(open_store(store_url), host="127.0.0.1", port=0) as dashboard:
        with urllib.request.urlopen(dashboard.url + "api/levels?by=branch", timeout=10) as res:
            assert json.loads(res.read()) == {"by": "branch", "rows": [r.as_dict() for r in rows]}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(dashboard.url + "api/levels?by=year", timeout=10)
        assert refused.value.code == 400
    centre.close()


# -- a small example checked by hand ----------------------------------------------------------------
@pytest.fixture
def history(store_url):
    """Two branches' alerts and outcomes, stored through the centre's own schema checks."""
    store = open_store(store_url)
    xian = SimGateway(None, None, "gw-0001", region=REGION, branch="b0231")
    yanta = SimGateway(None, None, "gw-0002", region=REGION, branch="b0417")
    records = []

    def alert(gw, level, *outcomes):
        _, alert_id, payload = gw.alert_payload(level=level)
        records.append(schema.check(f"{gw.topics.root}/alert", payload.encode()))
        for outcome, *handled in outcomes:
            fields = {"outcome": outcome, **({"handled_at": handled[0]} if handled else {})}
            records.append(schema.check(f"{gw.topics.root}/outcome", gw.follow_up("outcome", alert_id, **fields)[1]
                                        .encode()))

    # Level 1: two of three red warnings justified; an amber false alarm is no red label.
    alert(xian, "red", ("customer_dissuaded", 1))
    alert(xian, "red", ("customer_dissuaded", 1))
    alert(xian, "red", ("false_alarm", 1))
    alert(xian, "amber", ("false_alarm", 1))
    # Level 3: four out of four, the last after a correction (the last outcome stored counts).
    alert(xian, "red", ("police_called", 3))
    alert(xian, "red", ("police_called", 3))
    alert(xian, "red", ("confirmed_fraud", 3))
    alert(xian, "red", ("false_alarm", 1), ("police_called", 3))
    alert(xian, "red", ("confirmed_fraud",))   # from a gateway that does not record the level
    alert(xian, "red")                         # no outcome yet
    alert(yanta, "red", ("false_alarm", 2))
    store.ingest(records)
    yield store
    store.close()


def test_red_precision_and_its_wilson_interval_per_level_on_a_hand_checked_example(history):
    rows = levels(history, by="branch")
    teller = row_of(rows, f"{REGION}/b0231", "teller")
    assert (teller.alerts, teller.reds, teller.customer_dissuaded, teller.false_alarms) == (4, 3, 2, 2)
    assert (teller.red_justified, teller.red_labels) == (2, 3)
    assert teller.red_precision == pytest.approx(2 / 3)
    # Wilson, z = 1.96: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), worked by hand for 2 of 3.
    assert teller.red_interval_95 == pytest.approx([0.2077, 0.9385], abs=1e-4)

    police = row_of(rows, f"{REGION}/b0231", "police")
    assert (police.alerts, police.police_called, police.confirmed_fraud, police.red_labels) == (4, 3, 1, 4)
    # "100 %" from four labels: the interval starts at n / (n + z²) = 4 / 7.8416.
    assert police.red_precision == 1.0
    assert police.red_interval_95 == pytest.approx([0.5101, 1.0], abs=1e-4)

    unsaid = row_of(rows, f"{REGION}/b0231", "not_recorded")
    assert (unsaid.alerts, unsaid.confirmed_fraud, unsaid.red_labels) == (1, 1, 1)
    waiting = row_of(rows, f"{REGION}/b0231", "awaiting_outcome")
    assert (waiting.alerts, waiting.reds, waiting.red_labels, waiting.red_precision, waiting.red_interval_95) == (
        1, 1, 0, None, None)
    total = row_of(rows, f"{REGION}/b0231", "all")
    assert (total.alerts, total.reds, total.red_justified, total.red_labels) == (10, 9, 7, 8)
    assert total.red_interval_95 == pytest.approx([0.5291, 0.9776], abs=1e-4)  # 7 of 8, by hand

    supervisor = row_of(rows, f"{REGION}/b0417", "supervisor")
    assert (supervisor.red_precision, supervisor.red_labels) == (0.0, 1)
    assert supervisor.red_interval_95 == pytest.approx([0.0, 0.7935], abs=1e-4)  # 1 - 1/(1 + z²)

    # By region the two branches add up; level rows exist only where something was handled there.
    region = {r.handled: r for r in levels(history, by="region")}
    assert set(region) == {"teller", "supervisor", "police", "not_recorded", "awaiting_outcome", "all"}
    assert (region["all"].alerts, region["supervisor"].alerts) == (11, 1)


def test_the_table_and_the_json_show_precision_with_its_interval_and_labels(history, capsys, store_url):
    lines = table(levels(history, by="branch")).splitlines()
    teller = next(line for line in lines if "b0231" in line and "1 teller" in line)
    assert teller.split()[-3:] == ["66.7%", "20.8%-93.8%", "3"]
    waiting = next(line for line in lines if "awaiting outcome" in line)
    assert waiting.split()[-3:] == ["-", "-", "0"]

    assert main(["centre", "levels", "--store", store_url, "--by", "all", "--json"]) == 0
    report = {r["handled"]: r for r in json.loads(capsys.readouterr().out)}
    assert report["police"]["level"] == 3 and report["police"]["red_precision"] == 1.0
    assert report["police"]["red_interval_95"] == [0.5101, 1.0] and report["police"]["red_labels"] == 4
    assert report["not_recorded"]["level"] is None and report["not_recorded"]["alerts"] == 1


def test_an_unknown_grouping_is_refused(history):
    with pytest.raises(ValueError, match="not 'year'"):
        levels(history, by="year")


# -- a bad level is refused, naming the field ------------------------------------------------------
@pytest.mark.parametrize("value", [0, 4, "2", "teller", True, 1.0, None])
def test_the_centre_refuses_an_outcome_with_a_bad_level_naming_the_field(value):
    gw = SimGateway(None, None, "gw-0001")
    body = json.loads(gw.follow_up("outcome", "A1", outcome="customer_dissuaded")[1])
    assert "handled_at" not in body
    schema.check(f"{gw.topics.root}/outcome", json.dumps(body).encode())  # without it: an older gateway
    body["handled_at"] = value
    with pytest.raises(schema.SchemaError, match=r"outcome field 'handled_at' has a bad value .*\(one of 1, 2, 3\)"):
        schema.check(f"{gw.topics.root}/outcome", json.dumps(body).encode())


@pytest.mark.parametrize("outcome, level, message", [
    ("customer_dissuaded", 4, "handled_at must be 1 (teller), 2 (supervisor) or 3 (police), got 4"),
    ("customer_dissuaded", "manager", "handled_at must be 1 (teller)"),
    ("police_called", "supervisor", "handled_at: police_called is level 3"),
])
def test_the_gateway_refuses_a_bad_level_and_records_nothing(tmp_path, outcome, level, message):
    with Store(tmp_path / "gateway.db") as store:
        alert = acknowledged_alert(store, "gw-lv-01")
        depth = store.outbox_depth()
        with pytest.raises(ValueError, match=re.escape(message)):
            store.record_outcome(alert.alert_id, outcome, by="S1024", via="cli", stamp=CLOCK.now(), handled_at=level)
        assert store.alert_view(alert.alert_id).state == "acknowledged" and store.outbox_depth() == depth
        # Named by word or number, the level is taken; a second outcome is still refused as ever.
        store.record_outcome(alert.alert_id, outcome, by="S1024", via="cli", stamp=CLOCK.now(), handled_at="police")
        assert store.alert_view(alert.alert_id).handled_at == 3
        with pytest.raises(LifecycleError):
            store.record_outcome(alert.alert_id, outcome, by="S1024", via="cli", stamp=CLOCK.now(), handled_at=3)


def test_the_outcome_command_records_the_level_and_refuses_a_bad_or_missing_one(tmp_path, capsys):
    cfg = gateway_config(tmp_path, broker_port=1, serial_path=None)
    path = tmp_path / "gateway.toml"
    path.write_text(config_toml(cfg))
    with Store(cfg.store.path) as store:
        first, second, third = (acknowledged_alert(store, "gw-lv-01") for _ in range(3))
        answer_event(store, third.event_id, {"told_to_by_caller": "yes"}, by="T0031", stamp=CLOCK.now(),
                     gateway_id="gw-lv-01")

    def outcome(alert, what, *more):
        return main(["outcome", alert.alert_id, what, "--by", "S1024", *more, "-c", str(path)])

    assert outcome(first, "customer_dissuaded", "--level", "7") == 2
    assert "--level (handled_at) must be 1 or teller, 2 or supervisor, 3 or police; got '7'" in capsys.readouterr().err
    assert outcome(first, "customer_dissuaded") == 2  # nothing implies a level: the supervisor must say
    assert "say which level handled it: --level 1 (teller)" in capsys.readouterr().err
    assert outcome(first, "customer_dissuaded", "--level", "supervisor") == 0
    assert "level 2 (supervisor)" in capsys.readouterr().out
    assert outcome(second, "police_called") == 0  # implied: police called is level 3
    assert "level 3 (police)" in capsys.readouterr().out
    assert outcome(third, "false_alarm") == 0     # implied: the customer answered at the counter
    assert "level 1 (teller)" in capsys.readouterr().out
    with Store(cfg.store.path) as store:
        assert [store.alert_view(a.alert_id).handled_at for a in (first, second, third)] == [2, 3, 1]
    assert main(["alerts", "--all", "-c", str(path)]) == 0
    assert "outcome customer_dissuaded at level 2 (supervisor)" in capsys.readouterr().out


# -- the branch console's outcome form --------------------------------------------------------------
def test_the_console_records_the_level_chosen_implies_it_from_the_counters_answers_and_refuses_a_bad_one(gateway):
    gw, terminal = gateway
    staff = Client(gw.branch_console.port)
    staff.login("S1024")
    answered = raise_red(gw, terminal, "levels-1")
    assert terminal.send(intercept(counter=4, event_id="levels-2")).body["level"] == "red"
    plain = next(a.alert_id for a in gw.store.open_alerts() if a.alert_id != answered)
    for alert_id in (answered, plain):
        assert staff.post("/api/ack", {"alert_id": alert_id})[0].status == 200
    # The customer at counter 3 answered the caring questions at the counter: the terminal's ANS frame.
    assert terminal.answer("levels-1", {"told_to_by_caller": "yes"}, by="T0031").body["final"] is True

    state = json.loads(staff.request("GET", "/api/state")[1])
    implied = {a["alert_id"]: a["level_implied"] for a in state["awaiting_outcome"]}
    assert implied == {answered: 1, plain: None}
    assert [(h["code"], h["zh"]) for h in state["handled_levels"]] == [
        (1, "一级：柜员关爱提问劝阻"), (2, "二级：主管面谈劝阻"), (3, "三级：警银联动报警")]

    for bad in (9, "manager", True):
        res, data = staff.post("/api/outcome", {"alert_id": plain, "outcome": "customer_dissuaded", "handled_at": bad})
        body = json.loads(data)
        assert res.status == 400 and "handled_at" in body["error"] and body["error_zh"], body
    res, data = staff.post("/api/outcome", {"alert_id": plain, "outcome": "police_called", "handled_at": 2})
    assert res.status == 400 and "police_called is level 3" in json.loads(data)["error"]
    assert gw.store.alert_view(plain).state == "acknowledged"

    res, data = staff.post("/api/outcome", {"alert_id": plain, "outcome": "customer_dissuaded", "handled_at": 2})
    assert res.status == 200 and json.loads(data)["handled_at"] == 2
    # A page from before the level was asked sends none: the counter's answers imply level 1.
    res, data = staff.post("/api/outcome", {"alert_id": answered, "outcome": "customer_dissuaded"})
    assert res.status == 200 and json.loads(data)["handled_at"] == 1
    today = {a["alert_id"]: a for a in json.loads(staff.request("GET", "/api/state")[1])["today"]}
    assert (today[plain]["handled_at"], today[plain]["handled_text"]["en"]) == (2, "Level 2: supervisor's talk")
    assert today[answered]["handled_at"] == 1
