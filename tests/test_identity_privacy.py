"""Schema v2 at the counter: who the customer is and where a transfer goes are matched against the
centre's lists, and never leave the validator in clear (real gateway process, pty, mosquitto, centre).

After a run with identity numbers, phones and payee accounts on the line, the clear values are in
none of: the gateway's SQLite files, its log, its exports, any MQTT payload, the centre's database."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import zlib
from datetime import date

import paho.mqtt.client as mqtt

from conftest import wait_until
from counterguard.core import messages
from counterguard.core.identity import identity_hash
from counterguard.core.manifest import account_hash
from counterguard.gateway.scoring.watchlist import Watchlist
from counterguard.gateway.store.db import Store
from fault_support import Centre, Teller, start_gateway_process, stop_process
from harness import MULE, config_toml, event, gateway_config

RESIDENT = "11010519491231002X"  # a well-formed resident identity number (check digit X)
PASSPORT = "E12345678"
PHONE = "13800138000"
PAYEE = "6228480012345678901"  # an honest payee
CLEAR = (RESIDENT, RESIDENT.lower(), PASSPORT, PHONE, PAYEE, MULE[-10:])


def _v2_day() -> list[dict]:
    return [
        event(1, 3000, customer_id=RESIDENT, customer_phone=PHONE),
        event(2, 1200, customer_id=PASSPORT, customer_id_type="passport"),
        event(3, 20000, kind="transfer_out", payee_account=PAYEE, payee_new=False, customer_phone=PHONE),
        # The payee is the stop-listed mule: red whatever the model says.
        event(4, 2000, kind="transfer_out", payee_account=MULE, customer_id=RESIDENT.lower()),
    ]


class Tap:
    """Every MQTT message under counterguard/ while the run lasts (a centre analyst's view of the wire)."""

    def __init__(self, broker):
        self.payloads: list[bytes] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="privacy-tap")
        self.client.on_connect = lambda c, *_: c.subscribe(f"{messages.PREFIX}/#", qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda c, u, m: self.payloads.append(m.payload)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.ready.wait(10), "the tap never subscribed"

    def texts(self) -> list[str]:
        out = []
        for raw in self.payloads:
            try:
                out.append(messages.unpack_events(raw))  # an events batch is zlib-compressed JSON
            except ValueError:
                out.append(raw.decode("utf-8", "replace"))
        return out

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def _bytes_of(paths) -> bytes:
    return b"".join(p.read_bytes() for p in paths if p.exists())


def test_identity_numbers_phones_and_payees_never_leave_the_validator_in_clear(tmp_path, broker, counter_line):
    master, path = counter_line
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=path)
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(config_toml(cfg))
    tap = Tap(broker)
    centre = Centre(tmp_path / "centre.db", broker).up()
    bodies = _v2_day()
    log_path = tmp_path / "gateway.log"
    proc = start_gateway_process(config_path, log_path=log_path, verbose=True)
    try:
        teller = Teller(master, timeout=2.0)
        assert teller.wait_for_gateway(60), "the gateway did not come up; see gateway.log"
        teller.send_all(bodies, timeout=60)
        payee_red = teller.acked[bodies[3]["event_id"]]
        assert payee_red["level"] == "red" and payee_red["reasons"][0] == "payee_watchlist", payee_red
        # A mistyped identity number is refused naming the field, and the line goes on.
        wrong = event(1, 100, customer_id=RESIDENT[:-1] + "1")
        assert teller.offer([wrong]) == [wrong]
        assert teller.naks[-1]["code"] == "schema" and teller.naks[-1]["field"] == "customer_id"
        assert "check digit" in teller.naks[-1]["detail"] and RESIDENT[:17] not in json.dumps(teller.naks[-1])
        assert wait_until(lambda: len(centre.events()) == len(bodies) and centre.count("alert") >= 1, 60), \
            f"centre has {len(centre.events())} events, {centre.count('alert')} alerts"
        # The export cuts the gateway's local days by when it received the events (this machine's
        # today), not by the terminal's +08:00 timestamps, which are a day ahead after 16:00 UTC.
        day = date.today().isoformat()
        export = subprocess.run([sys.executable, "-m", "counterguard", "export-events", "--config", str(config_path),
                                 "--day", day], capture_output=True, text=True, timeout=120)
        labelled = subprocess.run([sys.executable, "-m", "counterguard", "export-events", "--config",
                                   str(config_path), "--day", day, "--labelled"],
                                  capture_output=True, text=True, timeout=120)
        assert export.returncode == 0 and labelled.returncode == 0, export.stderr + labelled.stderr
        alerts = centre.records("alert")
    finally:
        stop_process(proc)
        centre.close()
        tap.close()

    # What users rely on: the lists still match (the hashes are there, under the alliance key) ...
    with Store(cfg.store.path) as store:
        key = Watchlist(store).identity_key
    resident_hash = identity_hash(key, "resident_id", RESIDENT)
    assert resident_hash in export.stdout, "the export lost who the customer was"
    alert = next(a for a in alerts if a["payload"]["event_id"] == bodies[3]["event_id"])
    assert alert["payload"]["payee_account_hash"] == account_hash(key, MULE)
    assert alert["payload"]["customer_id_hash"] == resident_hash  # the lower-case x is the same person
    assert alert["payload"]["customer_id_type"] == "resident"
    # ... and no clear value is anywhere a person or a thief could read it.
    places = {
        "gateway store": _bytes_of(tmp_path.glob("gateway.db*")),
        "gateway log": log_path.read_bytes(),
        "export": export.stdout.encode() + labelled.stdout.encode(),
        "MQTT payloads": "\n".join(tap.texts()).encode(),
        "centre database": _bytes_of(tmp_path.glob("centre.db*")),
    }
    assert all(places.values()), {k: len(v) for k, v in places.items()}
    assert b"payee_account_hash" in places["MQTT payloads"]
    for where, data in places.items():
        for clear in CLEAR:
            assert clear.encode() not in data, f"{clear} is in the {where} in clear"
