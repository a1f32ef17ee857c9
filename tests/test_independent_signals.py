"""The independent branch's signals beyond the event: lists of persons and payees, the caring answers.

They must leave the event stream untouched, be well formed, and carry honest noise: no signal gives
fraud away on its own, and coached victims stay the hard part.
"""

import hashlib
import json
from collections import defaultdict

import pytest

from counterguard.core.dialogue import ANSWERS, SCRIPTED, SIGNALS, warning_signs
from counterguard.models.independent import OLD_TERMINAL, VICTIMS, independent_branch, summary

SEED, N = 11, 40_000
BEFORE = ("event", "label", "typology", "watchlisted")
# sha256 of json.dumps(independent_branch(11, 40_000)) (default json.dumps arguments, so key order counts)
# computed with models/independent.py as it was at commit 39d379e, before the signals existed:
#   git show 39d379e:models/independent.py > /tmp/ind_head.py, imported under another name.
EVENTS_BEFORE_SIGNALS = "024e6f87c9dbe76be7d45f8e3d710006f499f6f0c1de7a07ac172bb6d52c82af"
SIGN = {signal: "no" if signal == "knows_payee_in_person" else "yes" for signal in SIGNALS}


@pytest.fixture(scope="module")
def sample():
    return independent_branch(SEED, N)


def group(item):
    if item["typology"] == "mule_cash_out":
        return "mule"
    if item["label"]:
        return "coached" if item["coached"] else "uncoached"
    return "honest"


@pytest.fixture(scope="module")
def groups(sample):
    out = defaultdict(list)
    for item in sample:
        out[group(item)].append(item)
    return out


def sign_rate(items, signals):
    """Share of the answers to ``signals`` that are the scam's sign."""
    answers = [(s, i["signals"]["answers"][s]) for i in items for s in signals if s in i["signals"]["answers"]]
    return sum(a == SIGN[s] for s, a in answers) / len(answers)


def test_the_event_stream_is_the_same_as_before_the_signals(sample):
    before = [{key: item[key] for key in BEFORE} for item in sample]
    assert hashlib.sha256(json.dumps(before).encode()).hexdigest() == EVENTS_BEFORE_SIGNALS


def test_every_item_has_well_formed_signals(sample):
    for item in sample:
        assert set(item) == set(BEFORE) | {"signals", "coached"}
        seen = item["signals"]
        assert set(seen) == {"identity", "warned", "restricted", "payee_listed", "answers"}
        for name in ("identity", "warned", "restricted", "payee_listed"):
            assert type(seen[name]) is bool, name
        transfer = item["event"]["kind"] == "transfer_out"
        # Every question, in the teller's order; "have you met the payee" only for a transfer.
        assert list(seen["answers"]) == [s for s in SIGNALS if transfer or s != "knows_payee_in_person"]
        assert set(seen["answers"].values()) <= set(ANSWERS)
        assert type(item["coached"]) is bool


def test_coached_only_for_victims_and_about_half_of_them(sample, groups):
    assert not any(item["coached"] for item in sample if not item["label"] or item["typology"] == "mule_cash_out")
    victims = groups["coached"] + groups["uncoached"]
    assert {i["typology"] for i in groups["coached"]} == set(VICTIMS)
    assert 0.3 <= len(groups["coached"]) / len(victims) <= 0.7


def test_no_list_of_persons_without_the_identity_and_no_payee_list_without_a_transfer(sample):
    for item in sample:
        seen, event = item["signals"], item["event"]
        if not seen["identity"]:
            assert not seen["warned"] and not seen["restricted"]
        if event["counter"] == OLD_TERMINAL:  # older firmware: no identity, no payee fields
            assert not seen["identity"] and not seen["payee_listed"]
        if event["kind"] != "transfer_out":
            assert not seen["payee_listed"]
    current = [i for i in sample if i["event"]["counter"] != OLD_TERMINAL]
    skipped = sum(not i["signals"]["identity"] for i in current) / len(current)
    assert 0.02 <= skipped <= 0.15  # tellers skip it now and then on a current terminal too


def test_the_warned_list_covers_some_victims_and_honest_people_too(sample):
    victims = [i for i in sample if i["typology"] in VICTIMS]
    warned = sum(i["signals"]["warned"] for i in victims) / len(victims)
    assert 0.05 <= warned <= 0.6
    # Honest people on it, among them people never defrauded in this set.
    defrauded = {i["event"]["account"] for i in sample if i["label"]}
    honest_warned = [i for i in sample if not i["label"] and i["signals"]["warned"]]
    assert len({i["event"]["account"] for i in honest_warned if i["event"]["account"] not in defrauded}) >= 10
    # Some victims are warned before the scam brings them to the counter, some only later.
    first = {}
    for item in victims:
        first.setdefault(item["event"]["account"], item)
    assert any(item["signals"]["warned"] for item in first.values())
    assert any(item["signals"]["warned"] and item is not first[item["event"]["account"]] and
               not first[item["event"]["account"]]["signals"]["warned"] and
               first[item["event"]["account"]]["signals"]["identity"] for item in victims)
    # Mule account holders are not victims: never warned.
    assert not any(i["signals"]["warned"] for i in sample if i["typology"] == "mule_cash_out")


