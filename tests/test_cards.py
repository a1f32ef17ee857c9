"""The "two cards" at the counter: SIM card activations at a carrier's outlet and account openings at
a bank's desk, validated like every event, scored by their rule book, kept to their sector, and a
person a carrier restricted is red when they open an account at a bank (real pipeline, real SQLite)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from counterguard.core import wire
from counterguard.core.clock import Clock
from counterguard.core.events import SchemaError, parse_event
from counterguard.core.features import Visits, summarise_visits
from counterguard.core.identity import identity_hash
from counterguard.core.lists import RESTRICTED
from counterguard.gateway.counter.pipeline import Pipeline
from counterguard.gateway.scoring.assessor import Assessor
from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.gateway.scoring.person_lists import PersonLists
from counterguard.gateway.scoring.watchlist import Watchlist
from counterguard.gateway.store.db import Store

MODEL = FraudModel.load(default_model_path())
KEY = bytes(range(32))
STUDENT, PARENT, DEALER = "110105200501010012", "110105197501010018", "440306198001010028"
TODAY = date.today().isoformat()
_n = 0


def sim(customer=STUDENT, **fields):
    global _n
    _n += 1
    return {"event_id": f"sim-{_n}", "ts": f"{TODAY}T10:{_n % 60:02d}:00+08:00", "counter": 1,
            "kind": "sim_activation", "customer_id": customer, "sims_requested": 1, **fields}


def opening(customer=DEALER, **fields):
    global _n
    _n += 1
    return {"event_id": f"acct-{_n}", "ts": f"{TODAY}T11:{_n % 60:02d}:00+08:00", "counter": 2,
            "kind": "account_opening", "customer_id": customer, **fields}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "gateway.db") as s:
        yield s


def pipeline(store, sector: str) -> Pipeline:
    assessor = Assessor(store, Watchlist(store, KEY, key_version=1), MODEL, MODEL.thresholds,
                        persons=PersonLists(store))
    return Pipeline(assessor, gateway_id=f"gw-{sector}", clock=Clock(assume_synced=True), sector=sector)


def send(p: Pipeline, body: dict, seq: int = 1) -> wire.Frame:
    [item] = wire.FrameDecoder().feed(wire.encode_frame("EVT", seq, body))
    [reply] = wire.FrameDecoder().feed(p.process([item]).replies)
    return reply


def test_a_student_sent_by_a_helper_for_five_cards_is_red_and_a_family_buying_two_is_green(store):
    carrier = pipeline(store, "carrier")
    red = send(carrier, sim(customer_age=19, sims_held=1, sims_requested=5, for_self=False, accompanied=True,
                            purpose="personal"))
    assert red.type == "ACK" and red.body["level"] == "red"
    assert {"not_for_self", "accompanied_by_helper", "over_card_limit", "young_or_elderly"} <= set(red.body["reasons"])
    family = send(carrier, sim(PARENT, customer_age=48, sims_held=1, sims_requested=2, for_self=False,
                               accompanied=False, purpose="family"), 2)
    assert (family.type, family.body["level"]) == ("ACK", "green")
    # The same person back for more cards the same day is counted across counters: the person is the key.
    again = send(carrier, sim(PARENT, customer_age=48, sims_held=3, sims_requested=3, for_self=True,
                              purpose="personal"), 3)
    assert again.body["level"] == "red" and {"cards_today", "over_card_limit"} <= set(again.body["reasons"])


def test_each_sector_takes_its_own_kinds_and_names_the_other(store):
    carrier, bank = pipeline(store, "carrier"), pipeline(store, "bank")
    withdrawal = {"event_id": "w-1", "ts": f"{TODAY}T09:00:00+08:00", "counter": 1, "kind": "cash_withdrawal",
                  "account": "6222020200000000101", "amount": 500}
    refused = send(carrier, withdrawal)
    assert (refused.type, refused.body["code"], refused.body["field"]) == ("NAK", "schema", "kind")
    assert "takes sim_activation" in refused.body["detail"] and "belongs to a bank gateway" in refused.body["detail"]
    refused = send(bank, sim(sims_requested=1), 2)
    assert (refused.type, refused.body["field"]) == ("NAK", "kind") and "carrier gateway" in refused.body["detail"]
    assert send(bank, opening(customer_age=40, accounts_held=1, accounts_opened_90d=0, for_self=True,
                              card_type="type_i", purpose="salary"), 3).body["level"] == "green"
    assert send(bank, withdrawal, 4).type == "ACK"


def test_a_person_a_carrier_restricted_is_red_when_opening_a_bank_account(store):
    bank = pipeline(store, "bank")
    persons = bank.assessor.persons
    persons.apply(RESTRICTED, {"version": 1, "full": True, "add": [[identity_hash(KEY, "resident_id", DEALER),
                                                                    "carrier", TODAY,
                                                                    (date.today() + timedelta(days=365)).isoformat()]]})
    reply = send(bank, opening(customer_age=35, accounts_held=1, for_self=True, purpose="savings"))
    assert reply.body["level"] == "red" and reply.body["reasons"][0] == "restricted_person"
    with store.batch():
        kept = store._conn.execute("SELECT payload, account FROM events WHERE event_id = ?",
                                   (reply.body["event_id"],)).fetchone()
    assert DEALER not in kept[0] and kept[1] == identity_hash(KEY, "resident_id", DEALER)


@pytest.mark.parametrize("body, field", [
    (sim(amount=5), "amount"),
    (sim(account="6222020200000000101"), "account"),
    ({**sim(), "customer_id": None}, "customer_id"),
    ({**sim(), "sims_requested": None}, "sims_requested"),
    (sim(sims_requested=0), "sims_requested"),
    (sim(sims_requested=1, purpose="salary"), "purpose"),
    (sim(sims_requested=1, number_type="satellite"), "number_type"),
    (sim(sims_requested=1, for_self="yes"), "for_self"),
    (sim(sims_requested=1, accounts_held=2), "accounts_held"),
    (opening(sims_held=2), "sims_held"),
    (opening(card_type="platinum"), "card_type"),
    (opening(customer_id="110105194912310021"), "customer_id"),
    ({"event_id": "w", "ts": f"{TODAY}T09:00:00+08:00", "counter": 1, "kind": "cash_withdrawal",
      "account": "6222020200000000101", "amount": 5, "sims_held": 1}, "sims_held"),
])
def test_a_wrong_card_field_is_named(body, field):
    with pytest.raises(SchemaError) as caught:
        parse_event({k: v for k, v in body.items() if v is not None}, KEY)
    assert caught.value.field == field


def test_a_card_event_goes_to_the_centre_for_learning_keyed_by_the_person(store):
    import json

    from counterguard.gateway.link.upload import EventUpload

    carrier = pipeline(store, "carrier")
    reply = send(carrier, sim(customer_age=19, sims_requested=5, for_self=False, accompanied=True))
    upload = EventUpload(store, carrier.assessor.watchlist.hash, gateway_id="gw-carrier", batch_events=10)
    seq = upload.queue_next()
    row = next(r for r in store.outbox_pending(10, republish_after_s=0) if r.seq == seq)
    text = upload.body(row.payload)
    [sent] = json.loads(text)["events"]
    assert sent["kind"] == "sim_activation" and sent["level"] == reply.body["level"] == "red"
    assert sent["account_hash"] == identity_hash(KEY, "resident_id", STUDENT) and STUDENT not in text
    assert sent["features"] is None  # the withdrawal model's inputs do not apply to cards


def test_a_card_alert_asks_the_cards_own_general_questions_and_a_withdrawal_the_bank_ones(tmp_path):
    from counterguard.gateway.questions import QuestionsError, load_questions

    questions = load_questions()
    card = [q.key for q in questions.shown(["not_for_self", "accompanied_by_helper"], 6)]
    money = [q.key for q in questions.shown(["large_cash", "customer_on_phone"], 6)]
    assert "general_cards.1" in card and not any(k.startswith("general.") for k in card)
    assert "general.1" in money and not any(k.startswith("general_cards") for k in money)
    # "Who asked you for this money?" is not put to someone opening a SIM card.
    assert not any("money" in q.en for q in questions.shown(["over_card_limit"], 6))
    # Their answers give signals too: "offered to pay you" is doing it for someone else.
    assert questions.signal_answers(["over_card_limit"], {"general_cards.1": "yes"}) == {"buying_for_someone": "yes"}
    own = tmp_path / "questions.toml"
    own.write_text('[general_cards]\nen = ["Who sent you?"]\nsignals = ["told_to_by_caller", "promised_returns"]\n')
    with pytest.raises(QuestionsError, match="general_cards.signals: has 2 signals for 1 questions"):
        load_questions(own)


# -- a person's earlier visits and the persons behind one phone number ------------------------------
DAYS = 86_400.0


def test_visits_count_only_earlier_days_in_their_windows():
    now = 1_000 * DAYS
    prior = [(now, 1, 1), (now - 1, 2, 1), (now - 3 * DAYS, 1, 2), (now - 91 * DAYS, 0, 1), (now + 5, 9, 9)]
    phones = [(now - 10, "dealer-2"), (now - 29 * DAYS, "dealer-3"), (now - 31 * DAYS, "dealer-4"),
              (now - 20, "me"), (now, "dealer-5")]
    visits = summarise_visits(prior, phones, now, held=7, person="me")
    # Two visits in the window (not this second's, not 91 days ago, not later); the last one a second ago
    # held 2 and asked for 1, so 4 of the 7 held now came from elsewhere.
    assert visits == Visits(visits_90d=2, days_since_last=1 / DAYS, cards_gained_elsewhere=4, others_on_phone_30d=2)
    assert summarise_visits([], [], now, held=3, person="me") == Visits()
    assert summarise_visits(prior[2:3], [], now, held=None, person="me").cards_gained_elsewhere == 0


def test_a_phone_behind_other_persons_and_cards_opened_elsewhere_are_signs_of_a_dealer(store):
    carrier = pipeline(store, "carrier")
    phone = "13912345678"
    recruits = ["110105200401010015", "110105200402020012", "11010520040303001X"]
    first = send(carrier, sim(recruits[0], customer_age=30, sims_held=0, customer_phone=phone, for_self=True,
                              purpose="personal"), 1)
    second = send(carrier, sim(recruits[1], customer_age=30, sims_held=0, customer_phone=phone, for_self=True,
                               purpose="personal"), 2)
    assert first.body["level"] == second.body["level"] == "green"  # one other person on a number: a family's
    third = send(carrier, sim(recruits[2], customer_age=30, sims_held=0, customer_phone=phone, for_self=True,
                              purpose="personal"), 3)
    assert (third.body["level"], third.body["reasons"]) == ("amber", ["shared_phone"])
    fourth = send(carrier, sim(PARENT, customer_age=45, sims_held=0, customer_phone=phone, accompanied=True,
                               purpose="personal"), 4)
    assert fourth.body["level"] == "red" and {"shared_phone", "accompanied_by_helper"} <= set(fourth.body["reasons"])

    # A person back on a later day holding more cards than they left with: a dealer's round.
    earlier = (date.today() - timedelta(days=6)).isoformat()
    back = sim(DEALER, customer_age=30, sims_held=1, sims_requested=1, for_self=True, purpose="personal")
    back["ts"] = f"{earlier}T10:00:00+08:00"
    assert send(carrier, back, 5).body["level"] == "green"
    again = send(carrier, sim(DEALER, customer_age=30, sims_held=4, sims_requested=1, for_self=True,
                              purpose="personal"), 6)
    assert (again.body["level"], again.body["reasons"]) == ("amber", ["cards_elsewhere", "back_for_more"])
    # A family back for its next cards is not a sign.
    family = sim(STUDENT, customer_age=48, sims_held=1, sims_requested=2, for_self=False, purpose="family")
    family["ts"] = f"{earlier}T11:00:00+08:00"
    send(carrier, family, 7)
    assert send(carrier, sim(STUDENT, customer_age=48, sims_held=3, sims_requested=1, for_self=False,
                             purpose="family"), 8).body["level"] == "green"


@pytest.mark.parametrize("kind", ["sim_activation", "account_opening"])
def test_the_gateway_and_the_card_study_give_every_card_event_the_same_verdict(store, kind):
    # The study's rule book (models/cards_study.py: replayed history and VisitBook) must be the
    # gateway's (the store's history and card_visits), or its figures are not the counter's.
    from counterguard.core.cards import decide_card
    from counterguard.core.features import NO_HITS
    from counterguard.models.independent_cards import independent_cards
    from counterguard.models.train import VisitBook, replay_items

    items = independent_cards(11, 2500, kind)
    gateway = pipeline(store, "carrier" if kind == "sim_activation" else "bank")
    book = VisitBook()
    studied = [decide_card(event, history, NO_HITS, book.see(event))
               for event, history, _ in replay_items(items, KEY)]
    replies = [send(gateway, item["event"], n + 1).body for n, item in enumerate(items)]
    assert [(r["level"], r["reasons"]) for r in replies] == [(v.level, list(v.reasons)) for v in studied]
    visit_signs = {"shared_phone", "cards_elsewhere", "back_for_more"}
    assert sum(bool(visit_signs & set(r["reasons"])) for r in replies) > 20  # the world has dealers' rounds
