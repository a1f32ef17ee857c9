"""``counterguard demo``: a scripted branch morning through the whole gateway, on this machine
(``--sector carrier``: a morning at a carrier's outlet, SIM cards instead of cash).

A private mosquitto on a free loopback port, the gateway on a pseudo-terminal with mock pins, a
simulated teller terminal, and a receiver standing in for the anti-fraud centre. Everything is
real except the pins and the terminal; everything is stopped and removed at the end.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import tty
from datetime import datetime, timedelta, timezone
from pathlib import Path

from counterguard.gateway.config import (
    Config,
    ConsoleSettings,
    LampSettings,
    LinkSettings,
    MqttSettings,
    SerialSettings,
    StoreSettings,
    WatchlistSettings,
)
from counterguard.gateway.counter.terminal import TellerTerminal
from counterguard.gateway.link.broker import PrivateBroker
from counterguard.gateway.ops.app import Gateway
from counterguard.gateway.questions import load_questions
from counterguard.hardware.pinmap import default_pinmap_path, load_pinmap

CST = timezone(timedelta(hours=8))
MULE_ACCOUNT = "6217000099887766554"
# A coached victim shows the model nothing; the teller notices and raises the alert herself.
NOTICED_ID = "c4-noticed"
INTERCEPT_ID = "c3-0915-intercept"


def branch_morning(day: datetime) -> list[tuple[str, dict]]:
    """(what the teller sees, event) pairs for one scripted morning at a four-counter branch."""
    t = day.replace(hour=9, minute=0, second=0, microsecond=0)
    script: list[tuple[str, dict]] = []
    n = 0

    def add(note: str, minutes: float, counter: int, kind: str, account: str, amount: float, **extra):
        nonlocal n
        n += 1
        event = {
            "event_id": extra.pop("event_id", f"c{counter}-{n:04d}"),
            "ts": (t + timedelta(minutes=minutes)).isoformat(timespec="seconds"),
            "counter": counter, "kind": kind, "account": account, "amount": amount, **extra,
        }
        script.append((note, event))

    everyday = [
        (1, "6222020200000000101", 2000, 34, "daily"), (2, "6222020200000000202", 500, 71, "daily"),
        (3, "6222020200000000303", 3000, 45, "shopping"), (4, "6222020200000000404", 800, 29, "daily"),
        (1, "6222020200000000505", 6000, 52, "education"), (2, "6222020200000000606", 1200, 64, "medical"),
        (3, "6222020200000000707", 2500, 38, "travel"), (4, "6222020200000000808", 300, 80, "daily"),
    ]
    minute = 0.0
    for counter, account, amount, age, purpose in everyday:
        minute += 1.5
        add("everyday withdrawal", minute, counter, "cash_withdrawal", account, amount, customer_age=age,
            account_age_days=2900, balance_before=amount * 9, purpose=purpose)
    add("58-year-old moving savings into an investment product", 12, 1, "transfer_out", "6222020200000002021",
        80000, customer_age=58, account_age_days=5000, balance_before=120000, purpose="investment")
    add("salary transfer to family", 14, 2, "transfer_out", "6222020200000000909", 3000, customer_age=41,
        account_age_days=4100, balance_before=21000, purpose="transfer_to_relative")
    add("shop owner banks out the week's takings", 16, 1, "cash_withdrawal", "6222020200000001010", 60000,
        customer_age=47, account_age_days=3300, balance_before=412000, purpose="business")
    add("daughter with her father, hospital bill", 18, 4, "cash_withdrawal", "6222020200000001111", 20000,
        customer_age=76, account_age_days=9000, balance_before=185000, purpose="medical",
        teller_flags=["accompanied"])
    add("67-year-old on the phone, in a hurry, 50,000 in cash", 21, 3, "cash_withdrawal",
        "6222020200112233445", 50000, event_id=INTERCEPT_ID, customer_age=67, account_age_days=11000,
        balance_before=52300, purpose="home", teller_flags=["customer_on_phone", "urgent", "declared_purpose_mismatch"])
    add("young man, new card, cashing out", 24, 2, "cash_withdrawal", MULE_ACCOUNT, 48000, customer_age=22,
        account_age_days=31, balance_before=49500, inbound_24h=49500, inbound_count_24h=17, purpose="daily")
    add("72-year-old, calm, 30,000 in cash 'for the flat'; keeps glancing at her phone", 25, 4, "cash_withdrawal",
        "6222020200556677889", 30000, event_id=NOTICED_ID, customer_age=72, account_age_days=12500,
        balance_before=98000, purpose="home")
    for counter, account, amount, age, purpose in everyday[:4]:
        minute = 26 + counter
        add("everyday withdrawal", minute, counter, "cash_withdrawal", account[:-3] + "999", amount * 2,
            customer_age=age, account_age_days=1500, balance_before=amount * 20, purpose=purpose)
    return script


# At the carrier's outlet: a student a "helper" brought in for five SIM cards, for someone else.
RECRUITED_ID = "co1-recruited"
STUDENT_ID = "110105200501010012"  # resident identity numbers with a good check digit; hashed on arrival


def carrier_morning(day: datetime) -> list[tuple[str, dict]]:
    """(what the clerk sees, event) pairs for one scripted morning at a carrier's two-counter outlet."""
    t = day.replace(hour=9, minute=0, second=0, microsecond=0)
    script: list[tuple[str, dict]] = []

    def add(note: str, minutes: float, counter: int, customer: str, **fields):
        event = {"event_id": fields.pop("event_id", f"co{counter}-{len(script) + 1:04d}"),
                 "ts": (t + timedelta(minutes=minutes)).isoformat(timespec="seconds"), "counter": counter,
                 "kind": "sim_activation", "customer_id": customer, **fields}
        script.append((note, event))

    add("a nurse replacing her lost card", 2, 1, "110105198803150029", customer_age=37, sims_held=1,
        sims_requested=1, for_self=True, purpose="personal", number_type="postpaid")
    add("a family buying two cards for its children", 5, 2, "110105197501010018", customer_age=50, sims_held=1,
        sims_requested=2, for_self=False, purpose="family", number_type="prepaid")
    add("a logistics firm's data cards for its trucks", 9, 1, "440306198001010028", customer_age=45, sims_held=2,
        sims_requested=20, for_self=False, purpose="iot", number_type="iot")
    add("a 71-year-old, with a 'helper' who does the talking", 12, 2, "110105195505050034", customer_age=71,
        sims_held=1, sims_requested=1, for_self=True, accompanied=True, purpose="personal", number_type="prepaid")
    add("a student a 'helper' brought in: five cards, not for herself", 15, 1, STUDENT_ID, event_id=RECRUITED_ID,
        customer_age=19, sims_held=1, sims_requested=5, for_self=False, accompanied=True, purpose="personal",
        number_type="prepaid")
    return script


