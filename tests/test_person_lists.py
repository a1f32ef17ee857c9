"""The centre's lists of persons at the gateway: warned persons (at least amber) and restricted persons
(red), matched on the keyed hashes the validator made, versioned, atomic, expiring by themselves."""

from __future__ import annotations

import secrets
from datetime import date, timedelta

import pytest

from counterguard.core import manifest as signed
from counterguard.core.events import parse_event
from counterguard.core.features import FEATURE_NAMES, V2_FEATURES, pad_row
from counterguard.core.identity import identity_hash
from counterguard.core.lists import RESTRICTED, WARNED, check_entry
from counterguard.gateway.link.downlink import Downlink
from counterguard.gateway.scoring.assessor import Assessor
from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.gateway.scoring.person_lists import ListRejected, PersonLists
from counterguard.gateway.scoring.watchlist import Watchlist
from counterguard.gateway.store.db import Store

KEY = bytes(range(32))
RESIDENT = "11010519491231002X"
PHONE = "13800138000"
TODAY = date.today()


def day(offset: int = 0) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


def entry(hashed=None, label="investment", start=-30, end=60):
    return [hashed or secrets.token_hex(32), label, day(start), day(end)]


def full(version, entries, **extra):
    return {"version": version, "full": True, "add": entries, **extra}


def delta(version, base, add=(), remove=()):
    return {"version": version, "full": False, "base_version": base, "add": list(add), "remove": list(remove)}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "gateway.db") as s:
        yield s


def test_an_entry_matches_only_on_the_days_it_is_in_force(store):
    lists = PersonLists(store)
    now, gone, soon = entry(), entry(start=-90, end=-1), entry(start=1, end=30)
    lists.apply(WARNED, full(1, [now, gone, soon]))
    today = TODAY.toordinal()
    assert lists.match(WARNED, now[0], today) == "investment"
    assert lists.match(WARNED, gone[0], today) is None, "an expired warning still matched"
    assert lists.match(WARNED, soon[0], today) is None and lists.match(WARNED, soon[0], today + 1) == "investment"
    assert lists.match(WARNED, secrets.token_hex(32), today) is None
    assert lists.match(RESTRICTED, now[0], today) is None  # one list is not the other


def test_deltas_apply_on_their_base_and_out_of_order_or_gapped_ones_change_nothing(store):
    lists = PersonLists(store)
    a, b, c = entry(), entry(), entry(label="safe_account")
    lists.apply(WARNED, full(1, [a, b]))
    result = lists.apply(WARNED, delta(2, 1, add=[c], remove=[a[0]]))
    assert (result.version, result.size, result.added, result.removed) == (2, 2, 1, 1)
    today = TODAY.toordinal()
    assert lists.match(WARNED, a[0], today) is None and lists.match(WARNED, c[0], today) == "safe_account"
    with pytest.raises(ListRejected, match="not newer"):
        lists.apply(WARNED, delta(2, 1, add=[a]))  # a replay of version 2
    with pytest.raises(ListRejected, match="based on version 3 but this gateway holds version 2"):
        lists.apply(WARNED, delta(4, 3, add=[a]))  # version 3 was missed
    assert lists[WARNED].status() == {"version": 2, "size": 2, "gap": "delta v4 is based on v3 but v2 is held"}
    assert lists.match(WARNED, a[0], today) is None, "a refused delta changed the list"
    lists.apply(WARNED, full(5, [a]))  # the centre answers a gap with a full list
    assert lists[WARNED].status() == {"version": 5, "size": 1}
    # An entry added again replaces its old self (a longer warning, another category).
    lists.apply(WARNED, delta(6, 5, add=[[a[0], "loan", day(-1), day(400)]]))
    assert lists.match(WARNED, a[0], today + 300) == "loan" and len(lists[WARNED]) == 1


