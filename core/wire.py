"""Wire protocol v1 between a counter node (or teller terminal) and the gateway.

One frame is one line::

    $<TYPE> <SEQ> <PAYLOAD>*<CRC>\\n

``TYPE`` is ``EVT``, ``ACK``, ``NAK`` or ``HB``; ``SEQ`` the sender's sequence number in plain
decimal (no leading zeros; never 0 on an ``EVT``, as 0 in a NAK means "unreadable"); ``PAYLOAD`` a
strict JSON object (no duplicate keys, NaN or overflowing numbers) of at most 1 KiB that never
contains ``$`` (encoders write ``\\u0024``); ``CRC`` the CRC-32 (IEEE, as zlib) of the bytes
between ``$`` and ``*``, as exactly 8 hex digits. A ``$`` always starts a new frame and a line feed
always ends one, so the decoder resynchronises after noise or a cut frame without losing the next
good frame. docs/protocol.md is the spec; docs/protocol_vectors.json
holds the test vectors shared with the firmware.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field

from counterguard.core import jsontext

VERSION = 1
START = 0x24  # '$'
END = 0x0A  # '\n'
MAX_PAYLOAD = 1024
MAX_DEPTH = 32  # levels of JSON nesting in a payload
# '$' + type + seq + spaces + payload + '*' + crc + '\r\n' fits in this, with room to spare.
MAX_FRAME = 1056
MAX_SEQ = 0xFFFFFFFF
TYPES = ("EVT", "ACK", "NAK", "HB", "ANS")  # ANS: the customer's answers to the caring questions
_HEX8 = re.compile(rb"[0-9A-Fa-f]{8}")

# NAK codes, documented in docs/protocol.md. The sender resends after `busy`; the others mean the
# frame itself is wrong and resending it unchanged cannot help.
NOISE = "noise"
BAD_FRAME = "bad_frame"
TOO_LONG = "too_long"
BAD_CRC = "bad_crc"
BAD_TYPE = "bad_type"
BAD_JSON = "bad_json"
SCHEMA = "schema"
CONFLICT = "conflict"
BUSY = "busy"
INTERNAL = "internal"  # the gateway failed on this frame; it logged why and the line goes on
UNKNOWN_EVENT = "unknown_event"  # answers for an event this gateway never scored
CLOSED = "closed"  # answers for an event whose alert already has its outcome
NAK_CODES = (NOISE, BAD_FRAME, TOO_LONG, BAD_CRC, BAD_TYPE, BAD_JSON, SCHEMA, CONFLICT, BUSY, INTERNAL,
             UNKNOWN_EVENT, CLOSED)
SEQUENCED = ("EVT", "ANS")  # frames that are answered by their SEQ: never numbered 0


@dataclass(frozen=True)
class Frame:
    """A good frame: its type, sequence number, decoded JSON object and the payload's raw bytes."""

    type: str
    seq: int
    body: dict
    payload: bytes = field(repr=False, compare=False, default=b"")


