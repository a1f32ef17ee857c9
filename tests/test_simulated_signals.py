"""What the counter knows beyond the transaction, in the simulator: the lists of persons and the
customer's answers, with honest noise, drawn apart from the events so the event stream stays the same."""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter

import pytest

from counterguard.core.dialogue import ANSWERS, SCRIPTED, SIGNALS
from counterguard.models.simulate import SimConfig, counter_signals, random_world, simulate


@pytest.fixture(scope="module")
def items():
    return simulate(7, 60_000)


def test_the_signals_leave_the_simulated_events_as_they_were(items):
    # sha256 of json.dumps([item["event"] for the first 5,000 items of seed 7], sort_keys=True) and of the
    # labels, typologies and watchlist marks, taken with the simulator before it had any signals.
    head = items[:5000]
    assert hashlib.sha256(json.dumps([i["event"] for i in head], sort_keys=True).encode()).hexdigest() == \
        "741bf427ef7c1dccc6d256a52a23e22c0cc4045151654950654c13f6f17bb6a1"
    assert hashlib.sha256(json.dumps([[i["label"], i["typology"], i["watchlisted"]] for i in head]).encode()
                          ).hexdigest() == "1ae4c043dd02f22bd60e83629f70570ae0bc4f14df6995f678eeb2fad9a25ca3"
    again = copy.deepcopy(items[:3000])
    counter_signals(again, 99, SimConfig())  # other draws: other signals, the same events
    assert [i["event"] for i in again] == [i["event"] for i in items[:3000]]
    assert [i["signals"] for i in again] != [i["signals"] for i in items[:3000]]
    assert [i["signals"] for i in simulate(7, 3000)] == [i["signals"] for i in items[:3000]]


def test_the_signals_are_noisy_as_at_a_real_counter(items):
    victims = [i for i in items if i["typology"] in ("safe_account", "investment_scam")]
    honest = [i for i in items if not i["label"]]
    for i in items:
        s = i["signals"]
        assert set(s["answers"]) <= set(SIGNALS) and set(s["answers"].values()) <= set(ANSWERS)
        assert s["identity"] or not (s["warned"] or s["restricted"])  # no identity, no list of persons
        assert ("knows_payee_in_person" in s["answers"]) == (i["event"]["kind"] == "transfer_out")
        assert not s["payee_listed"] or i["event"]["kind"] == "transfer_out"
    warned = sum(i["signals"]["warned"] for i in victims) / len(victims)
    assert 0.15 < warned < 0.6  # the police know some victims, not all
    assert sum(i["signals"]["warned"] for i in honest) > 50  # and warn people who are never defrauded

    def scripted_yes(group):
        return sum(any(i["signals"]["answers"].get(s) == "yes" for s in SCRIPTED) for i in group) / len(group)

    coached = [i for i in victims if i["coached"]]
    plain = [i for i in victims if not i["coached"]]
    assert len(coached) > 50 and scripted_yes(coached) < scripted_yes(plain) - 0.15  # coached victims lie
    assert 0.01 < scripted_yes(honest) < 0.2  # and some honest customers say yes for honest reasons
    declined = Counter(a for i in coached for a in i["signals"]["answers"].values())["declined"]
    assert declined > 0
    assert not any(i["coached"] for i in honest)


def test_every_world_draws_its_own_signal_habits():
    a, b = random_world(1), random_world(2)
    assert (a.warned_coverage, a.coached_lie, a.identity_share) != (b.warned_coverage, b.coached_lie, b.identity_share)
    with pytest.raises(ValueError, match="warned_coverage"):
        SimConfig(warned_coverage=1.5)
