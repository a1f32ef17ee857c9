"""JSON from outside (the counter line, the broker, a file, a browser), parsed without recursing deep.

Python's parser recurses once per level of nesting. A payload of thousands of '[' drives it to the
interpreter's recursion limit; it does raise RecursionError, but any finaliser or warning that runs
at that depth (the garbage collector picks its moments) fails too, on whichever thread is parsing.
So nesting is measured first, on the brackets outside strings, and anything deeper than any message
counterguard sends is refused as a plain ValueError before the parser sees it.
"""

from __future__ import annotations

import json
import re

MAX_DEPTH = 32  # every message counterguard sends is a few levels deep; this leaves a wide margin

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class TooDeep(ValueError):
    pass


def loads(data: bytes | bytearray | str, max_depth: int = MAX_DEPTH):
    """``json.loads`` for untrusted text; bytes must be UTF-8. Raises ValueError (UnicodeDecodeError,
    json.JSONDecodeError or TooDeep) for anything that is not JSON nested at most ``max_depth`` deep."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    if text.count("[") + text.count("{") > max_depth:  # cheap test first: most messages have a few brackets
        check_depth(text, max_depth)
    return json.loads(text)


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    depth = 0
    for bracket in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > max_depth:
            raise TooDeep(f"nested too deeply (more than {max_depth} levels)")
