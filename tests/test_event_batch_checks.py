"""The centre checks an uploaded events batch a column at a time (centre/schema.py), and falls back
to event by event only to name what is wrong. The column checks must refuse exactly what the event
checks refuse, or a bad event would be stored: compared here on thousands of batches, each with one
field of one event changed to a value chosen to sit on a check's edge."""

from __future__ import annotations

import json
import random

import pytest

from counterguard.centre import schema

HASH = "19d2603c7e4599282ba0bf6a0c4231193127a3b3e7f494819267b4e044343eed"


def good_event(i: int) -> dict:
    return {"event_id": f"t1-{i:05d}", "counter": 1 + i % 4, "kind": "cash_withdrawal", "amount": 200.0 + i,
            "ts": "2026-12-04T19:46:07+08:00", "account_hash": HASH if i % 3 else None,
            "level": ("green", "amber", "red")[i % 3], "score": round(i % 100 / 100, 2),
            "reasons": ["large_cash"] if i % 2 else [], "model_version": "3.0.0", "watchlist_version": 7,
            "features": [i, 0, 1, 2.5], "shadow_score": None, "shadow_version": None,
            "decided_at": "2026-12-04T11:46:07.266Z"}


EDGES = [None, True, False, 0, 1, -1, 2, 0.0, 1.0, 1.5, -0.5, 1e308, "", "x", "x" * 200, "x" * 201,
         "2026-12-04", "202a-12-04T00:00:00Z", "2026-12-04T19:46:07.123456789+08:00:00:00:00:00:00",
         "2026-12-04T00", HASH, HASH.upper(), HASH[:-1], HASH + "0", "g" * 64, "green", "amber", "red", "Red",
         [], [""], ["a", ""], ["a", 1], [1.5, 2], [True], [None], {"a": 1}, "３０２６-12-04T00:00:00Z",
         "²０２６-12-04T00:00:00Z", 12345678901234567890]


def by_event(events: list) -> bool:
    try:
        schema._check_each_event(events)
        return True
    except schema.SchemaError:
        return False


def test_a_good_batch_passes_by_column():
    events = [good_event(i) for i in range(500)]
    assert schema._events_pass_by_column(events)
    assert by_event(events)


def test_a_bad_event_is_still_named_by_position_and_field():
    events = [good_event(i) for i in range(20)]
    events[13]["score"] = 1.5
    with pytest.raises(schema.SchemaError, match="events item 14 field 'score' has a bad value 1.5"):
        schema._check_events({"type": "events", "gateway_id": "gw-1", "seq": 1, "region": "r", "branch": "b",
                              "historical": False, "features_version": 3, "events": events})


@pytest.mark.parametrize("seed", range(4))
def test_the_column_checks_refuse_exactly_what_the_event_checks_refuse(seed):
    rng = random.Random(seed)
    disagreements, refused = [], 0
    for _ in range(1500):
        events = [good_event(i) for i in range(rng.randint(1, 12))]
        victim = rng.choice(events)
        field = rng.choice(list(schema.EVENT_FIELDS) + ["(missing)", "(not an object)"])
        if field == "(missing)":
            del victim[rng.choice(list(schema.EVENT_FIELDS))]
        elif field == "(not an object)":
            events[events.index(victim)] = rng.choice([[], "event", None, 3])
        else:
            victim[field] = rng.choice(EDGES)
        column = schema._events_pass_by_column(events)
        whole = by_event(events)
        refused += not whole
        if column and not whole:  # stored although an event is bad: the one outcome that must never happen
            disagreements.append((field, json.dumps(events, default=str)[:300]))
        if not column and whole:  # only slower, but the columns should know these too
            disagreements.append(("(refused by column only) " + field, json.dumps(events, default=str)[:300]))
    assert not disagreements, disagreements[:5]
    assert refused > 300  # the edges do hit the checks
