"""The caring dialogue in the scoring path: a terminal sends the customer's answers for an event (an
ANS frame) and gets the final verdict. The model re-scores the event with the answers: a scam's
script raises an amber to red, reassuring answers clear it to green, a red stands and a list red
above all, whatever the customer says (real pipeline, real TFLite model, real SQLite file)."""

from __future__ import annotations

import json

import pytest

from counterguard.core import wire
from counterguard.core.clock import Clock
from counterguard.core.dialogue import SIGNALS
from counterguard.gateway.counter.pipeline import Pipeline
from counterguard.gateway.scoring.assessor import Assessor
from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.gateway.scoring.watchlist import Watchlist
from counterguard.gateway.store.db import Store
from harness import MULE, event, intercept, mule

MODEL = FraudModel.load(default_model_path())
NO_TO_ALL = {s: ("yes" if s == "knows_payee_in_person" else "no") for s in SIGNALS}


@pytest.fixture
def pipeline(tmp_path):
    store = Store(tmp_path / "gateway.db")
    watchlist = Watchlist(store, None)
    watchlist.apply({"version": 1, "full": True, "add": [MULE]})
    yield Pipeline(Assessor(store, watchlist, MODEL, MODEL.thresholds), gateway_id="gw-test",
                   clock=Clock(assume_synced=True))
    store.close()


def send(pipeline, type_: str, seq: int, body: dict):
    """(reply frame, verdicts that moved the lamps, alerts raised) for one frame."""
    [item] = wire.FrameDecoder().feed(wire.encode_frame(type_, seq, body))
    outcome = pipeline.process([item])
    [reply] = wire.FrameDecoder().feed(outcome.replies)
    assert reply.seq == seq
    return reply, outcome.verdicts, outcome.alerts


def scored(pipeline, body: dict, seq: int = 1) -> dict:
    reply, _, _ = send(pipeline, "EVT", seq, body)
    assert reply.type == "ACK", reply.body
    return reply.body


def test_a_scripted_answer_turns_amber_red_raises_a_red_alert_and_moves_the_lamp(pipeline):
    body = event(3, 12000, customer_age=70, teller_flags=["anxious"], purpose="investment")
    first = scored(pipeline, body)
    assert first["level"] in ("green", "amber"), first
    reply, moved, alerts = send(pipeline, "ANS", 2, {"event_id": body["event_id"], "by": "T0031",
                                                     "answers": {"told_to_by_caller": "yes",
                                                                 "knows_payee_in_person": "no"}})
    assert reply.type == "ACK" and reply.body["final"] is True
    assert reply.body["level"] == "red" and reply.body["reasons"][:2] == ["caller_instructed",
                                                                          "payee_not_known_in_person"]
    assert "call supervisor" in reply.body["text"]
    assert [(v.counter, v.level) for v in moved] == [(3, "red")]  # the counter's lamp goes red
    assert [a.level for a in alerts] == ["red"] and pipeline.store.open_alerts("red")[0].event_id == body["event_id"]


def test_reassuring_answers_clear_an_amber_to_green_and_the_lamp_follows(pipeline):
    body = event(3, 12000, customer_age=70, teller_flags=["anxious", "urgent"], purpose="investment")
    first = scored(pipeline, body)
    assert first["level"] == "amber", first
    [alert] = pipeline.store.open_alerts("amber")
    reply, moved, alerts = send(pipeline, "ANS", 2, {"event_id": body["event_id"], "answers": NO_TO_ALL})
    assert reply.body["level"] == "green" and reply.body["final"] is True and reply.body["text"] == "Proceed"
    assert reply.body["score"] < first["score"]
    assert [(v.counter, v.level) for v in moved] == [(3, "green")] and alerts == []
    # The amber's alert stays for the supervisor's outcome, with the dialogue that cleared it beside it.
    assert [a.alert_id for a in pipeline.store.open_alerts("amber")] == [alert.alert_id]
    assert pipeline.store.dialogue(body["event_id"])[0] == NO_TO_ALL


def test_answers_never_lower_a_red_and_a_list_red_stands(pipeline):
    held = mule(2)
    assert scored(pipeline, held)["level"] == "red"
    reply, moved, alerts = send(pipeline, "ANS", 2, {"event_id": held["event_id"], "answers": NO_TO_ALL})
    assert reply.body["level"] == "red" and reply.body["reasons"][0] == "watchlist"
    assert moved == [] and alerts == []
    red = intercept(3)
    assert scored(pipeline, red, 3)["level"] == "red"
    reply, moved, _ = send(pipeline, "ANS", 4, {"event_id": red["event_id"], "answers": NO_TO_ALL})
    assert reply.body["level"] == "red" and moved == []  # the supervisor is on the way; answers travel with the alert