@dataclass(frozen=True)
class FrameError:
    """What was wrong with some bytes on the line; ``seq`` is the frame's if it could be read, else 0."""

    code: str
    seq: int = 0
    detail: str = ""
    field: str | None = None

    def nak_body(self) -> dict:
        body = {"code": self.code, "detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        # A detail may quote the offending bytes; shorten it so the NAK itself always fits in a frame.
        while len(encode_payload(body)) > MAX_PAYLOAD and len(body["detail"]) > 8:
            body["detail"] = body["detail"][: len(body["detail"]) // 2] + "..."
        return body


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_payload(body: dict) -> bytes:
    """Compact, ASCII-only JSON with every ``$`` escaped, so a payload can never start a frame.
    Raises ValueError for NaN or infinity, which no decoder accepts."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("$", "\\u0024").encode("ascii")


def encode_frame(type_: str, seq: int, body: dict | bytes) -> bytes:
    """Bytes of one frame, line feed included. ``body`` may be pre-encoded payload bytes."""
    if type_ not in TYPES:
        raise ValueError(f"unknown frame type {type_!r}; expected one of {', '.join(TYPES)}")
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number {seq} is outside 0..{MAX_SEQ}")
    if seq == 0 and type_ in SEQUENCED:
        raise ValueError(f"an {type_} frame's sequence number must be 1 or more; 0 in a NAK means 'unreadable'")
    payload = body if isinstance(body, bytes) else encode_payload(body)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD}")
    if b"$" in payload or b"\n" in payload or b"\r" in payload:
        raise ValueError("payload must not contain '$', CR or LF")
    inner = b"%s %d %s" % (type_.encode("ascii"), seq, payload)
    return b"$%s*%08x\n" % (inner, crc32(inner))


def _seq_number(text: bytes) -> int | None:
    """The number in a SEQ field written as encoders write it: plain decimal, no sign, no leading
    zeros, 0..MAX_SEQ. ``007`` is refused rather than read as 7, so an answer's SEQ is always the
    sender's own bytes."""
    if not (text.isdigit() and len(text) <= 10) or (text[:1] == b"0" and len(text) > 1):
        return None
    seq = int(text)
    return seq if seq <= MAX_SEQ else None


def _seq_of(inner: bytes) -> int:
    """Best-effort sequence number of a damaged frame, so its NAK can name it (0 if unreadable)."""
    parts = inner.split(b" ", 2)
    seq = _seq_number(parts[1]) if len(parts) >= 2 else None
    return seq or 0


def decode_line(line: bytes) -> Frame | FrameError:
    """Decode one frame from ``$`` to just before the line feed (a trailing CR is allowed)."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.startswith(b"$"):
        return FrameError(NOISE, 0, "bytes outside a frame")
    star = line.rfind(b"*")
    if star < 0 or len(line) - star - 1 != 8:
        return FrameError(BAD_FRAME, _seq_of(line[1:]), "frame does not end in '*' and 8 hex digits")
    inner, crc_text = line[1:star], line[star + 1 :]
    seq = _seq_of(inner)
    if not _HEX8.fullmatch(crc_text):  # int(..., 16) alone would also take "0x", a sign, "_" or spaces
        return FrameError(BAD_FRAME, seq, "CRC is not 8 hex digits")
    crc = int(crc_text, 16)
    if crc32(inner) != crc:
        return FrameError(BAD_CRC, seq, "CRC-32 does not match the frame")
    parts = inner.split(b" ", 2)
    if len(parts) != 3:
        return FrameError(BAD_FRAME, seq, "frame needs TYPE SEQ PAYLOAD separated by single spaces")
    type_b, seq_b, payload = parts
    if _seq_number(seq_b) is None:
        return FrameError(BAD_FRAME, 0, f"sequence number must be decimal 0..{MAX_SEQ} without leading zeros")
    if seq == 0 and type_b in (b"EVT", b"ANS"):
        return FrameError(BAD_FRAME, 0, "an event's or answers' sequence number must be 1 or more")
    type_ = type_b.decode("ascii", "replace")
    if type_ not in TYPES:
        return FrameError(BAD_TYPE, seq, f"unknown frame type {type_!r}")
    if len(payload) > MAX_PAYLOAD:
        return FrameError(TOO_LONG, seq, f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD}")
    try:
        body = jsontext.loads(payload, MAX_DEPTH)
    except ValueError as exc:  # UnicodeDecodeError, duplicate keys, NaN and a flood of '[' included
        return FrameError(BAD_JSON, seq, f"payload is not JSON: {exc}")
    if not isinstance(body, dict):
        return FrameError(BAD_JSON, seq, "payload must be a JSON object")
    return Frame(type_, seq, body, payload)


class FrameDecoder:
    """Turns a byte stream into frames and errors, resynchronising on ``$`` and line feeds.

    >>> d = FrameDecoder()
    >>> d.feed(b"noise\\n" + encode_frame("HB", 1, {}))
    [FrameError(code='noise', seq=0, detail='bytes outside a frame', field=None), Frame(type='HB', seq=1, body={})]
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._in_frame = False
        self._overflow = False  # the current frame or noise run passed MAX_FRAME; skip to its end

    def reset(self) -> None:
        """Forget a partial frame, e.g. after the port was reopened."""
        self._buf.clear()
        self._in_frame = False
        self._overflow = False

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        out: list[Frame | FrameError] = []
        buf = self._buf
        i, n = 0, len(data)
        while i < n:
            # Next byte that ends or starts something.
            nl = data.find(b"\n", i)
            dl = data.find(b"$", i)
            stop = n if nl < 0 else nl
            if 0 <= dl < stop:
                stop = dl
            chunk = data[i:stop]
            if not self._overflow:
                buf += chunk
                if len(buf) > MAX_FRAME:
                    self._flush_overflow(out)
            i = stop
            if i == n:
                break
            if data[i] == END:
                self._end_line(out)
            else:  # '$': a new frame starts; whatever was open is cut short
                self._cut(out)
                self._in_frame = True
                buf += b"$"
            i += 1
        return out

    def _flush_overflow(self, out: list) -> None:
        if self._in_frame:
            out.append(FrameError(TOO_LONG, _seq_of(bytes(self._buf[1:64])), f"frame longer than {MAX_FRAME} bytes"))
        else:
            out.append(FrameError(NOISE, 0, "bytes outside a frame"))
        self._buf.clear()
        self._overflow = True

    def _end_line(self, out: list) -> None:
        if not self._overflow:
            if self._in_frame:
                out.append(decode_line(bytes(self._buf)))
            elif self._buf.strip():
                out.append(FrameError(NOISE, 0, "bytes outside a frame"))
        self._buf.clear()
        self._in_frame = False
        self._overflow = False

    def _cut(self, out: list) -> None:
        if not self._overflow:
            if self._in_frame:
                out.append(FrameError(BAD_FRAME, _seq_of(bytes(self._buf[1:64])), "frame cut short by a new '$'"))
            elif self._buf.strip():
                out.append(FrameError(NOISE, 0, "bytes outside a frame"))
        self._buf.clear()
        self._overflow = False
