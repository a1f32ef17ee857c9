"""Wire protocol v1 (docs/protocol.md) for MicroPython: the same bytes as the gateway's codec.

One frame is one ASCII line ``$<TYPE> <SEQ> <PAYLOAD>*<CRC>\\n``; docs/protocol_vectors.json is the
single source of truth that this module and the gateway both pass byte for byte.

MicroPython's dicts do not keep insertion order, so events are never re-serialised from a dict:
``compact()`` rewrites the JSON *text* the terminal sent (whitespace dropped, non-ASCII and ``$``
escaped), keeping the terminal's key order and number spelling.
"""

from binascii import crc32 as _crc32
import json
from micropython import const

MAX_PAYLOAD = const(1024)
MAX_DEPTH = const(32)  # levels of JSON nesting in a payload
MAX_FRAME = const(1056)
MAX_SEQ = const(0xFFFFFFFF)
TYPES = ("EVT", "ACK", "NAK", "HB")

NOISE = "noise"
BAD_FRAME = "bad_frame"
TOO_LONG = "too_long"
BAD_CRC = "bad_crc"
BAD_TYPE = "bad_type"
BAD_JSON = "bad_json"
SCHEMA = "schema"
CONFLICT = "conflict"
BUSY = "busy"
# The sender resends after these; any other NAK means the event itself is wrong (docs/protocol.md).
RESEND_CODES = (BAD_CRC, BAD_FRAME, BUSY)

_HEX = b"0123456789abcdef"


class WireError(ValueError):
    """An event cannot be put on the line as it is (not JSON, too long...); ``code`` is a NAK code."""

    def __init__(self, code, detail):
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Frame:
    """A good frame: type, sequence number, decoded JSON object and the payload's raw bytes."""

    __slots__ = ("type", "seq", "body", "payload")

    def __init__(self, type_, seq, body, payload):
        self.type = type_
        self.seq = seq
        self.body = body
        self.payload = payload

    def __repr__(self):
        return "Frame(%s %d %r)" % (self.type, self.seq, self.body)


class FrameError:
    """What was wrong with some bytes on the line; ``seq`` is the frame's if readable, else 0."""

    __slots__ = ("code", "seq", "detail")

    def __init__(self, code, seq=0, detail=""):
        self.code = code
        self.seq = seq
        self.detail = detail

    def __repr__(self):
        return "FrameError(%s %d %s)" % (self.code, self.seq, self.detail)


def crc32(data):
    return _crc32(data) & 0xFFFFFFFF


def _is_ws(c):
    return c == 0x20 or c == 0x09 or c == 0x0A or c == 0x0D


def _escape_char(out, cp):
    if cp > 0xFFFF:  # astral plane: a UTF-16 surrogate pair, as CPython's json writes it
        cp -= 0x10000
        _escape_char(out, 0xD800 | (cp >> 10))
        cp = 0xDC00 | (cp & 0x3FF)
    out.extend(b"\\u")
    for shift in (12, 8, 4, 0):
        out.append(_HEX[(cp >> shift) & 0xF])


def compact(text, start=0):
    """Compact, ASCII-only JSON for one value in ``text`` (str or bytes) from ``start``.

    Returns ``(payload_bytes, end)``; whitespace outside strings is dropped, every non-ASCII
    character and every ``$`` becomes a ``\\uXXXX`` escape, so the payload can never start a frame.
    Only the shape is followed here; ``json.loads`` judges validity.
    """
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    out = bytearray()
    depth = 0
    in_str = False
    esc = False
    i = start
    n = len(text)
    started = False
    while i < n:
        ch = text[i]
        cp = ord(ch)
        i += 1
        if in_str:
            if esc:
                esc = False
                out.append(cp) if cp < 0x80 else _escape_char(out, cp)
            elif ch == "\\":
                esc = True
                out.append(cp)
            elif ch == '"':
                in_str = False
                out.append(cp)
                if depth == 0:
                    break
            elif ch == "$" or cp > 0x7F or cp < 0x20:
                _escape_char(out, cp)
            else:
                out.append(cp)
            continue
        if cp < 0x80 and _is_ws(cp):
            if started and depth == 0:
                break  # a scalar ended
            continue
        started = True
        if ch == '"':
            in_str = True
        elif ch == "{" or ch == "[":
            depth += 1
        elif ch == "}" or ch == "]":
            depth -= 1
            out.append(cp)
            if depth <= 0:
                break
            continue
        elif depth == 0 and ch == ",":
            i -= 1
            break
        if cp > 0x7F:
            _escape_char(out, cp)
        else:
            out.append(cp)
    return bytes(out), i


