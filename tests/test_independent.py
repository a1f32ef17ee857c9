"""The independent evaluation branch: valid schema v1 events, labelled, reproducible, and hard."""

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from counterguard.core.events import TELLER_FLAGS, parse_event
from counterguard.models.independent import FRAUD, TYPOLOGIES, independent_branch, unflagged_ordinary_purpose

ROOT = Path(__file__).resolve().parent.parent
NAMED = ("safe_account", "mule_cash_out", "investment_scam", "ordinary", "business_cash", "trader_cash",
         "house_purchase", "medical_bill", "elderly_family", "family_emergency", "own_investment")


@pytest.fixture(scope="module")
def sample():
    return independent_branch(11, 30_000)


@pytest.fixture(scope="module")
def honest(sample):
    return [item["event"] for item in sample if not item["label"]]


@pytest.fixture(scope="module")
def fraud(sample):
    return [item["event"] for item in sample if item["label"]]


def test_same_seed_gives_the_same_branch_and_another_seed_another():
    first = independent_branch(5, 2_000)
    assert first == independent_branch(5, 2_000)
    other = independent_branch(6, 2_000)
    assert [i["event"]["account"] for i in other] != [i["event"]["account"] for i in first]
    assert {i["event"]["event_id"].split("-")[0] for i in other} == {"ind6"}


def test_asks_for_exactly_n_events():
    assert len(independent_branch(1, 777)) == 777
    assert independent_branch(1, 0) == []


@pytest.mark.parametrize("bad", [-1, 2.5, "100", True])
def test_a_bad_event_count_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="n_events"):
        independent_branch(1, bad)


def test_every_event_is_valid_schema_v1_in_time_order_with_unique_ids(sample):
    ids, last = set(), None
    for item in sample:
        assert set(item) == {"event", "label", "typology", "watchlisted", "signals", "coached"}
        event = parse_event(item["event"])  # raises SchemaError naming the field
        assert event.event_id.startswith("ind11-") and event.event_id not in ids
        ids.add(event.event_id)
        assert event.ts.utcoffset().total_seconds() == 8 * 3600
        assert 1 <= event.counter <= 64 and 6 <= len(event.account) <= 34
        assert last is None or event.ts >= last
        last = event.ts


def test_labels_follow_the_typology_and_every_named_typology_occurs(sample):
    assert FRAUD < set(TYPOLOGIES) and len(set(TYPOLOGIES)) == len(TYPOLOGIES)
    assert set(NAMED) <= set(TYPOLOGIES)
    for item in sample:
        assert item["label"] == int(item["typology"] in FRAUD)
    assert {item["typology"] for item in sample} == set(TYPOLOGIES)


def test_a_branch_day_and_the_fraud_share_are_realistic(sample):
    days = {item["event"]["ts"][:10] for item in sample}
    assert 250 <= len(sample) / len(days) <= 350
    share = sum(item["label"] for item in sample) / len(sample)
    assert 0.01 <= share <= 0.02


def test_watchlisted_items_are_fraud_accounts_including_mules(sample):
    listed = [item for item in sample if item["watchlisted"]]
    assert listed and all(item["label"] == 1 for item in listed)
    assert "mule_cash_out" in {item["typology"] for item in listed}
    # The list holds accounts, not single events: every event of a listed account is listed.
    listed_accounts = {item["event"]["account"] for item in listed}
    assert all(item["watchlisted"] for item in sample if item["event"]["account"] in listed_accounts)
    assert any(not item["watchlisted"] for item in sample if item["typology"] == "mule_cash_out")


def test_older_terminals_and_skipped_fields_leave_optional_fields_out(sample):
    events = [item["event"] for item in sample]
    for name in ("teller_flags", "purpose", "customer_age", "inbound_24h", "balance_before"):
        assert any(name not in e for e in events), name
        assert any(name in e for e in events), name
    transfers = [e for e in events if e["kind"] == "transfer_out"]
    cash = [e for e in events if e["kind"] == "cash_withdrawal"]
    assert not any("payee_new" in e or "payee_account_age_days" in e for e in cash)
    # Payee history is always known on a current terminal; the receiving account's age only sometimes.
    assert all("payee_new" in e for e in transfers if "teller_flags" in e)
    with_age = sum("payee_account_age_days" in e for e in transfers)
    assert 0 < with_age < len(transfers) / 2