def test_a_full_list_in_parts_replaces_the_old_one_only_when_the_last_part_has_come(store):
    lists = PersonLists(store)
    old = entry(label="police")
    lists.apply(RESTRICTED, full(3, [old]))
    parts = [[entry(label="carrier") for _ in range(4)] for _ in range(3)]
    today = TODAY.toordinal()
    for n in (1, 3):  # out of order is fine; the list in force stays whole meanwhile
        result = lists.apply(RESTRICTED, full(4, parts[n - 1], part=n, parts=3))
        assert result.waiting_parts > 0 and lists[RESTRICTED].version == 3
        assert lists.match(RESTRICTED, old[0], today) == "police", "the old list went before the new one was whole"
    result = lists.apply(RESTRICTED, full(4, parts[1], part=2, parts=3))
    assert (result.version, result.size, result.waiting_parts) == (4, 12, 0)
    assert lists.match(RESTRICTED, old[0], today) is None
    assert all(lists.match(RESTRICTED, e[0], today) == "carrier" for p in parts for e in p)


def test_lists_survive_a_restart_and_expired_entries_are_dropped_from_the_store(tmp_path):
    path = tmp_path / "gateway.db"
    kept, gone = entry(), entry(start=-40, end=-2)
    with Store(path) as store:
        lists = PersonLists(store)
        lists.apply(WARNED, full(7, [kept, gone]))
        assert lists.match(WARNED, gone[0], TODAY.toordinal()) is None  # held, but no longer matching
    with Store(path) as store:
        lists = PersonLists(store)
        assert lists[WARNED].version == 7 and len(lists[WARNED]) == 1
        assert lists.match(WARNED, kept[0], TODAY.toordinal()) == "investment"
        assert store.person_entries_count(WARNED) == 1


@pytest.mark.parametrize("bad, says", [
    ([RESIDENT, "investment", day(), day(1)], "64 lowercase hex digits"),
    ([secrets.token_hex(32), "lottery", day(), day(1)], "category 'lottery' is not one of"),
    ([secrets.token_hex(32), "investment", "2026-02-30", day(1)], "not a calendar day"),
    ([secrets.token_hex(32), "investment", day(5), day(1)], "is before from"),
    ([secrets.token_hex(32), "investment"], "[hash, label, from, until]"),
])
def test_a_bad_entry_is_refused_by_its_place_and_nothing_changes(store, bad, says):
    lists = PersonLists(store)
    good = entry()
    lists.apply(WARNED, full(1, [good]))
    with pytest.raises(ListRejected) as caught:
        lists.apply(WARNED, delta(2, 1, add=[entry(), bad]))
    assert '"add" item 2' in str(caught.value) and says in str(caught.value)
    assert lists[WARNED].version == 1 and len(lists[WARNED]) == 1
    assert RESIDENT not in str(caught.value)


def _assessor(store):
    model = FraudModel.load(default_model_path())
    watchlist = Watchlist(store, KEY, key_version=1)
    return Assessor(store, watchlist, model, model.thresholds, persons=PersonLists(store))


def _event(n, amount=2000, **extra):
    body = {"event_id": f"ev-{n}", "ts": f"{TODAY.isoformat()}T10:00:00+08:00", "counter": 1,
            "kind": "cash_withdrawal", "account": "6222020200000000101", "amount": amount, "customer_age": 40,
            "account_age_days": 3000, "balance_before": 100000, "purpose": "daily", **extra}
    return parse_event(body, KEY)


def test_a_restricted_customer_is_red_and_a_warned_one_asked_the_caring_questions(store):
    assessor = _assessor(store)
    persons = assessor.persons
    persons.apply(RESTRICTED, full(1, [[identity_hash(KEY, "resident_id", RESIDENT), "carrier", day(-5), day(300)]]))
    persons.apply(WARNED, full(1, [[identity_hash(KEY, "phone", PHONE), "impersonating_police", day(-1), day(30)]]))
    plain = assessor.assess(_event(1))
    restricted = assessor.assess(_event(2, customer_id=RESIDENT.lower()))
    warned = assessor.assess(_event(3, customer_phone=PHONE))
    warned_large = assessor.assess(_event(4, amount=30000, customer_phone=PHONE))
    assert plain.level == "green"
    assert restricted.level == "red" and restricted.reasons[0] == "restricted_person"
    assert warned.level == "amber" and warned.reasons[0] == "warned_person"
    assert warned_large.level == "red" and warned_large.reasons[0] == "warned_person"
    # The same phone hashed as an identity number is another value: lists never cross kinds.
    assert assessor.assess(_event(5, customer_id="E13800138000", customer_id_type="other")).level == "green"


