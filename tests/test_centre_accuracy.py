"""Warning accuracy: precision of red and amber alerts per branch and over time, from the outcomes
supervisors record (stored through the centre's own schema checks, in SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest

from counterguard.centre import schema
from counterguard.centre.accuracy import precision, table
from counterguard.centre.store import open_store
from centre_support import SimGateway, postgres, store_url  # noqa: F401  (fixtures)


def _record(gw: SimGateway, leaf: str, payload: str) -> schema.Record:
    return schema.check(f"{gw.topics.root}/{leaf}", payload.encode())


def _alert(gw, level, day):
    _, alert_id, payload = gw.alert_payload(level=level)
    body = json.loads(payload)
    body["raised_at"] = f"{day}T02:00:00.000Z"
    return alert_id, _record(gw, "alert", json.dumps(body))


@pytest.fixture
def branch_history(store_url):
    """Two branches' alerts and their outcomes, over two weeks of May 2024."""
    store = open_store(store_url)
    xian = SimGateway(None, None, "gw-0001", region="610100", branch="b0231")
    yanta = SimGateway(None, None, "gw-0002", region="610100", branch="b0417")
    records = []

    def alert(gw, level, day, *outcomes):
        alert_id, rec = _alert(gw, level, day)
        records.append(rec)
        for outcome in outcomes:
            records.append(_record(gw, "outcome", gw.follow_up("outcome", alert_id, outcome=outcome)[1]))

    alert(xian, "red", "2024-05-06", "confirmed_fraud")
    alert(xian, "red", "2024-05-06", "customer_dissuaded")
    alert(xian, "red", "2024-05-14", "false_alarm")
    alert(xian, "amber", "2024-05-06", "false_alarm")
    alert(xian, "amber", "2024-05-14")                                   # no outcome yet
    alert(yanta, "red", "2024-05-14", "false_alarm", "police_called")    # corrected: the last one counts
    store.ingest(records)
    yield store
    store.close()


def test_precision_per_branch(branch_history):
    rows = {(r.group, r.level): r for r in precision(branch_history, by="branch")}
    red = rows[("610100/b0231", "red")]
    assert (red.alerts, red.with_outcome, red.justified, red.false_alarms) == (3, 3, 2, 1)
    assert red.precision == pytest.approx(2 / 3)
    amber = rows[("610100/b0231", "amber")]
    assert (amber.alerts, amber.with_outcome, amber.precision) == (2, 1, 0.0)
    assert rows[("610100/b0417", "red")].precision == 1.0


def test_precision_over_time_by_week_and_day(branch_history):
    weeks = {(r.group, r.level): r.precision for r in precision(branch_history, by="week")}
    assert weeks[("2024-W19", "red")] == 1.0
    assert weeks[("2024-W20", "red")] == 0.5
    days = {(r.group, r.level): r.alerts for r in precision(branch_history, by="day", since="2024-05-10")}
    assert days == {("2024-05-14", "red"): 2, ("2024-05-14", "amber"): 1}


def test_the_table_shows_each_group_and_a_dash_where_nothing_is_judged_yet(branch_history):
    overall = table(precision(branch_history, by="all")).splitlines()
    assert [line.split()[:3] for line in overall[1:]] == [["all", "red", "75.0%"], ["all", "amber", "0.0%"]]
    by_day = table(precision(branch_history, by="day")).splitlines()
    assert ["2024-05-14", "amber", "-"] in [line.split()[:3] for line in by_day]


def test_an_unknown_grouping_is_refused(branch_history):
    with pytest.raises(ValueError, match="not 'year'"):
        precision(branch_history, by="year")


def test_alerts_staff_raised_are_counted_apart_and_leave_the_models_precision_as_it_was(branch_history):
    before = {(r.group, r.level): r.as_dict() for r in precision(branch_history, by="branch")}
    gw = SimGateway(None, None, "gw-0001", region="610100", branch="b0231")
    gw.seq = 100  # the same gateway, later in its stream
    records = []
    for outcome in ("confirmed_fraud", "police_called", "false_alarm"):  # a coached victim the model answered green
        alert_id, rec = _alert(gw, "red", "2024-05-15")
        body = {**rec.body, "reasons": ["teller_report"], "score": 0.08, "raised_by": "S1024", "note": "on the phone"}
        records += [_record(gw, "alert", json.dumps(body)),
                    _record(gw, "outcome", gw.follow_up("outcome", alert_id, outcome=outcome)[1])]
    branch_history.ingest(records)
    rows = precision(branch_history, by="branch")
    model = {(r.group, r.level): r.as_dict() for r in rows if r.source == "model"}
    assert model == before
    [staff] = [r for r in rows if r.source == "staff"]
    assert (staff.group, staff.level, staff.alerts, staff.justified, staff.false_alarms) == ("610100/b0231", "red", 3, 2, 1)
    lines = table(rows).splitlines()
    assert lines[0].split()[-2:] == ["raised", "by"]
    assert [line.split()[:3] + line.split()[-1:] for line in lines[1:] if line.split()[0] == "610100/b0231"] == [
        ["610100/b0231", "red", "66.7%", "model"], ["610100/b0231", "amber", "0.0%", "model"],
        ["610100/b0231", "red", "66.7%", "staff"]]
