"""JSON from outside is refused for deep nesting before the parser recurses, so a flood of '[' can never
bring a reader thread (counter line, intake, downlink) near the interpreter's recursion limit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import jsontext

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
from gateway import jsontext
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
