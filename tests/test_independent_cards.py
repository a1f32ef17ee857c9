"""The independent card world: valid SIM and account events, labelled, reproducible, and not easy."""

from collections import Counter, defaultdict
from datetime import date

import pytest

from counterguard.core.events import CARD_KINDS, TELLER_FLAGS, parse_event
from counterguard.core.identity import phone_problem, resident_id_problem
from counterguard.models.independent_cards import (
    FRAUD, FRAUD_SHARE_RANGE, LOOKALIKES, TYPOLOGIES, card_events, independent_cards, main, summary,
    young_or_elderly,
)

N = 20_000
HELD = {"sim_activation": "sims_held", "account_opening": "accounts_held"}
FORBIDDEN = {
    "sim_activation": ("account", "amount", "accounts_held", "accounts_opened_90d", "card_type"),
    "account_opening": ("account", "amount", "sims_held", "sims_requested", "number_type"),
}


@pytest.fixture(scope="module", params=CARD_KINDS)
def world(request):
    kind = request.param
    return kind, independent_cards(11, N, kind)


def _split(items):
    return [i for i in items if i["label"]], [i for i in items if not i["label"]]


def _age_from_id(customer_id: str, on: date) -> int:
    born = date(int(customer_id[6:10]), int(customer_id[10:12]), int(customer_id[12:14]))
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def test_every_event_parses_as_its_kind_in_time_order_with_unique_ids(world):
    kind, items = world
    assert len(items) == N
    ids, last = set(), None
    for item in items:
        assert set(item) == {"event", "label", "typology", "signals"}
        body = item["event"]
        event = parse_event(body)  # raises SchemaError naming the field
        assert event.kind == kind and event.event_id not in ids
        ids.add(event.event_id)
        assert event.ts.utcoffset().total_seconds() == 8 * 3600
        assert 1 <= event.counter <= 64
        assert last is None or event.ts >= last
        last = event.ts
        assert not any(name in body for name in FORBIDDEN[kind])
        assert resident_id_problem(body["customer_id"]) is None
        assert "customer_phone" not in body or phone_problem(body["customer_phone"]) is None
        if "customer_age" in body:  # the age is the identity number's birth date on the day
            assert body["customer_age"] == _age_from_id(body["customer_id"], event.ts.date())
        assert set(body.get("teller_flags", ())) <= set(TELLER_FLAGS)
    assert [i["event"]["event_id"] for i in items[:2]] == [f"{kind[:3]}11-000000", f"{kind[:3]}11-000001"]


@pytest.mark.parametrize("kind", CARD_KINDS)
def test_same_seed_same_world_another_seed_another_and_signals_never_change_the_events(kind):
    first = independent_cards(5, 2_000, kind)
    assert first == independent_cards(5, 2_000, kind)
    assert [{k: i[k] for k in ("event", "label", "typology")} for i in first] == card_events(5, 2_000, kind)
    other = independent_cards(6, 2_000, kind)
    assert [i["event"]["customer_id"] for i in other] != [i["event"]["customer_id"] for i in first]
    assert independent_cards(5, 0, kind) == []
    assert len(independent_cards(5, 333, kind)) == 333


@pytest.mark.parametrize("bad", [-1, 2.5, "100", True])
def test_a_bad_count_or_kind_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="n_events"):
        independent_cards(1, bad, "sim_activation")
    with pytest.raises(ValueError, match="kind"):
        independent_cards(1, 10, "cash_withdrawal")


def test_both_labels_every_typology_and_the_documented_fraud_share(world):
    kind, items = world
    counts = Counter(i["typology"] for i in items)
    assert set(counts) == set(TYPOLOGIES[kind])
    assert all(i["label"] == int(i["typology"] in FRAUD) for i in items)
    assert {i["label"] for i in items} == {0, 1}
    lo, hi = FRAUD_SHARE_RANGE
    assert lo <= sum(i["label"] for i in items) / len(items) <= hi
    assert counts["ordinary"] > len(items) / 2  # most traffic is ordinary


def test_fraud_persons_come_back_and_their_cards_add_up(world):
    kind, items = world
    fraud, honest = _split(items)
    visits = defaultdict(list)
    for item in fraud:
        visits[item["event"]["customer_id"]].append(item["event"])
    repeat = {pid: evs for pid, evs in visits.items() if len(evs) >= 2}
    assert len(repeat) >= 0.2 * len(visits)
    same_day_other_counter = later_day = grew_elsewhere = 0
    for evs in repeat.values():
        for a, b in zip(evs, evs[1:]):
            if a["ts"][:10] == b["ts"][:10]:
                same_day_other_counter += a["counter"] != b["counter"]
            else:
                later_day += 1
            held = HELD[kind]
            if held in a and held in b:
                assert b[held] >= a[held]  # cards once opened stay in the person's name
                gained_here = a.get("sims_requested", 1)
                grew_elsewhere += b[held] > a[held] + gained_here
    assert same_day_other_counter >= 20 and later_day >= 50 and grew_elsewhere >= 20
    # honest people come back too: retries, returning families, businesses and fleets
    honest_visits = Counter(i["event"]["customer_id"] for i in honest)
    assert sum(k >= 2 for k in honest_visits.values()) >= 200