class _Summary:
    def __init__(self):
        self.levels: dict[str, int] = {}
        self.naks: list = []


def _record_outcome(gateway, event: dict, say, timeout: float = 5.0) -> None:
    """The supervisor, back at the console, records what happened (the lamp stops blinking)."""
    deadline = time.monotonic() + timeout
    while not gateway.store.awaiting_outcome() and time.monotonic() < deadline:
        time.sleep(0.02)  # the button press is handled on gpiozero's thread
    for alert in gateway.store.awaiting_outcome():
        if event["event_id"] == RECRUITED_ID:  # she admits she was paid; the "helper" leaves
            outcome, note, answers = ("customer_dissuaded", "paid 200 yuan a card by the 'helper'; opened none",
                                      {"not_for_self.2": "yes"})
        elif event.get("account") == MULE_ACCOUNT:
            outcome, note, answers = "police_called", "card holder detained for the police", {"general.1": "declined"}
        elif event["event_id"] == NOTICED_ID:  # a "police officer" on a video call had told her what to say
            outcome, note, answers = ("customer_dissuaded", "told by a 'police officer' to move her savings; kept them",
                                      {"general.1": "yes", "general.2": "yes"})
        else:  # she admits a caller she has never met told her to move the money, and to tell no one
            outcome, note, answers = ("customer_dissuaded", "son reached on the phone; she kept her savings",
                                      {"general.1": "yes", "general.2": "yes"})
        gateway.record_outcome(alert.alert_id, outcome, note=note, by="S-demo", via="console", answers=answers)
        say(f"  supervisor records the outcome on the console: {outcome} ({note}; caring questions: "
            + ", ".join(f"{k} {v}" for k, v in answers.items()) + ")")


