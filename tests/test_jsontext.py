"""JSON from outside is refused for deep nesting before the parser recurses, so a flood of '[' can never
bring a reader thread (counter line, intake, downlink) near the interpreter's recursion limit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from counterguard.core import jsontext

ROOT = Path(__file__).resolve().parents[1]


def test_nesting_up_to_the_limit_parses_and_one_more_level_is_refused_naming_the_limit():
    at_limit = "[" * jsontext.MAX_DEPTH + "]" * jsontext.MAX_DEPTH
    assert jsontext.loads(at_limit) == json.loads(at_limit)
    too_deep = '{"a":' * (jsontext.MAX_DEPTH + 1) + "1" + "}" * (jsontext.MAX_DEPTH + 1)
    with pytest.raises(jsontext.TooDeep, match=f"nested too deeply \\(more than {jsontext.MAX_DEPTH} levels\\)"):
        jsontext.loads(too_deep)


def test_brackets_inside_strings_do_not_count_even_after_escaped_quotes():
    body = {"note": "[" * 500 + '\\"{' * 100, "purpose": 'he said "[[[[" twice', "list": [[1], {"k": "]]]]"}]}
    text = json.dumps(body)
    assert text.count("[") > jsontext.MAX_DEPTH  # the careful path runs, not only the quick count
    assert jsontext.loads(text) == body
    assert jsontext.loads(text.encode("utf-8")) == body


def test_siblings_are_not_depth():
    wide = "[" + ",".join(["[[1]]"] * 1000) + "]"
    assert len(jsontext.loads(wide)) == 1000


def test_bytes_that_are_not_utf8_or_not_json_are_value_errors():
    with pytest.raises(ValueError):
        jsontext.loads(b"\xff\xfe{}")
    with pytest.raises(json.JSONDecodeError):
        jsontext.loads('{"a": ')


def test_a_flood_of_brackets_is_refused_with_the_stack_nearly_full():
    # In a process of its own, as the recursion limit is the whole interpreter's. Plain json.loads hits
    # RecursionError on this stack; the bounded parser never goes deep enough to.
    script = """
import json, sys
from counterguard.core import jsontext
flood = "[" * 60_000
sys.setrecursionlimit(80)
for name, parse in (("plain", json.loads), ("bounded", jsontext.loads)):
    try:
        parse(flood)
    except Exception as exc:
        print(name, type(exc).__name__)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split("\n")[:2] == ["plain RecursionError", "bounded TooDeep"], done.stderr


# -- strict: only what every JSON reader reads the same way -------------------------------------------
@pytest.mark.parametrize("text, why", [
    ('{"account": "6222000000000000001", "account": "6222020200112233445"}', "duplicate key 'account'"),
    ('{"a": {"k": 1, "k": 1}}', "duplicate key 'k'"),
    ('[{"a": 1, "\\u0061": 2}]', "duplicate key 'a'"),
    ('{"n": NaN}', "NaN is not a JSON value"),
    ('{"n": Infinity}', "Infinity is not a JSON value"),
    ('{"n": [-Infinity]}', "-Infinity is not a JSON value"),
    ('{"n": 1e400}', "number 1e400 is too large"),
    ('{"n": -1.5E+999}', "too large"),
    ('{"n": 1' + "0" * 400 + "}", "too large"),
])
def test_what_python_would_take_but_is_not_json_is_refused_as_not_json(text, why):
    with pytest.raises(jsontext.NotJSON, match=re_escape(why)):
        jsontext.loads(text)
    with pytest.raises(json.JSONDecodeError):  # callers that catch the parser's own error catch these too
        jsontext.loads(text.encode("utf-8"))


def re_escape(text: str) -> str:
    import re
    return re.escape(text)


@pytest.mark.parametrize("text, value", [
    ('{"a": {"k": 1}, "b": {"k": 1}}', {"a": {"k": 1}, "b": {"k": 1}}),  # the same key in two objects
    ('[{"k": 1}, {"k": 2}]', [{"k": 1}, {"k": 2}]),
    ('{"n": 1.7976931348623157e308, "m": -1e-400, "i": 12345678901234567890}',
     {"n": 1.7976931348623157e308, "m": -0.0, "i": 12345678901234567890}),
    ('{"s": "NaN", "t": "Infinity"}', {"s": "NaN", "t": "Infinity"}),  # words in strings are text
])
def test_plain_json_reads_as_before(text, value):
    assert jsontext.loads(text) == value