def test_honest_look_alikes_are_there_and_look_alike(world):
    kind, items = world
    by = defaultdict(list)
    for item in items:
        by[item["typology"]].append(item["event"])
    for typology in LOOKALIKES[kind]:
        assert len(by[typology]) >= 100, typology
    share = lambda evs, test: sum(map(test, evs)) / len(evs)  # noqa: E731
    family = by["family_cards"]
    assert share(family, lambda e: e.get("for_self") is False) > 0.8
    assert share(family, lambda e: e.get("for_self") is False and e.get("purpose") not in (None, "family",
                 "student", "savings", "pension")) > 0.01  # some families look like dealers
    elderly = by["elderly_with_child"]
    assert share(elderly, lambda e: e.get("accompanied") is True) > 0.9
    assert all(e.get("customer_age", 65) >= 65 for e in elderly)
    assert all(e.get("customer_age", 20) <= 22 for e in by["student_term"])
    assert share(by["small_business"], lambda e: e.get("purpose") == "business") > 0.7
    if kind == "sim_activation":
        fleet = by["iot_fleet"]
        assert share(fleet, lambda e: e.get("number_type") == "iot") > 0.8
        assert share(fleet, lambda e: e["sims_requested"] >= 5) == 1.0
        assert share(by["carrier_switch"], lambda e: e.get("sims_held", 3) >= 3) == 1.0
    else:
        payroll = by["payroll_batch"]
        assert share(payroll, lambda e: e.get("purpose") == "salary") > 0.85
        assert share(payroll, lambda e: e.get("accompanied") is True) > 0.3
        assert share(by["rate_chaser"], lambda e: e.get("accounts_opened_90d", 1) >= 1) == 1.0


def test_no_single_sign_separates_fraud_from_honest(world):
    kind, items = world
    fraud, honest = _split(items)
    signs = {
        "for_self false": lambda e: e.get("for_self") is False,
        "accompanied true": lambda e: e.get("accompanied") is True,
        "young or elderly": young_or_elderly,
        **{f"flag {f}": (lambda e, f=f: f in e.get("teller_flags", ())) for f in TELLER_FLAGS},
    }
    for name, has in signs.items():
        caught = sum(has(i["event"]) for i in fraud) / len(fraud)
        false_alarms = sum(has(i["event"]) for i in honest) / len(honest)
        assert not (caught >= 0.9 and false_alarms <= 0.01), name
        assert caught < 0.9, name
        assert false_alarms > 0.001, name  # honest people show every sign too
    # coached recruits look ordinary: for themselves, alone, an everyday purpose, no flag
    plain = ("personal", "salary", "savings", "student", "pension")
    looks_ordinary = [i for i in fraud if i["event"].get("for_self") is True and i["event"].get("accompanied") is False
                      and i["event"].get("purpose") in plain and not i["event"].get("teller_flags")]
    assert len(looks_ordinary) >= 0.25 * len(fraud)
    # the recruits' ages: students and elderly people, and adults of every working age
    ages = Counter(i["typology"] for i in fraud if young_or_elderly(i["event"]))
    assert ages["student_recruit"] and ages["elderly_recruit"]
    assert any(30 <= i["event"].get("customer_age", 0) < 50 for i in fraud)


def test_signals_are_valid_rare_noisy_and_follow_the_person(world):
    kind, items = world
    fraud, honest = _split(items)
    for item in items:
        s = item["signals"]
        assert set(s) == {"identity", "warned", "restricted"}
        assert s["identity"] is True and isinstance(s["warned"], bool) and isinstance(s["restricted"], bool)
    warned = lambda group: sum(i["signals"]["warned"] for i in group)  # noqa: E731
    assert warned(items) < 0.02 * len(items)  # rare
    assert warned(fraud) / len(fraud) > 5 * warned(honest) / len(honest)  # more common among recruits
    assert warned(honest) >= 20  # and noisy: honest people are on it
    assert any(not i["signals"]["warned"] for i in fraud)
    sellers = [i for i in fraud if i["typology"] == "card_seller"]
    others = [i for i in fraud if i["typology"] != "card_seller"]
    restricted = lambda group: sum(i["signals"]["restricted"] for i in group) / max(1, len(group))  # noqa: E731
    assert 0.05 < restricted(sellers) < 0.8 and restricted(sellers) > 2 * restricted(others)
    assert 0 < sum(i["signals"]["restricted"] for i in honest) < 0.01 * len(honest)  # a few stale entries
    # a person, once restricted, stays restricted for the rest of the set
    state = {}
    for item in items:
        pid = item["event"]["customer_id"]
        assert not (state.get(pid) and not item["signals"]["restricted"])
        state[pid] = item["signals"]["restricted"]


def test_the_summary_and_main_report_both_kinds(capsys):
    assert main(["3", "1500"]) == 0
    out = capsys.readouterr().out
    for kind in CARD_KINDS:
        assert f"independent cards, {kind}, seed 3" in out
    for name in ("fraud share", "for_self false", "accompanied true", "young or elderly", "warned", "restricted",
                 "card_seller", "iot_fleet", "payroll_batch"):
        assert name in out
    assert main(["x"]) == 2
    assert summary([]) == "no events"
