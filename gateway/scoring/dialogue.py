"""The customer's answers to the caring questions, turned into the final verdict at the gateway.

One path for both ways answers arrive: an ``ANS`` frame from a teller terminal (counter/pipeline.py)
and the supervisor's branch console (branch/console). Each answers for one event with the six
signals of core/dialogue.py. The model re-scores the event with the answers (its first feature
row with the answer columns filled in, core/features.py ``with_answers``) and the re-score decides
as the first score did (core/decision.py ``after_answers``): reassuring answers can turn a model's
amber green, worrying ones raise it, and a list's red never moves. The final verdict is stored
with the answers (and a new alert when the answers raised it) in one transaction.

    result = answer_event(store, "b17-c3-000042", {"told_to_by_caller": "yes"}, by="T0031",
                          stamp=clock.now(), gateway_id="gw-0001")
    result.body      # the final verdict's ACK payload, with "final": true
    result.moved     # the final Verdict when its level changed (the lamps move), else None
    result.alert     # the alert the rise raised, else None
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from counterguard.core import messages, wire
from counterguard.core.decision import LEVEL_RANK, Verdict, after_answers
from counterguard.core.events import parse_event


class DialogueRefused(ValueError):
    """Answers that cannot be taken: ``code`` is the NAK code (core/wire.py), ``field`` what is at fault."""

    def __init__(self, code: str, field: str, detail: str):
        super().__init__(detail)
        self.code, self.field, self.detail = code, field, detail


@dataclass(frozen=True)
class Answered:
    body: dict
    moved: Verdict | None
    alert: object | None
    again: bool = False  # the same answers sent again: nothing new was stored


def answer_event(store, event_id: str, answers: dict, *, by: str | None, stamp, gateway_id: str,
                 via: str = "counter", assessor=None) -> Answered:
    """Record ``answers`` ({signal: yes | no | declined}, checked) for a scored event and return the
    final verdict; DialogueRefused for an unknown event, a closed one, or other answers than those
    already recorded (the first answers stand). ``via``: "counter" (a teller terminal) or "console"
    (the supervisor's branch console). ``assessor``: the gateway's scoring stage, whose model
    re-scores the event; without one (a store alone) the answers only raise, by the rules of
    core/decision.py ``after_answers``."""
    earlier = store.dialogue(event_id)
    if earlier is not None:
        said, ack_body = earlier
        if said != answers:
            raise DialogueRefused(wire.CONFLICT, "answers", "this event's answers were already recorded with "
                                  "other values; the first answers stand")
        return Answered(json.loads(ack_body), None, None, again=True)  # a resend after a lost answer
    first = store.first_verdict(event_id)
    if first is None:
        raise DialogueRefused(wire.UNKNOWN_EVENT, "event_id", "no event with this event_id was scored at this "
                              "gateway; send the event first")
    if store.event_closed(event_id):
        raise DialogueRefused(wire.CLOSED, "event_id", "the alert on this event already has its outcome; "
                              "answers are recorded with the outcome at the console")
    payload, verdict, model_version, watchlist_version = first
    event = parse_event(json.loads(payload))  # the kept form: identity fields are hashes
    if assessor is None:
        final = after_answers(verdict, answers)
    else:
        final = assessor.after_answers(event, verdict, answers, store.verdict_features(event_id))
    body = {**final.ack_body(), "final": True}
    moved = final.level != verdict.level
    alert = store.record_answers(event, answers, final, stamp, by=by, ack_body=messages.dumps(body),
                                 model_version=model_version, watchlist_version=watchlist_version,
                                 gateway_id=gateway_id, raised=LEVEL_RANK[final.level] > LEVEL_RANK[verdict.level],
                                 via=via)
    return Answered(body, final if moved else None, alert)