def test_a_signed_list_reaches_the_scorer_through_the_downlink_and_a_forged_one_does_not(store, tmp_path):
    assessor = _assessor(store)
    key = signed.generate_signing_key()
    root = "counterguard/v1/east/b1/gw-1"
    downlink = Downlink(store, assessor, public_key=key.public_key(), root=root, region="east",
                        state_dir=tmp_path / "downlink")
    hashed = identity_hash(KEY, "resident_id", RESIDENT)
    body = {"kind": RESTRICTED, "version": 1, "issued_at": "2026-12-04T09:00:00Z", "target": "all",
            "hash": signed.HASH_NAME, "key_version": 1, "full": True, "add": [[hashed, "police", day(-1), day(90)]]}
    topic = f"{signed.PREFIX}/all/manifest/{RESTRICTED}"
    forged = signed.sign_envelope(body, signed.generate_signing_key())
    assert downlink.handle(topic, forged) == "rejected" and assessor.persons[RESTRICTED].version == 0
    other_key = signed.sign_envelope({**body, "key_version": 2}, key)
    assert downlink.handle(topic, other_key) == "rejected", "entries hashed under another alliance key were taken"
    assert downlink.handle(topic, signed.sign_envelope(body, key)) == "applied"
    assert assessor.assess(_event(1, customer_id=RESIDENT)).level == "red"
    assert downlink.fields()["lists"][RESTRICTED] == {"version": 1, "size": 1}
    assert downlink.handle(topic, signed.sign_envelope(body, key)) == "replay"


def test_an_entry_is_checked_the_same_way_at_both_ends():
    hashed = secrets.token_hex(32)
    assert check_entry(WARNED, [hashed, "safe_account", "2026-12-01", "2026-12-31"])[1:] == (
        "safe_account", date(2026, 12, 1).toordinal(), date(2026, 12, 31).toordinal())
    assert check_entry(RESTRICTED, [hashed, "bank", "2026-12-01", "2026-12-01"])[0] == hashed  # one day is fine


def test_after_many_random_deltas_the_list_holds_exactly_what_was_sent(store):
    import random

    rng = random.Random(20261204)
    lists, held = PersonLists(store), {}
    version = 0
    for _ in range(30):
        add = [entry(rng.choice(list(held)) if held and rng.random() < 0.2 else None,
                     label=rng.choice(["investment", "loan", "romance"])) for _ in range(rng.randrange(0, 40))]
        remove = rng.sample(sorted(held), min(len(held), rng.randrange(0, 15)))
        remove = [h for h in remove if h not in {a[0] for a in add}]
        version += 1
        lists.apply(WARNED, delta(version, version - 1, add=add, remove=remove))
        for h in remove:
            held.pop(h)
        held.update({a[0]: a[1] for a in add})
    today = TODAY.toordinal()
    assert len(lists[WARNED]) == len(held)
    assert all(lists.match(WARNED, h, today) == label for h, label in held.items())
    with Store(store.path) as again:  # and the store agrees with memory
        assert {h: PersonLists(again).match(WARNED, h, today) for h in held} == held


def test_a_terminal_without_v2_fields_scores_as_the_model_alone_and_no_list_hit_is_only_checked(store):
    """Without v2 fields the lists and the answers are unknown, and the row says so (their columns at
    0, exactly a version-2 row padded); a customer looked up and found on no list differs from that
    in one column only, "persons_checked"."""
    from counterguard.models.simulate import simulate

    assessor = _assessor(store)
    assessor.persons.apply(WARNED, full(1, [entry() for _ in range(50)]))  # other people
    checked = FEATURE_NAMES.index("persons_checked")
    for n, item in enumerate(simulate(5, 300)):
        v1 = parse_event(item["event"], KEY)
        with_who = parse_event({**item["event"], "event_id": f"who-{n}", "customer_id": RESIDENT}, KEY)
        first, second = assessor.assessment(v1), assessor.assessment(with_who)
        assert first.features == pad_row(first.features[:V2_FEATURES]), item
        assert first.verdict.score == assessor.model.score(first.features)
        assert [i for i, (a, b) in enumerate(zip(first.features, second.features)) if a != b] == [checked], item
        assert second.verdict.score == assessor.model.score(second.features)