def test_every_reader_of_outside_json_goes_through_the_strict_parser():
    # Files and messages from outside the process; a store's own rows are read back with json.loads.
    outside = {
        "core/wire.py": "jsontext.loads(payload", "core/messages.py": "jsontext.loads(raw)",
        "core/manifest.py": "jsontext.loads(payload)", "gateway/branch/console/server.py": "jsontext.loads(raw",
        "gateway/counter/replay.py": "jsontext.loads(text)", "gateway/branch/export.py": "jsontext.loads(payload)",
        "gateway/scoring/model.py": "jsontext.loads(manifest_path", "centre/schema.py": "jsontext.loads(raw)",
        "centre/receiver.py": "jsontext.loads(msg.payload)", "centre/downlink.py": "jsontext.loads(card_path",
        "models/cases.py": "jsontext.loads(line)",
    }
    for path, call in outside.items():
        assert call in (ROOT / path).read_text(), path


# -- the quick paths a large message takes ----------------------------------------------------------------
def alternating(levels: int) -> str:
    """``levels`` of nesting, object and list in turn, the inner one holding a number."""
    opens = "".join('{"k":' if i % 2 == 0 else "[" for i in range(levels))
    closes = "".join("}" if i % 2 == 0 else "]" for i in reversed(range(levels)))
    return opens + "1" + closes


@pytest.mark.parametrize("levels", [jsontext.MAX_DEPTH - 1, jsontext.MAX_DEPTH])
def test_object_and_list_in_turn_parse_up_to_the_limit(levels):
    assert jsontext.loads(alternating(levels)) == json.loads(alternating(levels))


@pytest.mark.parametrize("levels", [jsontext.MAX_DEPTH + 1, jsontext.MAX_DEPTH + 2])
def test_object_and_list_in_turn_one_past_the_limit_are_refused(levels):
    with pytest.raises(jsontext.TooDeep):
        jsontext.loads(alternating(levels))


@pytest.mark.parametrize("string", ['"\\""', '"\\\\"', '"\\\\\\""', '"a\\\\\\\\"', '"[[[\\"]]]"'])
def test_deep_nesting_after_a_string_with_escapes_is_still_refused(string):
    deep = "[" * (jsontext.MAX_DEPTH + 1) + "]" * (jsontext.MAX_DEPTH + 1)
    assert json.loads(f"[{string}, 0]")  # the string is valid JSON
    with pytest.raises(jsontext.TooDeep):
        jsontext.loads(f"[{string}, {deep}]")
    shallow = "[" * (jsontext.MAX_DEPTH - 1) + "]" * (jsontext.MAX_DEPTH - 1)
    assert jsontext.loads(f"[{string}, {shallow}]") == json.loads(f"[{string}, {shallow}]")


def batch_with(value: str) -> str:
    """A message the size of an uploaded events batch, ``value`` in its last event."""
    events = [{"event_id": f"e-{i}", "account_hash": "19d2603c7e4599282ba0", "features": [i, 0, 1, 2.5, 7e-3]}
              for i in range(500)]
    return json.dumps({"events": events})[:-2] + f', {{"n": {value}}}]}}'


@pytest.mark.parametrize("value", ["1" + "0" * 400, "-" + "9" * 309, "1e400", "-2.5E+0309", "1" + "0" * 300 + "e9"])
def test_a_number_too_large_is_refused_in_a_large_message_too(value):
    with pytest.raises(jsontext.NotJSON, match="too large"):
        jsontext.loads(batch_with(value))
    with pytest.raises(jsontext.NotJSON, match="too large"):
        jsontext.loads(batch_with(value).encode("utf-8"))


@pytest.mark.parametrize("value", ["1" + "0" * 308, "9" * 300, "1e308", "1e-400", "12345678901234567890"])
def test_large_numbers_a_double_holds_read_as_before_in_a_large_message(value):
    assert jsontext.loads(batch_with(value)) == json.loads(batch_with(value))