def test_a_warned_entry_belongs_to_the_person_and_lasts(sample):
    """A list entry has a start and an expiry: a warned person is warned on visit after visit, and a
    person's visits go from not warned to warned and back only a few times."""
    by_person = defaultdict(list)
    for item in sample:
        if item["signals"]["identity"]:
            by_person[item["event"]["account"]].append(item["signals"]["warned"])
    warned_people = [v for v in by_person.values() if any(v)]
    assert len(warned_people) >= 30
    assert sum(sum(v) for v in warned_people) / len(warned_people) >= 2
    changes = [sum(a != b for a, b in zip(v, v[1:])) for v in warned_people]
    assert sum(changes) / len(changes) <= 3


def test_the_restricted_list_holds_some_mule_holders_and_a_few_stale_entries(sample):
    mules = [i for i in sample if i["typology"] == "mule_cash_out" and i["signals"]["identity"]]
    restricted = sum(i["signals"]["restricted"] for i in mules) / len(mules)
    assert 0.03 <= restricted <= 0.5
    honest = [i for i in sample if not i["label"]]
    assert 0 < sum(i["signals"]["restricted"] for i in honest) <= len(honest) * 0.005
    # Per person: a restricted holder is restricted on every visit the identity was sent.
    state = defaultdict(set)
    for item in sample:
        if item["signals"]["identity"]:
            state[item["event"]["account"]].add(item["signals"]["restricted"])
    assert all(len(s) == 1 for s in state.values())


def test_the_payee_list_catches_some_fraud_payees_and_almost_no_honest_ones(sample):
    fraud = [i for i in sample if i["label"] and i["event"]["kind"] == "transfer_out"
             and i["event"]["counter"] != OLD_TERMINAL]
    honest = [i for i in sample if not i["label"] and i["event"]["kind"] == "transfer_out"]
    listed = sum(i["signals"]["payee_listed"] for i in fraud) / len(fraud)
    assert 0.05 <= listed <= 0.6
    assert sum(i["signals"]["payee_listed"] for i in honest) <= len(honest) * 0.002


def test_coached_victims_admit_the_script_far_less_than_uncoached_ones(groups):
    coached, uncoached = sign_rate(groups["coached"], SCRIPTED), sign_rate(groups["uncoached"], SCRIPTED)
    assert uncoached >= 0.3 and coached <= uncoached / 2
    caller = ["told_to_by_caller"]
    assert sign_rate(groups["coached"], caller) < sign_rate(groups["uncoached"], caller) / 2
    # Coached victims decline more than uncoached ones.
    declined = lambda items: sum(a == "declined" for i in items for a in i["signals"]["answers"].values())  # noqa: E731
    per_event = lambda items: declined(items) / len(items)  # noqa: E731
    assert per_event(groups["coached"]) > per_event(groups["uncoached"])
    # The hard part: many coached victims' answers show no warning sign at all; few uncoached ones.
    clean = lambda items: sum(not warning_signs(i["signals"]["answers"]) for i in items) / len(items)  # noqa: E731
    assert clean(groups["coached"]) >= 0.3
    assert clean(groups["uncoached"]) <= 0.15
    # Not every uncoached victim tells it all either.
    assert sign_rate(groups["uncoached"], ["told_to_by_caller"]) < 0.95


def test_mule_holders_mostly_lie_but_some_admit_doing_it_for_someone_else(groups):
    mules = groups["mule"]
    assert sign_rate(mules, SCRIPTED) <= 0.3
    admits = sign_rate(mules, ["buying_for_someone"])
    assert 0.1 <= admits <= 0.7 and admits > sign_rate(mules, ["told_to_by_caller"])


def test_honest_customers_give_the_signs_for_honest_reasons(sample, groups):
    honest = groups["honest"]
    for signal in SIGNALS:
        assert sum(i["signals"]["answers"].get(signal) == SIGN[signal] for i in honest) >= 5, signal
    assert any(a == "declined" for i in honest for a in i["signals"]["answers"].values())
    by_typology = defaultdict(list)
    for item in honest:
        by_typology[item["typology"]].append(item)
    assert sign_rate(by_typology["family_emergency"], ["told_to_by_caller"]) > 0.2
    assert sign_rate(by_typology["elderly_family"], ["buying_for_someone"]) > 0.3
    assert sign_rate(by_typology["own_investment"], ["promised_returns"]) > 0.1
    assert sign_rate(by_typology["house_purchase"], ["knows_payee_in_person"]) > 0.3
    assert sign_rate(by_typology["ordinary"], SCRIPTED) < 0.02  # but most answer reassuringly


def test_no_signal_separates_fraud_by_itself(sample):
    honest = [i for i in sample if not i["label"]]
    fraud = [i for i in sample if i["label"]]
    for name in ("warned", "restricted", "payee_listed"):
        assert any(i["signals"][name] for i in honest), name
        assert not all(i["signals"][name] for i in fraud), name
    for signal in SIGNALS:
        assert any(i["signals"]["answers"].get(signal) == SIGN[signal] for i in honest), signal
        asked = [i for i in fraud if signal in i["signals"]["answers"]]
        assert not all(i["signals"]["answers"][signal] == SIGN[signal] for i in asked), signal


def test_the_same_seed_gives_the_same_signals_and_another_seed_others():
    first = independent_branch(5, 3_000)
    assert first == independent_branch(5, 3_000)
    other = independent_branch(6, 3_000)
    assert [i["signals"] for i in other] != [i["signals"] for i in first]


def test_summary_reports_the_signals(sample):
    text = summary(sample[:10_000])
    for words in ("identity sent", "warned persons", "restricted persons", "stop-payment list",
                  "victims, coached", "victims, uncoached", "mule holders", "honest ("):
        assert words in text, words