def run_demo(out, *, pace: float = 0.25, deadline_s: float = 25.0, keep: bool = False,
             stop: threading.Event | None = None, sector: str = "bank") -> int:
    """Play the morning; print lamps, verdicts, what the centre got, and a summary. 0 if all arrived.

    ``keep``: the branch console and a real centre (intake, store, dashboard) run alongside, and stay
    up after the summary, with their URLs and a one-time login printed, until ``stop`` is set.
    ``sector``: "bank" (a branch morning) or "carrier" (a carrier's outlet selling SIM cards)."""
    import secrets

    from gpiozero.pins.mock import MockFactory

    from counterguard.centre.receiver import Receiver
    from counterguard.core.weblogin import hash_password

    started = time.monotonic()
    say = lambda text: (out.write(text + "\n"), out.flush())  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="counterguard-demo-") as tmp, PrivateBroker() as broker:
        tmp = Path(tmp)
        watchlist = tmp / "stop-payment.txt"
        watchlist.write_text(f"# centre stop-payment list (demo)\n{MULE_ACCOUNT}\n")
        master, slave = os.openpty()
        tty.setraw(slave)
        say(f"counterguard demo: broker on 127.0.0.1:{broker.port}, counter line on {os.ttyname(slave)}")
        config = Config(
            serial=(SerialSettings(path=os.ttyname(slave), name="counters"),),
            link=LinkSettings(heartbeat_s=2.0),
            lamps=LampSettings(pins="mock", show=True),
            mqtt=MqttSettings(port=broker.port, heartbeat_s=5.0, republish_after_s=5.0),
            store=StoreSettings(path=str(tmp / "counterguard.db")),
            watchlist=WatchlistSettings(file=str(watchlist)),
        )
        if sector == "carrier":
            config = config.with_changes("gateway", sector="carrier", id="gw-outlet-0001", branch="outlet-0001")
        password = secrets.token_urlsafe(9)  # one-time: printed, gone with the demo
        centre = None
        if keep:
            config = config.with_changes("console", enabled=True, listen="127.0.0.1", port=0,
                                         password_hash=hash_password(password), staff=("S-demo", "T-demo"))
            centre = _Centre(tmp / "centre.db", broker.port, password).start()
        centre_lock = threading.Lock()

        def centre_got(payload: dict) -> None:
            with centre_lock:
                what = "" if payload["kind"] == "sim_activation" else f" {payload['amount']:,.0f} yuan"
                say(f"  centre <- {payload['level'].upper():5} alert #{payload['seq']} counter {payload['counter']}"
                    f"{what}: {', '.join(payload['reasons'])}")

        receiver = Receiver("127.0.0.1", broker.port, on_alert=centre_got)
        receiver.start()
        factory = MockFactory()
        gateway = Gateway(config, pin_factory=factory, lamp_stream=out)
        try:
            gateway.start()
            terminal = TellerTerminal(master, timeout=2.0)
            ack_pin = factory.pin(load_pinmap(default_pinmap_path()).supervisor.acknowledge)
            summary = _Summary()
            questions = load_questions()
            reds = staff_raised = 0
            script = carrier_morning if sector == "carrier" else branch_morning
            for note, event in script(datetime.now(CST)):
                reply = terminal.send(event)
                if reply.type == "NAK":
                    summary.naks.append(reply.body)
                    say(f"counter {event['counter']}: NAK {reply.body['code']}: {reply.body['detail']}")
                    continue
                level = reply.body["level"]
                summary.levels[level] = summary.levels.get(level, 0) + 1
                what = (f"{event['sims_requested']:>3} SIM card(s)" if event["kind"] == "sim_activation"
                        else f"{event['amount']:>9,.0f} {event['kind']:<15}")
                say(f"counter {event['counter']}: {what} -> {level.upper():5} {reply.body['text']}   ({note})")
                if level == "amber":
                    for question in questions.for_reasons(reply.body["reasons"], limit=2):
                        say(f"  teller asks: {question}")
                if level == "green" and event["event_id"] == NOTICED_ID:
                    say("  the teller is not satisfied: she reports the withdrawal as RED from the branch console")
                    gateway.lifecycle.raise_alert(NOTICED_ID, "red", by="T-demo", via="console",
                                                  note="calm but reading instructions off her phone")
                    staff_raised += 1
                    level = "red"
                if level == "red":
                    reds += 1
                    time.sleep(pace * 3)
                    say("  supervisor walks over, talks to the customer, presses ACKNOWLEDGE")
                    ack_pin.drive_low()
                    time.sleep(0.05)
                    ack_pin.drive_high()
                    _record_outcome(gateway, event, say)
                time.sleep(pace)
            # A terminal with a bad cable: noise on the line, then an event with a typo (at the outlet,
            # a bank's withdrawal sent to the carrier's gateway).
            terminal.write(b"\x00\x13garbled\n")
            bad = terminal.send({"event_id": "c1-typo", "ts": datetime.now(CST).isoformat(timespec="seconds"),
                                 "counter": 1, "kind": "cash_withdrawal", "account": "6222020200000000101",
                                 "amount": 5000 if sector == "carrier" else "5O00"})
            wrong = "a withdrawal at a carrier's outlet" if sector == "carrier" else "typo in the amount"
            say(f"counter 1: {wrong} -> NAK {bad.body['code']} field={bad.body.get('field')}: {bad.body['detail']}")

            raised = gateway.store.outbox_depth()  # rows still waiting for the centre
            expected_alerts = summary.levels.get("amber", 0) + summary.levels.get("red", 0) + staff_raised
            done = receiver.wait_for(
                lambda r: len(r.alerts) >= expected_alerts and len(r.acks) >= reds and len(r.outcomes) >= reds
                and gateway.store.outbox_depth() == 0,
                timeout=max(1.0, deadline_s - (time.monotonic() - started)),
            )
            latencies = sorted(x for line in gateway.lines for x in line.latencies)
            intercept = [a for a in receiver.alerts if a["event_id"] == INTERCEPT_ID]
            say("")
            say("summary")
            say("  events by level     : " + ", ".join(f"{k} {summary.levels.get(k, 0)}" for k in ("green", "amber", "red")))
            say(f"  frames refused (NAK): {gateway.pipeline.naks.total()} ({', '.join(sorted(gateway.pipeline.naks))})")
            say(f"  alerts delivered    : {len(receiver.alerts)} of {expected_alerts} (duplicates dropped: {receiver.duplicates})")
            say(f"  acknowledgements    : {len(receiver.acks)} of {reds} delivered")
            say(f"  outcomes            : {len(receiver.outcomes)} of {reds} delivered "
                f"({', '.join(o['outcome'] for o in receiver.outcomes)})")
            say(f"  outbox still open   : {gateway.store.outbox_depth()} (was {raised} before the drain)")
            if latencies:
                p50 = statistics.median(latencies) * 1000
                p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
                say(f"  frame to lamp       : median {p50:.2f} ms, p99 {p99:.2f} ms over {len(latencies)} verdicts")
            if sector == "carrier":
                recruited = [a for a in receiver.alerts if a["event_id"] == RECRUITED_ID]
                caught = bool(recruited) and recruited[0]["level"] == "red"
                say(f"  recruited student   : {'RED at the centre' if caught else 'NOT caught'}")
                family_green = summary.levels.get("green", 0) >= 3  # the nurse, the family and the trucks
                say(f"  honest look-alikes  : {'green' if family_green else 'NOT all green'} (family, fleet)")
                say(f"  finished in {time.monotonic() - started:.1f} s")
                ok = done and caught and family_green
            else:
                say(f"  50,000-yuan intercept: {'RED at the centre' if intercept and intercept[0]['level'] == 'red' else 'NOT intercepted'}")
                noticed = [a for a in receiver.alerts if "teller_report" in a["reasons"]]
                say(f"  teller's own report : {'RED at the centre, raised by ' + noticed[0]['raised_by'] if noticed else 'NOT delivered'}")
                say(f"  finished in {time.monotonic() - started:.1f} s")
                ok = done and bool(intercept) and intercept[0]["level"] == "red" and bool(noticed)
            if keep:
                centre.wait_for_morning(expected_alerts)
                say("")
                say("still running, with this morning's alerts (Ctrl-C to stop):")
                say(f"  branch console   : {gateway.branch_console.url}  staff number S-demo, password {password}")
                say(f"  centre dashboard : {centre.dashboard.url}  analyst, password {password}")
                say(f"  centre store     : {centre.path}")
                (stop or threading.Event()).wait()
                say("stopping: console, gateway, centre and broker; the demo's folder is removed")
            return 0 if ok else 1
        finally:
            gateway.stop()
            receiver.stop()
            if centre is not None:
                centre.stop()
            os.close(master)
            os.close(slave)


class _Centre:
    """A real anti-fraud centre for the kept demo: intake worker, SQLite store and dashboard."""

    def __init__(self, path: Path, port: int, password: str):
        from counterguard.core.weblogin import hash_password

        self.path, self.port = path, port
        self.users = {"analyst": hash_password(password)}
        self.worker = self.dashboard = None

    def start(self) -> "_Centre":
        from counterguard.centre.ingest import IngestWorker
        from counterguard.centre.store import open_store
        from counterguard.centre.web import Dashboard

        self.worker = IngestWorker(open_store(self.path), host="127.0.0.1", port=self.port,
                                   client_id="centre-demo").start()
        self.dashboard = Dashboard(open_store(self.path), host="127.0.0.1", port=0, users=self.users,
                                   intake=[self.worker]).start()
        return self

    def wait_for_morning(self, alerts: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.dashboard.api.store.count("alert") < alerts and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard.api.store.close()
        if self.worker is not None:
            self.worker.stop()
            self.worker.store.close()
