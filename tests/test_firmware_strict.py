"""The counter node reads a terminal's line as strictly as the gateway reads a frame: JSON that only a
lenient parser takes, a repeated key, a number no double holds and an event_id that is not printable
text are refused at the counter with a clear error, and nothing of them reaches the gateway. Real
MicroPython unix port between real ptys."""

from __future__ import annotations

import json

from firmware_harness import TerminalSide
from harness import event

from test_firmware import FAST, _ready, gateways, lines, nodes  # noqa: F401 (fixtures)


def test_a_terminal_line_that_is_not_strict_json_or_has_an_unprintable_event_id_is_refused_at_the_node(
        lines, gateways, nodes, tmp_path):  # noqa: F811
    terminal_pty, gateway_pty = lines
    gateway = gateways()
    terminal = TerminalSide(terminal_pty.master)
    node = nodes(terminal_pty.path, gateway_pty.path, tmp_path / "state", **FAST)
    _ready(terminal, node)
    good = json.dumps(event(event_id="strict-ok"))
    refused = [
        (good.replace('"purpose"', '"account": "6222020200000000999", "purpose"'), "bad_json", "appears twice"),
        (good.replace('"purpose"', '"note": 1e400, "purpose"'), "bad_json", "too large"),
        (good.replace('"purpose"', '"note": NaN, "purpose"'), "bad_json", "not JSON"),
        # MicroPython's own parser takes these, and written compactly the first would become 15000.
        (good.replace('"amount": 1500', '"amount": 1 5000'), "bad_json", "not JSON"),
        (good.replace('"amount": 1500', '"amount": 01500'), "bad_json", "not JSON"),
        (good.replace('"purpose": "daily"', '"purpose": "daily",'), "bad_json", "not JSON"),
        (json.dumps(event(event_id="b17-\u202e240000")), "schema", "U+202E"),
        (json.dumps(event(event_id="b17\u0000")), "schema", "U+0000"),
        (json.dumps(event(event_id="x\ud800")), "schema", "U+D800"),
    ]
    for line, code, said in refused:
        mark = len(terminal.lines)
        terminal.send_line(line.encode())  # json.dumps escapes: plain ASCII
        error = terminal.wait_for(lambda l: l["type"] == "error", 10, mark)
        assert error["code"] == code and said in error["detail"], (line, error)
    terminal.send_line(good.encode())
    assert terminal.wait_for(lambda l: l["type"] == "verdict")["event_id"] == "strict-ok"
    assert list(gateway.events) == ["strict-ok"]  # nothing refused reached the gateway
