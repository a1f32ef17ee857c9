"""`centre push-list`: the police's warned persons and the restricted persons reach a real gateway as
signed deltas of keyed hashes, change its verdicts, and a gateway that missed a delta is sent the
whole list by the running centre (real mosquitto, real SQLite, the real CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import date, timedelta

import pytest
from gpiozero.pins.mock import MockFactory

from conftest import wait_until
from counterguard.centre.person_lists import PersonListPush
from counterguard.centre.store import open_store
from counterguard.core import manifest as signed
from counterguard.core.events import parse_event
from counterguard.core.identity import identity_hash
from counterguard.core.lists import MAX_PER_MANIFEST, RESTRICTED, WARNED
from counterguard.gateway.config import DownlinkSettings, GatewaySettings
from counterguard.gateway.ops.app import Gateway
from harness import gateway_config

RESIDENT, PHONE, OTHER = "11010519491231002X", "13800138000", "440306198001010028"
KEY = bytes(range(32))


def centre(tmp_path, broker, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "counterguard", "centre", *args, "--store", str(tmp_path / "centre.db"),
                           "--create",  # the first push makes the store
                           "--host", broker.host, "--port", str(broker.port),
                           "--signing-key", str(tmp_path / "centre-signing.pem"),
                           "--watchlist-key", str(tmp_path / "watchlist.key")],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def keys(tmp_path):
    key = signed.generate_signing_key()
    signed.save_private_key(key, tmp_path / "centre-signing.pem")
    signed.save_public_key(key.public_key(), tmp_path / "centre-public.pem")
    signed.save_watchlist_key(KEY, tmp_path / "watchlist.key")
    return key


def _gateway(tmp_path, broker, gateway_id="gw-7", sector="bank"):
    data = tmp_path / gateway_id
    data.mkdir(exist_ok=True)
    config = replace(gateway_config(data, broker_port=broker.port, serial_path=None, watchlist=False),
                     gateway=GatewaySettings(id=gateway_id, region="610100", branch="b012", data_dir=str(data),
                                             sector=sector),
                     downlink=DownlinkSettings(centre_public_key=str(tmp_path / "centre-public.pem"),
                                               watchlist_key=str(tmp_path / "watchlist.key")))
    gw = Gateway(config, pin_factory=MockFactory())
    gw.start()
    return gw


def _event(n, **who):
    body = {"event_id": f"ev-{n}", "ts": f"{date.today().isoformat()}T10:00:00+08:00", "counter": 1,
            "kind": "cash_withdrawal", "account": "6222020200000000101", "amount": 3000, "customer_age": 45,
            "account_age_days": 4000, "balance_before": 80000, "purpose": "daily", **who}
    return parse_event(body, KEY)


def test_pushed_lists_change_a_real_gateways_verdicts_and_only_hashes_travel(tmp_path, broker, keys):
    gw = _gateway(tmp_path, broker)
    try:
        lists = gw.pipeline.assessor.persons
        warned = centre(tmp_path, broker, "push-list", "warned", "--add", PHONE, "--category", "safe_account",
                        "--days", "30")
        assert warned.returncode == 0, warned.stderr
        restricted = centre(tmp_path, broker, "push-list", "restricted", "--add", RESIDENT, "--from", "carrier")
        assert restricted.returncode == 0, restricted.stderr
        assert wait_until(lambda: lists[WARNED].version == 1 and lists[RESTRICTED].version == 1, 30), \
            gw.downlink.stats.last_rejection
        assess = gw.pipeline.assessor.assess
        assert assess(_event(1, customer_phone=PHONE)).reasons[0] == "warned_person"
        assert assess(_event(2, customer_id=RESIDENT)).level == "red"
        assert assess(_event(3, customer_id=OTHER)).level == "green"
        # Taken off again: a delta on the version the gateway holds.
        off = centre(tmp_path, broker, "push-list", "warned", "--remove", PHONE)
        assert off.returncode == 0, off.stderr
        assert wait_until(lambda: lists[WARNED].version == 2, 30)
        assert assess(_event(4, customer_phone=PHONE)).level == "green"
        pushed = [json.loads(line) for line in warned.stdout.splitlines() + off.stdout.splitlines()]
        assert [(p["kind"], p["version"]) for p in pushed] == [(WARNED, 1), (WARNED, 2)]
        assert gw.downlink.fields()["lists"] == {WARNED: {"version": 2, "size": 0},
                                                 RESTRICTED: {"version": 1, "size": 1}}
    finally:
        gw.stop()
    store_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("centre.db*"))
    assert identity_hash(KEY, "resident_id", RESIDENT).encode() in store_bytes  # the list is kept, hashed
    for clear in (RESIDENT, PHONE):
        assert clear.encode() not in store_bytes, f"{clear} is in the centre's store in clear"


def test_a_file_with_bad_lines_is_refused_whole_with_every_line_named(tmp_path, broker, keys):
    path = tmp_path / "police-warnings.csv"
    path.write_text("# police warnings of the week\n"
                    f"{RESIDENT},resident,investment\n"
                    "110105194912310021,resident,investment\n"  # a mistyped check digit
                    f"{PHONE},phone,lottery\n"  # not a category
                    f"E12345678,passport,romance,{date.today()},{date.today() - timedelta(days=1)}\n"  # ends before
                    "E12345678\n")  # a passport number needs its type
    done = centre(tmp_path, broker, "push-list", "warned", "--file", str(path), "--category", "investment")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    for line, says in ((3, "check digit"), (4, "category 'lottery'"), (5, "is before from"), (6, "name its type")):
        assert f"line {line}:" in done.stderr and says in done.stderr, done.stderr
    assert "line 2:" not in done.stderr
    assert "110105194912310021" not in done.stderr, "a clear identity number was repeated"
    with open_store(tmp_path / "centre.db") as store:
        assert store.person_entries(WARNED) == [] and store.last_version(WARNED) == 0  # nothing pushed


def test_a_gateway_that_missed_a_delta_is_sent_the_whole_list_by_the_running_centre(tmp_path, broker, keys):
    config = tmp_path / "centre.toml"
    config.write_text(f'[broker]\nhost = "{broker.host}"\nport = {broker.port}\n'
                      f'[store]\nurl = "{tmp_path / "centre.db"}"\n'
                      f'[signing]\nkey = "{tmp_path / "centre-signing.pem"}"\n'
                      f'watchlist_key = "{tmp_path / "watchlist.key"}"\n')
    gw = _gateway(tmp_path, broker)
    log_path = tmp_path / "centre.log"
    with open(log_path, "w") as log:
        run = subprocess.Popen([sys.executable, "-m", "counterguard", "centre", "run", "--config", str(config),
                                "--web-port", "0"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        first = centre(tmp_path, broker, "push-list", "restricted", "--add", RESIDENT, "--from", "police")
        assert first.returncode == 0, first.stderr
        lists = gw.pipeline.assessor.persons
        assert wait_until(lambda: lists[RESTRICTED].version == 1, 30)
        gw.stop()  # the gateway is away while two more deltas go out; only the last is retained
        many = tmp_path / "many.csv"
        many.write_text("".join(f"{identity_hash(KEY, 'phone', f'139{n:08d}')},hash,bank\n"
                                for n in range(MAX_PER_MANIFEST + 10)))
        second = centre(tmp_path, broker, "push-list", "restricted", "--file", str(many))
        assert second.returncode == 0, second.stderr
        assert [json.loads(x)["version"] for x in second.stdout.splitlines()] == [2, 3]  # two messages' worth
        gw = _gateway(tmp_path, broker)
        lists = gw.pipeline.assessor.persons
        # Version 3 (retained) is based on 2, which it never got: a gap, reported in its status ...
        assert wait_until(lambda: lists[RESTRICTED].gap is not None or lists[RESTRICTED].version == 3, 30)
        # ... and the centre answers with the whole list of version 3.
        assert wait_until(lambda: lists[RESTRICTED].version == 3 or run.poll() is not None, 120), \
            log_path.read_text()[-3000:]
        assert run.poll() is None, log_path.read_text()[-3000:]
        assert len(lists[RESTRICTED]) == MAX_PER_MANIFEST + 11 and lists[RESTRICTED].gap is None
        assert gw.pipeline.assessor.assess(_event(9, customer_phone="13900000007")).level == "red"
    finally:
        gw.stop()
        run.terminate()
        run.wait(30)


def test_deltas_are_split_to_fit_the_brokers_message_limit(tmp_path, keys):
    with open_store(tmp_path / "centre.db") as store:
        pusher = PersonListPush(store, keys, key=KEY)
        today, until = date.today().isoformat(), (date.today() + timedelta(days=9)).isoformat()
        add = [[identity_hash(KEY, "phone", f"137{n:08d}"), "police", today, until] for n in range(12_000)]
        made = pusher.push(RESTRICTED, add=add, remove=[])
        assert [m.version for m in made] == [1, 2, 3] and all(m.summary["bytes"] < 1024 * 1024 for m in made)
        whole = pusher.push(RESTRICTED, add=add[:7000], remove=[], full=True)
        assert {m.version for m in whole} == {4} and [m.summary["part"] for m in whole] == [1, 2]
        assert len(store.person_entries(RESTRICTED)) == 7000


def test_the_centre_shows_each_list_by_source_and_the_gateways_behind_it(tmp_path, broker, keys):
    from counterguard.centre.ingest import IngestWorker

    def report(*args):
        done = subprocess.run([sys.executable, "-m", "counterguard", "centre", "lists", "--store",
                               str(tmp_path / "centre.db"), *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    gw = _gateway(tmp_path, broker)
    try:
        for source, value in (("carrier", RESIDENT), ("police", OTHER), ("police", PHONE)):
            done = centre(tmp_path, broker, "push-list", "restricted", "--add", value, "--from", source)
            assert done.returncode == 0, done.stderr
        assert wait_until(lambda: gw.pipeline.assessor.persons[RESTRICTED].version == 3, 30)
        # The centre learns what each gateway holds from its heartbeat.
        with IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port):
            assert wait_until(lambda: json.loads(report("--json"))[1]["gateways_current"] == ["gw-7"], 30)
    finally:
        gw.stop()
    restricted = next(r for r in json.loads(report("--json")) if r["kind"] == RESTRICTED)
    assert (restricted["version"], restricted["in_force"], restricted["by_label"]) == (3, 3, {"carrier": 1, "police": 2})
    assert restricted["gateways_behind"] == [] and restricted["gateways_with_gap"] == []
    text = report()
    assert "restricted_persons: version 3, 3 in force (carrier 1, police 2)" in text
    assert RESIDENT not in text and PHONE not in text


def test_a_card_sale_a_carrier_confirmed_puts_the_person_on_the_restricted_list_and_a_bank_sees_red(
        tmp_path, broker, keys):
    from counterguard.centre.ingest import IngestWorker
    from counterguard.core import wire

    def send(gw, body):
        [item] = wire.FrameDecoder().feed(wire.encode_frame("EVT", 1, body))
        [reply] = wire.FrameDecoder().feed(gw.pipeline.process([item]).replies)
        return reply

    seller = "110105200501010012"
    outlet, branch = _gateway(tmp_path, broker, "gw-outlet", "carrier"), _gateway(tmp_path, broker, "gw-bank")
    try:
        with IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port):
            red = send(outlet, {"event_id": "sale-1", "ts": f"{date.today()}T10:00:00+08:00", "counter": 1,
                                "kind": "sim_activation", "customer_id": seller, "customer_age": 19, "sims_held": 2,
                                "sims_requested": 5, "for_self": False, "accompanied": True})
            assert red.body["level"] == "red"
            [alert] = outlet.store.open_alerts("red")
            outlet.lifecycle.acknowledge(alert.alert_id, by="S1", via="console")
            outlet.lifecycle.record_outcome(alert.alert_id, "card_sale_confirmed", by="S1", via="console",
                                            handled_at=2, note="paid 200 yuan a card")
            assert wait_until(lambda: open_store(tmp_path / "centre.db").count("outcome") == 1, 30)
        # Never by itself: the list changes only when the centre's analyst pushes it.
        assert outlet.pipeline.assessor.persons[RESTRICTED].version == 0
        pushed = centre(tmp_path, broker, "push-list", "restricted", "--confirmed-sales")
        assert pushed.returncode == 0, pushed.stderr
        assert f"adding the person of alert {alert.alert_id} at gw-outlet (card sale confirmed; source carrier)" \
            in pushed.stderr
        assert wait_until(lambda: branch.pipeline.assessor.persons[RESTRICTED].version == 1, 30)
        opening = send(branch, {"event_id": "open-1", "ts": f"{date.today()}T14:00:00+08:00", "counter": 2,
                                "kind": "account_opening", "customer_id": seller, "customer_age": 19,
                                "for_self": True, "purpose": "student"})
        assert opening.body["level"] == "red" and opening.body["reasons"][0] == "restricted_person"
        with open_store(tmp_path / "centre.db") as store:
            assert [(e[1]) for e in store.person_entries(RESTRICTED)] == ["carrier"]
        again = centre(tmp_path, broker, "push-list", "restricted", "--confirmed-sales")
        assert "adding the person" not in again.stderr  # already on the list: nothing to add twice
    finally:
        outlet.stop()
        branch.stop()
    for path in tmp_path.glob("centre.db*"):
        assert seller.encode() not in path.read_bytes(), "the seller's identity number reached the centre in clear"
