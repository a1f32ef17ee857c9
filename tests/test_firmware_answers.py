"""The customer's answers to the caring questions through the counter node: a teller terminal sends
an event, then the answers as one JSON line; the node keeps them in flash, forwards them as an ANS
frame and hands back the gateway's final verdict. Real MicroPython unix port between real ptys, the
real gateway (counter line, pipeline, TFLite model, SQLite store, mock lamp pins) on the other end
of the RS-485 pair."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time

import pytest

from counterguard.core.dialogue import ANSWERS, SIGNALS
from counterguard.gateway.ops.app import Gateway
from firmware_harness import FIRMWARE, MICROPYTHON, Pty, Relay, TerminalSide
from harness import event, gateway_config, intercept

from test_firmware import _ready, lines, nodes  # noqa: F401 (fixtures)

# Slow enough for a gateway sharing two cores with other tests, fast enough to see resends.
TIMING = dict(heartbeat_ms=500, silent_ms=3000, reply_timeout_ms=1000, backoff_max_ms=2000)
NO_TO_ALL = {s: ("yes" if s == "knows_payee_in_person" else "no") for s in SIGNALS}


class Counter:
    """A teller terminal, its counter node and the RS-485 pair to a real gateway in this process."""

    def __init__(self, lines, nodes, tmp_path, broker):
        (self.terminal_pty, self.node_side), self.gateway_side = lines, Pty()
        self.nodes, self.state = nodes, tmp_path / "state"
        self.relay = Relay(self.node_side.master, self.gateway_side.master).start()
        self.cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=self.gateway_side.path)
        self.gateway = Gateway(self.cfg).start()
        self.terminal = TerminalSide(self.terminal_pty.master)
        self.node = None

    def start_node(self):
        mark = len(self.terminal.lines)
        self.node = self.nodes(self.terminal_pty.path, self.node_side.path, self.state, counter=3, **TIMING)
        ready = _ready(self.terminal, self.node, mark)
        return ready

    def online(self, start=0):
        return self.terminal.wait_for(lambda l: l["type"] == "online", 20, start)

    def cut_line(self):
        self.relay.stop()

    def mend_line(self, damage=None):
        self.relay = Relay(self.node_side.master, self.gateway_side.master, damage).start()

    def reply(self, type_, event_id, start=0, timeout=20, **match):
        """The first reply line of ``type_`` about ``event_id`` (and ``match``) from index ``start`` on."""
        return self.terminal.wait_for(lambda l: l["type"] == type_ and l.get("event_id") == event_id
                                      and all(l.get(k) == v for k, v in match.items()), timeout, start)

    def recorded_answers(self, event_id):
        with sqlite3.connect(self.cfg.store.path) as db:
            row = db.execute("select answers from dialogue where event_id = ?", (event_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def lamp_shows(self, number, level, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.gateway.lamps.states().get(number) != level:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self):
        self.gateway.stop()
        self.relay.stop()
        self.gateway_side.close()


@pytest.fixture
def counter(lines, nodes, tmp_path, broker):  # noqa: F811
    c = Counter(lines, nodes, tmp_path, broker)
    yield c
    c.close()


def answers_line(event_id, answers, **more):
    return {"event_id": event_id, "answers": answers, **more}


def test_a_terminal_sends_an_event_then_its_answers_and_gets_the_final_verdict_and_the_lamp_moves(counter):
    counter.start_node()
    counter.online()
    terminal = counter.terminal
    body = event(counter=3, amount=300)
    terminal.send(body)
    first = counter.reply("verdict", body["event_id"])
    assert first["level"] != "red" and "final" not in first and counter.gateway.lamps.states()[3] != "red"
    terminal.send(answers_line(body["event_id"], {"told_to_by_caller": "yes", "knows_payee_in_person": "no"},
                               by="T0031"))
    queued = counter.reply("queued", body["event_id"], of="answers")
    assert queued["pending"] == 1
    final = counter.reply("verdict", body["event_id"], final=True)
    # The gateway's final verdict as it sent it, marked as the answers' reply: a caller's script, said at
    # the counter, is never waved through, however small the amount.
    assert final["of"] == "answers" and final["level"] in ("amber", "red")
    assert final["reasons"][:2] == ["caller_instructed", "payee_not_known_in_person"]
    assert final["text"].startswith("Ask the caring questions" if final["level"] == "amber" else "Hold")
    assert counter.recorded_answers(body["event_id"]) == {"told_to_by_caller": "yes", "knows_payee_in_person": "no"}
    # The raised verdict moves the counter's lamp (just after the ACK is written, so wait a moment).
    assert counter.lamp_shows(3, final["level"]), counter.gateway.lamps.states()

    # The gateway's refusals come back as "rejected" lines, marked as about the answers, and are not resent.
    mark = len(terminal.lines)
    terminal.send(answers_line(body["event_id"], {"told_to_by_caller": "no"}))  # changed answers
    conflict = counter.reply("rejected", body["event_id"], mark)
    assert conflict["of"] == "answers" and conflict["code"] == "conflict" and conflict["field"] == "answers"
    terminal.send(answers_line("never-scored-here", {"promised_returns": "yes"}))
    unknown = counter.reply("rejected", "never-scored-here", mark)
    assert unknown["of"] == "answers" and unknown["code"] == "unknown_event" and unknown["field"] == "event_id"
    held = intercept(counter=3)  # red; "no" to everything leaves it red
    terminal.send(held)
    counter.reply("verdict", held["event_id"], mark)
    terminal.send(answers_line(held["event_id"], NO_TO_ALL))
    assert counter.reply("verdict", held["event_id"], mark, final=True)["level"] == "red"
    assert counter.recorded_answers(body["event_id"]) == {"told_to_by_caller": "yes", "knows_payee_in_person": "no"}
    assert len(terminal.of_type("rejected")) == 2 and not terminal.of_type("error")


# Each bad answers line, the field the node names and what its detail says.
BAD_ANSWERS = [
    ({"event_id": "E", "answers": {"told_to_by_calller": "yes"}}, "answers", "unknown signal 'told_to_by_calller'"),
    ({"event_id": "E", "answers": {"promised_returns": "maybe"}}, "answers", "promised_returns must be yes, no or declined"),
    ({"event_id": "E", "answers": {"promised_returns": True}}, "answers", "must be yes, no or declined"),
    ({"answers": {"promised_returns": "yes"}}, "event_id", "event_id of 1 to 64 characters"),
    ({"event_id": "E", "answers": {}}, "answers", "one or more signals"),
    ({"event_id": "E", "answers": ["told_to_by_caller"]}, "answers", "one or more signals"),
    ({"event_id": "E", "answers": {"promised_returns": "no"}, "by": ""}, "by", "staff number"),
    ({"event_id": "E", "answers": {"promised_returns": "no"}, "amount": 5000}, "amount", "separate lines"),
]


def test_a_bad_answers_line_is_refused_by_name_at_the_node_and_events_keep_flowing(counter):
    # One gateway for the whole table: each row is a line a terminal could send mid-shift.
    counter.start_node()
    counter.online()
    terminal = counter.terminal
    body = event(counter=3)
    terminal.send(body)
    counter.reply("verdict", body["event_id"])
    for line, field, said in BAD_ANSWERS:
        if "event_id" in line:
            line = dict(line, event_id=body["event_id"])
        mark = len(terminal.lines)
        terminal.send(line)
        error = terminal.wait_for(lambda l: l["type"] == "error", 10, mark)
        assert error["code"] == "schema" and error["field"] == field and error["of"] == "answers", (line, error)
        assert said in error["detail"] and "the answers were not taken" in error["detail"], (line, error)
        assert error.get("event_id") == line.get("event_id")  # named when it is known
        later = event(counter=3)  # the counter goes on serving customers
        terminal.send(later)
        counter.reply("verdict", later["event_id"], mark)
    terminal.send(answers_line(body["event_id"], {"told_to_by_caller": "yes"}))  # the good answers are taken
    assert counter.reply("verdict", body["event_id"], final=True)["level"] in ("amber", "red")
    assert counter.recorded_answers(body["event_id"]) == {"told_to_by_caller": "yes"}
    assert counter.gateway.pipeline.naks["schema"] == 0  # nothing refused at the node reached the gateway
    assert len(terminal.of_type("error")) == len(BAD_ANSWERS)


def test_answers_taken_while_the_line_is_cut_survive_a_node_reset_and_reach_the_gateway_after_their_event(counter):
    counter.start_node()
    counter.online()
    terminal = counter.terminal
    answered = event(counter=3)
    terminal.send(answered)
    counter.reply("verdict", answered["event_id"])
    counter.cut_line()  # the RS-485 pair is pulled ...
    waiting = event(counter=3, amount=800)  # ... this customer's event has not reached the gateway yet
    terminal.send(answers_line(answered["event_id"], {"told_to_keep_secret": "yes"}))
    terminal.send(waiting)
    terminal.send(answers_line(waiting["event_id"], {"buying_for_someone": "declined", "promised_returns": "yes"}))
    counter.reply("queued", answered["event_id"], of="answers")
    counter.reply("queued", waiting["event_id"])
    assert counter.reply("queued", waiting["event_id"], of="answers")["pending"] == 3
    counter.node.kill()  # and the node loses power before the gateway heard any of it
    journal = (counter.state / "journal.log").read_bytes()
    assert journal.count(b"$ANS ") == 2 and counter.recorded_answers(answered["event_id"]) is None

    mark = len(terminal.lines)
    counter.mend_line()
    assert counter.start_node()["pending"] == 3
    assert counter.reply("verdict", answered["event_id"], mark, final=True)["level"] in ("amber", "red")
    first = counter.reply("verdict", waiting["event_id"], mark)
    assert "final" not in first
    final = counter.reply("verdict", waiting["event_id"], mark, final=True)
    assert terminal.lines.index(first) < terminal.lines.index(final)  # the event was scored before its answers
    assert final["level"] in ("amber", "red") and final["reasons"][0] == "promised_returns"
    assert counter.recorded_answers(answered["event_id"]) == {"told_to_keep_secret": "yes"}
    assert counter.recorded_answers(waiting["event_id"]) == {"buying_for_someone": "declined",
                                                             "promised_returns": "yes"}
    assert not terminal.of_type("rejected") and not terminal.of_type("error")


def test_answers_that_overtake_their_damaged_event_wait_for_it_instead_of_being_rejected(counter):
    counter.start_node()
    counter.online()
    body = event(counter=3)
    target = json.dumps(body["event_id"]).encode()
    hits = []

    def noise(data):
        # The event's first two sends are damaged on the pair (one byte flipped: bad CRC at the gateway).
        if b"$EVT " in data and target in data and len(hits) < 2:
            hits.append(data)
            i = data.index(target) + 1
            data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
        return data

    counter.cut_line()
    counter.mend_line(damage=noise)
    # The teller asked the questions at once: the answers go out right behind the event.
    counter.terminal.send_line((json.dumps(body) + "\n" + json.dumps(answers_line(body["event_id"], {
        "told_account_in_crime": "yes"}))).encode())
    counter.reply("verdict", body["event_id"])
    final = counter.reply("verdict", body["event_id"], final=True)
    assert final["level"] in ("amber", "red") and final["reasons"][0] == "told_account_in_crime"
    assert len(hits) == 2 and counter.gateway.pipeline.naks["bad_crc"] >= 2
    # The answers reached the gateway before their event and were refused as unknown; the node, which
    # still held the event, sent them again instead of telling the terminal they were rejected.
    assert counter.gateway.pipeline.naks["unknown_event"] >= 1
    assert not counter.terminal.of_type("rejected")


def test_the_node_knows_the_same_six_signals_as_the_gateway():
    script = ("import sys; sys.path.insert(0, %r)\n"
              "from counterguard_node.dialogue import SIGNALS, ANSWERS\n"
              "print(','.join(SIGNALS)); print(','.join(ANSWERS))" % str(FIRMWARE))
    result = subprocess.run([MICROPYTHON, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [",".join(SIGNALS), ",".join(ANSWERS)]