def test_answers_sent_again_get_the_same_answer_and_other_answers_are_refused(pipeline):
    body = event(1, 9000)
    assert scored(pipeline, body)["level"] == "green"
    said = {"event_id": body["event_id"], "answers": {"told_to_by_caller": "yes", "told_account_in_crime": "yes",
                                                      "told_to_keep_secret": "yes"}}
    first, _, alerts = send(pipeline, "ANS", 2, said)
    assert first.body["level"] == "red" and [a.level for a in alerts] == ["red"]
    again, moved, more = send(pipeline, "ANS", 3, said)  # the ACK was lost: the same final verdict, once
    assert first.body == again.body and moved == [] and more == []
    assert len(pipeline.store.open_alerts(level=None)) == 1
    other, _, _ = send(pipeline, "ANS", 4, {"event_id": body["event_id"], "answers": {"buying_for_someone": "no"}})
    assert other.type == "NAK" and other.body["code"] == "conflict" and other.body["field"] == "answers"


def test_answers_for_an_unknown_event_or_after_the_outcome_are_refused_by_name(pipeline):
    reply, _, _ = send(pipeline, "ANS", 1, {"event_id": "never-sent", "answers": {"told_to_by_caller": "no"}})
    assert (reply.type, reply.body["code"], reply.body["field"]) == ("NAK", "unknown_event", "event_id")
    body = intercept(3)
    scored(pipeline, body, 2)
    store, clock = pipeline.store, Clock(assume_synced=True)
    [alert] = store.open_alerts("red")
    store.acknowledge(alert.alert_id, by="S1024", via="console", stamp=clock.now())
    store.record_outcome(alert.alert_id, "customer_dissuaded", by="S1024", via="console", stamp=clock.now())
    reply, _, _ = send(pipeline, "ANS", 3, {"event_id": body["event_id"], "answers": {"told_to_by_caller": "yes"}})
    assert (reply.type, reply.body["code"]) == ("NAK", "closed")


def test_the_answers_travel_with_the_alerts_outcome_to_the_centre(pipeline):
    body = intercept(3)
    scored(pipeline, body)
    send(pipeline, "ANS", 2, {"event_id": body["event_id"], "answers": {"told_account_in_crime": "yes",
                                                                        "knows_payee_in_person": "declined"}})
    store, clock = pipeline.store, Clock(assume_synced=True)
    [alert] = store.open_alerts("red")
    store.acknowledge(alert.alert_id, by="S1024", via="console", stamp=clock.now())
    record = store.record_outcome(alert.alert_id, "customer_dissuaded", by="S1024", via="console", stamp=clock.now())
    [row] = [r for r in store.outbox_pending(100, republish_after_s=0) if r.seq == record.seq]
    outcome = json.loads(row.payload)
    said = {a["key"]: a["answer"] for a in outcome["answers"]}
    assert said == {"signal.told_account_in_crime": "yes", "signal.knows_payee_in_person": "declined"}


@pytest.mark.parametrize("body, field", [
    ({"event_id": "e1", "answers": {"told_to_by_caller": "maybe"}}, "answers"),
    ({"event_id": "e1", "answers": {"asked_for_pin": "yes"}}, "answers"),
    ({"event_id": "e1", "answers": {}}, "answers"),
    ({"event_id": "", "answers": {"told_to_by_caller": "no"}}, "event_id"),
    ({"event_id": "e1", "answers": {"told_to_by_caller": "no"}, "note": "x"}, "note"),
])
def test_bad_answers_are_refused_naming_the_field_and_the_line_goes_on(pipeline, body, field):
    reply, _, _ = send(pipeline, "ANS", 1, body)
    assert (reply.type, reply.body["code"], reply.body.get("field")) == ("NAK", "schema", field)
    assert scored(pipeline, event(1, 500), 2)["level"] == "green"


def test_a_branch_whose_tellers_send_the_answers_asks_at_the_models_dialogue_thresholds(tmp_path):
    from dataclasses import replace

    from gpiozero.pins.mock import MockFactory

    from counterguard.gateway.config import ThresholdSettings
    from counterguard.gateway.ops.app import Gateway
    from harness import gateway_config

    assert MODEL.dialogue_thresholds is not None and MODEL.dialogue_thresholds.amber < MODEL.thresholds.amber
    for dialogue, expected in ((False, MODEL.thresholds), (True, MODEL.dialogue_thresholds)):
        folder = tmp_path / str(dialogue)
        folder.mkdir()
        cfg = replace(gateway_config(folder, broker_port=1, serial_path=None),
                      thresholds=ThresholdSettings(dialogue=dialogue))
        gw = Gateway(cfg, pin_factory=MockFactory()).start()  # no broker on port 1: the uplink keeps trying
        try:
            assert gw.pipeline.assessor.thresholds == expected
        finally:
            gw.stop()
