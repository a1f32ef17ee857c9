"""JSON from outside (the counter line, the broker, a file, a browser), parsed strictly and without
recursing deep.

Strict: only what RFC 8259 calls JSON and every other parser reads the same way. Python's parser
also takes ``NaN`` and ``Infinity``, turns ``1e400`` into infinity, and lets a repeated key
silently replace the first (``{"account": "<stop-listed>", "account": "<clean>"}`` would be scored on
the second while a log or another reader shows the first). All of these are refused here as
``NotJSON``, so what counterguard stores and writes out again is always plain JSON.

Not deep: Python's parser recurses once per level of nesting. A payload of thousands of '[' drives it
to the interpreter's recursion limit; it does raise RecursionError, but any finaliser or warning that
runs at that depth (the garbage collector picks its moments) fails too, on whichever thread is
parsing. So nesting is measured first, on the brackets outside strings, and anything deeper than any
message counterguard sends is refused before the parser sees it.
"""

from __future__ import annotations

import json
import math
import re

MAX_DEPTH = 32  # every message counterguard sends is a few levels deep; this leaves a wide margin
# A number whose magnitude rounds past the largest IEEE double: a reader in any other language
# overflows on it. Python's float() overflows at exactly this integer too.
TOO_BIG = (1 << 1024) - (1 << 970)

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class NotJSON(json.JSONDecodeError):
    """Text Python's parser would take that is not strict JSON. A JSONDecodeError (and so a
    ValueError), so every caller that handles bad JSON handles this too."""

    def __init__(self, msg: str):
        ValueError.__init__(self, msg)
        self.msg, self.doc, self.pos, self.lineno, self.colno = msg, "", 0, 1, 1

    def __reduce__(self):
        return type(self), (self.msg,)


class TooDeep(NotJSON):
    pass


def _object(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise NotJSON(f"duplicate key {key!r} in one object; each key may appear once")
            seen.add(key)
    return obj


def _constant(name: str):
    raise NotJSON(f"{name} is not a JSON value; send a finite number or null")


def _too_big(text: str) -> NotJSON:
    shown = text if len(text) <= 24 else text[:20] + "..."
    return NotJSON(f"number {shown} is too large for a 64-bit float")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _too_big(text)
    return value


def _int(text: str) -> int:
    value = int(text)
    if abs(value) >= TOO_BIG:
        raise _too_big(text)
    return value


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant, parse_float=_float,
                            parse_int=_int)
# Without the whole-number hook the parser reads whole numbers in C: a batch of 500 uploaded events
# holds some 24,000 of them, and a Python call for each was a third of the cost of reading it. A
# whole number is too big only with 309 digits or more, which one C pass finds; fractions keep
# their hook (an exponent can overflow with few digits).
_FAST = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant, parse_float=_float)
_DIGITS = bytes(48 if 48 <= c <= 57 else 120 for c in range(256))  # every digit '0', anything else 'x'
_LONG_NUMBER = b"0" * 309
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'[]{}"')
_QUOTED = re.compile(rb'"[^"]*"')


def loads(data: bytes | bytearray | str, max_depth: int = MAX_DEPTH):
    """``json.loads`` for untrusted text; bytes must be UTF-8. Raises ValueError (UnicodeDecodeError,
    json.JSONDecodeError, NotJSON or TooDeep) for anything that is not strict JSON nested at most
    ``max_depth`` deep."""
    if isinstance(data, str):
        text, raw = data, data.encode("utf-8")
    else:
        text, raw = data.decode("utf-8"), bytes(data)
    if text.count("[") + text.count("{") > max_depth and not _surely_shallow(raw, max_depth):
        check_depth(text, max_depth)  # cheap tests first: most messages have a few brackets
    return (_DECODER if _LONG_NUMBER in raw.translate(_DIGITS) else _FAST).decode(text)


def _surely_shallow(raw: bytes, max_depth: int) -> bool:
    """True when ``raw`` is nested at most ``max_depth`` deep, found with whole-string operations in
    C; False when that is not sure (check_depth then decides). Escaped backslashes and quotes go
    first, so the quotes left pair up as the parser's strings do, and those strings go with them;
    each round then drops the innermost level of what is left. A round may drop a [] level and then
    a {} level, so half as many rounds as levels."""
    s = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    s = _QUOTED.sub(b"", s)
    for _ in range(max_depth // 2):
        inner = s.replace(b"[]", b"").replace(b"{}", b"")
        if not inner:
            return True
        if len(inner) == len(s):
            return False  # unbalanced: not JSON, but let check_depth say how deep before the parser sees it
        s = inner
    return False


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    depth = 0
    for bracket in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > max_depth:
            raise TooDeep(f"nested too deeply (more than {max_depth} levels)")