@pytest.mark.parametrize("flag", TELLER_FLAGS)
def test_honest_customers_get_every_teller_flag_sometimes(honest, fraud, flag):
    assert sum(flag in e.get("teller_flags", ()) for e in honest) >= 10
    assert any(flag in e.get("teller_flags", ()) for e in fraud)


def test_no_single_field_separates_fraud(honest, fraud):
    ages = [e["customer_age"] for e in fraud if "customer_age" in e]
    assert any(a >= 60 for a in ages) and any(a < 30 for a in ages)
    assert any(e.get("customer_age", 0) >= 60 for e in honest)
    # Large honest sums and small frauds both exist.
    assert sum(e["amount"] >= 50_000 for e in honest) > sum(e["amount"] >= 50_000 for e in fraud)
    assert any(e["amount"] < 10_000 for e in fraud)
    # New payees: honest customers have them, and a repeat payment to a fraud account is not new.
    assert any(e.get("payee_new") is True for e in honest)
    assert any(e.get("payee_new") is False for e in fraud)
    # New accounts and many inbound transfers: honest traders too; rented mule accounts are old.
    assert any(e.get("account_age_days", 999) < 90 and e.get("inbound_count_24h", 0) >= 3 for e in honest)
    assert any(e.get("account_age_days", 0) > 365 and e.get("inbound_count_24h", 0) >= 3 for e in fraud)
    # Purposes named "risky" are mostly honest investment.
    risky = [e for e in honest if e.get("purpose") == "investment"]
    assert len(risky) > sum(e.get("purpose") == "investment" for e in fraud)


def test_coached_victims_show_nothing_at_the_counter(sample):
    hidden = defaultdict(int)
    for item in sample:
        if item["label"] and unflagged_ordinary_purpose(item["event"]):
            hidden[item["typology"]] += 1
    assert hidden["safe_account"] > 0 and hidden["investment_scam"] > 0
    victims = sum(1 for i in sample if i["typology"] in {"safe_account", "investment_scam", "loan_fee_scam"})
    assert sum(hidden.values()) >= victims / 5


def test_mules_split_cash_under_the_reporting_line_across_counters(sample):
    mules = [item["event"] for item in sample if item["typology"] == "mule_cash_out"]
    assert any(49_000 <= e["amount"] < 50_000 and e["kind"] == "cash_withdrawal" for e in mules)
    counters = defaultdict(set)
    for e in mules:
        counters[(e["account"], e["ts"][:10])].add(e["counter"])
    assert any(len(seen) >= 2 for seen in counters.values())
    # Honest traders also stay under the line, so the amount alone does not give a mule away.
    assert any(49_000 <= item["event"]["amount"] < 50_000 for item in sample if item["typology"] == "trader_cash")


def test_customers_come_back_with_their_own_history(honest):
    visits = defaultdict(list)
    for e in honest:
        visits[e["account"]].append(e)
    regulars = [v for v in visits.values() if len({e["ts"][:10] for e in v}) >= 3]
    assert len(regulars) > len(visits) / 2
    # The same person keeps their account age (growing day by day) from one visit to the next.
    for events in regulars[:200]:
        ages = [e["account_age_days"] for e in events if "account_age_days" in e]
        assert ages == sorted(ages)


def test_command_prints_counts_by_typology_and_the_fraud_share():
    run = subprocess.run([sys.executable, "-m", "counterguard.models.independent", "7", "3000"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "fraud share" in run.stdout and "events 3000 " in run.stdout
    for typology in TYPOLOGIES:
        assert typology in run.stdout
    bad = subprocess.run([sys.executable, "-m", "counterguard.models.independent", "seven"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "usage" in bad.stderr