def too_deep(text):
    """True if JSON ``text`` nests more than MAX_DEPTH levels (brackets inside strings do not count).

    Checked before ``json.loads``: a line of '[' would make the parser allocate one list per
    bracket, and on a Pico's heap that ends in MemoryError, which would stop the node.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    in_str = False
    esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "[" or ch == "{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch == "]" or ch == "}":
            depth -= 1
    return False


def event_payload(line):
    """The payload for one event line from the terminal, or ``WireError`` saying what is wrong."""
    try:
        text = line.decode("utf-8") if isinstance(line, (bytes, bytearray)) else line
    except UnicodeError:
        raise WireError(BAD_JSON, "the line is not UTF-8 text; send one JSON object per line")
    if too_deep(text):
        raise WireError(BAD_JSON, "the line is JSON nested more than %d levels deep; send one event object per line"
                        % MAX_DEPTH)
    try:
        body = json.loads(text)
    except ValueError:
        raise WireError(BAD_JSON, "the line is not JSON; send one JSON object per line")
    if not isinstance(body, dict):
        raise WireError(BAD_JSON, "the line is JSON but not an object; send one event object per line")
    payload, _ = compact(text, 0)
    if len(payload) > MAX_PAYLOAD:
        raise WireError(TOO_LONG, "the event is %d bytes on the wire; the limit is %d - shorten it"
                        % (len(payload), MAX_PAYLOAD))
    return body, payload


def encode_frame(type_, seq, payload):
    """Bytes of one frame, line feed included; ``payload`` is compact JSON bytes (see compact())."""
    if type_ not in TYPES:
        raise ValueError("unknown frame type %r; expected one of %s" % (type_, ", ".join(TYPES)))
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError("sequence number %d is outside 0..%d" % (seq, MAX_SEQ))
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload is %d bytes; the limit is %d" % (len(payload), MAX_PAYLOAD))
    if b"$" in payload or b"\n" in payload or b"\r" in payload:
        raise ValueError("payload must not contain '$', CR or LF")
    inner = b"%s %d %s" % (type_.encode(), seq, payload)
    return b"$%s*%08x\n" % (inner, crc32(inner))


def _digits(b):
    if not b or len(b) > 10:
        return False
    for c in b:
        if c < 0x30 or c > 0x39:
            return False
    return True


def _seq_of(inner):
    parts = inner.split(b" ", 2)
    if len(parts) >= 2 and _digits(parts[1]):
        seq = int(parts[1])
        if seq <= MAX_SEQ:
            return seq
    return 0


def decode_line(line):
    """Decode one frame from ``$`` to just before the line feed (a trailing CR is allowed)."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.startswith(b"$"):
        return FrameError(NOISE, 0, "bytes outside a frame")
    star = line.rfind(b"*")
    if star < 0 or len(line) - star - 1 != 8:
        return FrameError(BAD_FRAME, _seq_of(line[1:]), "frame does not end in '*' and 8 hex digits")
    inner = line[1:star]
    crc_text = line[star + 1:]
    seq = _seq_of(inner)
    try:
        crc = int(crc_text, 16)
    except ValueError:
        return FrameError(BAD_FRAME, seq, "CRC is not 8 hex digits")
    if crc32(inner) != crc:
        return FrameError(BAD_CRC, seq, "CRC-32 does not match the frame")
    parts = inner.split(b" ", 2)
    if len(parts) != 3:
        return FrameError(BAD_FRAME, seq, "frame needs TYPE SEQ PAYLOAD separated by single spaces")
    type_b, seq_b, payload = parts
    if not (_digits(seq_b) and int(seq_b) <= MAX_SEQ):
        return FrameError(BAD_FRAME, 0, "sequence number must be 0..%d" % MAX_SEQ)
    type_ = type_b.decode()
    if type_ not in TYPES:
        return FrameError(BAD_TYPE, seq, "unknown frame type")
    if len(payload) > MAX_PAYLOAD:
        return FrameError(TOO_LONG, seq, "payload is %d bytes; the limit is %d" % (len(payload), MAX_PAYLOAD))
    try:
        text = payload.decode("utf-8")
    except UnicodeError:
        return FrameError(BAD_JSON, seq, "payload is not UTF-8")
    if too_deep(text):
        return FrameError(BAD_JSON, seq, "payload is nested more than %d levels deep" % MAX_DEPTH)
    try:
        body = json.loads(text)
    except ValueError:
        return FrameError(BAD_JSON, seq, "payload is not JSON")
    if not isinstance(body, dict):
        return FrameError(BAD_JSON, seq, "payload must be a JSON object")
    return Frame(type_, seq, body, payload)


class FrameDecoder:
    """Turns a byte stream into frames and errors, resynchronising on ``$`` and line feeds.

    The line buffer is allocated once (MAX_FRAME + 1 bytes) and reused for every frame.
    """

    def __init__(self):
        self._buf = bytearray(MAX_FRAME + 1)
        self._len = 0
        self._in_frame = False
        self._overflow = False

    def reset(self):
        """Forget a partial frame, e.g. after the port was reopened."""
        self._len = 0
        self._in_frame = False
        self._overflow = False

    def feed(self, data):
        """All frames and errors completed by ``data`` (a list, in order)."""
        out = []
        buf = self._buf
        for c in data:
            if c == 0x0A:
                self._end_line(out)
            elif c == 0x24:
                self._cut(out)
                self._in_frame = True
                buf[0] = c
                self._len = 1
            elif not self._overflow:
                if self._len >= MAX_FRAME:
                    self._flush_overflow(out)
                else:
                    buf[self._len] = c
                    self._len += 1
        return out

    def _head(self):
        return bytes(memoryview(self._buf)[1:min(self._len, 64)])

    def _noise(self):
        for i in range(self._len):
            if not _is_ws(self._buf[i]):
                return True
        return False

    def _flush_overflow(self, out):
        if self._in_frame:
            out.append(FrameError(TOO_LONG, _seq_of(self._head()), "frame longer than %d bytes" % MAX_FRAME))
        else:
            out.append(FrameError(NOISE, 0, "bytes outside a frame"))
        self._len = 0
        self._overflow = True

    def _end_line(self, out):
        if not self._overflow:
            if self._in_frame:
                out.append(decode_line(bytes(memoryview(self._buf)[:self._len])))
            elif self._noise():
                out.append(FrameError(NOISE, 0, "bytes outside a frame"))
        self._len = 0
        self._in_frame = False
        self._overflow = False

    def _cut(self, out):
        if not self._overflow:
            if self._in_frame:
                out.append(FrameError(BAD_FRAME, _seq_of(self._head()), "frame cut short by a new '$'"))
            elif self._noise():
                out.append(FrameError(NOISE, 0, "bytes outside a frame"))
        self._len = 0
        self._overflow = False
