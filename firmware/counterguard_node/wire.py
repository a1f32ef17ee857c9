"""Wire protocol v1 (docs/protocol.md) for MicroPython: the same bytes as the gateway's codec.

One frame is one ASCII line ``$<TYPE> <SEQ> <PAYLOAD>*<CRC>\\n``; docs/protocol_vectors.json is the
single source of truth that this module and the gateway both pass byte for byte.

MicroPython's dicts do not keep insertion order, so events are never re-serialised from a dict:
``compact()`` rewrites the JSON *text* the terminal sent (whitespace dropped, non-ASCII and ``$``
escaped), keeping the terminal's key order and number spelling.

JSON is read as strictly as the gateway reads it: MicroPython's parser is lenient (trailing commas, ``01``,
raw control characters in strings, a repeated key replacing the first, ``1e400`` as infinity), so
``json_problem`` checks the text against RFC 8259 before parsing and ``number_problem`` the parsed
value, and both refuse what the gateway refuses as ``bad_json``. On a port whose floats are single precision (the Pico), a number above about
3.4e38 is refused here although the gateway would take it; no field of an event comes near that.
"""

from binascii import crc32 as _crc32
import json
from micropython import const

MAX_PAYLOAD = const(1024)
MAX_DEPTH = const(32)  # levels of JSON nesting in a payload
MAX_FRAME = const(1056)
MAX_SEQ = const(0xFFFFFFFF)
TYPES = ("EVT", "ACK", "NAK", "HB", "ANS")

NOISE = "noise"
BAD_FRAME = "bad_frame"
TOO_LONG = "too_long"
BAD_CRC = "bad_crc"
BAD_TYPE = "bad_type"
BAD_JSON = "bad_json"
SCHEMA = "schema"
CONFLICT = "conflict"
BUSY = "busy"
UNKNOWN_EVENT = "unknown_event"  # answers for an event the gateway never scored
CLOSED = "closed"  # answers for an event whose alert already has its outcome
# The sender resends after these; any other NAK means the event itself is wrong (docs/protocol.md).
RESEND_CODES = (BAD_CRC, BAD_FRAME, BUSY)

_HEX = b"0123456789abcdef"
# The smallest integer a 64-bit double cannot hold (it rounds to infinity), as the gateway counts.
_TOO_BIG = (1 << 1024) - (1 << 970)
_INF = float("inf")
# Characters an event_id must not carry (docs/events.md): they change how text is shown, or, for a
# surrogate half, are not text at all. The gateway refuses every non-printable character; the node
# checks these, which are the ones that make one id look like another or break a log line.
_BIDI = (0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069)


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
    Only the shape is followed here; ``json_problem`` has judged validity before.
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


_VALUE = const(0)  # what json_problem expects next
_KEY = const(1)
_COLON = const(2)
_AFTER = const(3)
_ESCAPES = b'"\\/bfnrtu'


def _string_end(data, i):
    """Index just after the JSON string starting at ``data[i]`` (a quote), or -1 if it is not one."""
    n = len(data)
    i += 1
    while i < n:
        c = data[i]
        if c == 0x22:
            return i + 1
        if c < 0x20:
            return -1  # a raw control character: JSON wants it escaped
        if c == 0x5C:
            if i + 1 >= n or data[i + 1] not in _ESCAPES:
                return -1
            if data[i + 1] == 0x75:  # \uXXXX
                for c in data[i + 2:i + 6]:
                    if not (0x30 <= c <= 0x39 or 0x41 <= c <= 0x46 or 0x61 <= c <= 0x66):
                        return -1
                if i + 6 > n:
                    return -1
                i += 6
                continue
            i += 2
            continue
        i += 1
    return -1


def _digits_end(data, i):
    n = len(data)
    while i < n and 0x30 <= data[i] <= 0x39:
        i += 1
    return i


def _scalar_end(data, i):
    """Index just after the literal or number at ``data[i]``, or -1 if there is none."""
    for word in (b"true", b"false", b"null"):
        if data[i:i + len(word)] == word:
            return i + len(word)
    n = len(data)
    if data[i] == 0x2D:  # '-'
        i += 1
    if i >= n or not 0x30 <= data[i] <= 0x39:
        return -1
    i = i + 1 if data[i] == 0x30 else _digits_end(data, i)  # no leading zeros
    if i < n and data[i] == 0x2E:  # '.': at least one digit after it
        j = _digits_end(data, i + 1)
        if j == i + 1:
            return -1
        i = j
    if i < n and (data[i] == 0x65 or data[i] == 0x45):  # 'e'/'E', a sign, at least one digit
        i += 1
        if i < n and (data[i] == 0x2B or data[i] == 0x2D):
            i += 1
        j = _digits_end(data, i)
        if j == i:
            return -1
        i = j
    return i


def json_problem(data):
    """Why JSON ``data`` (bytes) must be refused before it is parsed, or None.

    MicroPython's parser is lenient (``01``, ``1.``, ``[1,]``, ``{"a" 1}``, ``1 2``, raw tabs in
    strings...), and compact() would even turn ``[1 2]`` into ``[12]``, so the text is checked here
    against RFC 8259 in one pass, as the gateway's parser checks it, before ``json.loads`` runs.
    The same pass refuses nesting deeper than MAX_DEPTH (a line of '[' would make the parser
    allocate one list per bracket, and on a Pico's heap that ends in MemoryError, which would stop
    the node) and a key repeated in one object (the parser would let the last one win:
    ``{"account": A, "account": B}`` must not reach anyone as B).
    """
    n = len(data)
    stack = []  # per open bracket: the keys seen so far for an object, None for an array
    state = _VALUE
    just_opened = False
    i = 0
    while True:
        while i < n and (data[i] == 0x20 or data[i] == 0x0A or data[i] == 0x0D or data[i] == 0x09):
            i += 1
        if i >= n:
            break
        c = data[i]
        fresh = just_opened
        just_opened = False
        if state == _VALUE or state == _KEY:
            if fresh and ((c == 0x7D and state == _KEY) or (c == 0x5D and state == _VALUE)):
                stack.pop()  # {} or []
                state = _AFTER
                i += 1
                continue
            if c == 0x22:
                j = _string_end(data, i)
                if j < 0:
                    return "a string at byte %d is not JSON text (a raw control character or a bad escape)" % i
                if state == _KEY:
                    key = data[i + 1:j - 1]
                    if 0x5C in key:  # "\u0061" is the key "a": compare what the keys say, not their spelling
                        key = json.loads(data[i:j]).encode()
                    if key in stack[-1]:
                        return "key %s appears twice in one object; each key may appear once" % key.decode()
                    stack[-1].add(key)
                    state = _COLON
                else:
                    state = _AFTER
                i = j
                continue
            if state == _KEY:
                return "an object key at byte %d is not a string" % i
            if c == 0x7B or c == 0x5B:
                stack.append(set() if c == 0x7B else None)
                if len(stack) > MAX_DEPTH:
                    return "nested more than %d levels deep" % MAX_DEPTH
                state = _KEY if c == 0x7B else _VALUE
                just_opened = True
                i += 1
                continue
            j = _scalar_end(data, i)
            if j < 0:
                return "no JSON value at byte %d" % i
            state = _AFTER
            i = j
            continue
        if state == _COLON:
            if c != 0x3A:
                return "no ':' after the key at byte %d" % i
            state = _VALUE
            i += 1
            continue
        if not stack:
            return "text after the JSON value at byte %d" % i
        if c == 0x2C:
            state = _VALUE if stack[-1] is None else _KEY
        elif (c == 0x7D and stack[-1] is not None) or (c == 0x5D and stack[-1] is None):
            stack.pop()
        else:
            return "no ',' or closing bracket at byte %d" % i
        i += 1
    if stack or state != _AFTER:
        return "the JSON text ends early"
    return None


def too_deep(text):
    """True if JSON ``text`` nests more than MAX_DEPTH levels (brackets inside strings do not count)."""
    problem = json_problem(text.encode() if isinstance(text, str) else text)
    return problem is not None and problem.startswith("nested")


def number_problem(value):
    """Why a parsed JSON value must be refused for a number in it, or None: an infinity (``1e400``)
    or an integer too large for a 64-bit double. Depth is bounded by json_problem beforehand."""
    if isinstance(value, float):
        if value == _INF or value == -_INF or value != value:
            return "a number is too large for a 64-bit float"
    elif isinstance(value, int):
        if value >= _TOO_BIG or value <= -_TOO_BIG:
            return "a number is too large for a 64-bit float"
    elif isinstance(value, dict):
        for v in value.values():
            p = number_problem(v)
            if p:
                return p
    elif isinstance(value, list):
        for v in value:
            p = number_problem(v)
            if p:
                return p
    return None


def event_id_problem(event_id):
    """Why an event_id must be refused (docs/events.md), or None."""
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 64:
        return "every event needs an event_id of 1 to 64 characters"
    for c in event_id:
        cp = ord(c)
        if cp < 0x20 or 0x7F <= cp <= 0x9F or 0xD800 <= cp <= 0xDFFF or cp in _BIDI:
            return "event_id must be printable text; U+%04X is a control, direction or surrogate character" % cp
    return None


def event_payload(line):
    """The payload for one line from the terminal (an event or answers), or ``WireError`` saying what
    is wrong."""
    try:
        text = line.decode("utf-8") if isinstance(line, (bytes, bytearray)) else line
    except UnicodeError:
        raise WireError(BAD_JSON, "the line is not UTF-8 text; send one JSON object per line")
    problem = json_problem(text.encode())
    if problem:
        raise WireError(BAD_JSON, "the line is JSON %s; send one event object per line" % problem
                        if problem.startswith("nested") else "the line is not JSON (%s); send one JSON object per line"
                        % problem)
    try:
        body = json.loads(text)
    except ValueError:
        raise WireError(BAD_JSON, "the line is not JSON; send one JSON object per line")
    if not isinstance(body, dict):
        raise WireError(BAD_JSON, "the line is JSON but not an object; send one event object per line")
    problem = number_problem(body)
    if problem:
        raise WireError(BAD_JSON, "the line is not JSON (%s); send one JSON object per line" % problem)
    payload, _ = compact(text, 0)
    if len(payload) > MAX_PAYLOAD:
        raise WireError(TOO_LONG, "the line is %d bytes on the wire; the limit is %d - shorten it"
                        % (len(payload), MAX_PAYLOAD))
    return body, payload


def encode_frame(type_, seq, payload):
    """Bytes of one frame, line feed included; ``payload`` is compact JSON bytes (see compact())."""
    if type_ not in TYPES:
        raise ValueError("unknown frame type %r; expected one of %s" % (type_, ", ".join(TYPES)))
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError("sequence number %d is outside 0..%d" % (seq, MAX_SEQ))
    if seq == 0 and type_ in ("EVT", "ANS"):
        raise ValueError("an event's or answers' sequence number must be 1 or more")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload is %d bytes; the limit is %d" % (len(payload), MAX_PAYLOAD))
    if b"$" in payload or b"\n" in payload or b"\r" in payload:
        raise ValueError("payload must not contain '$', CR or LF")
    inner = b"%s %d %s" % (type_.encode(), seq, payload)
    return b"$%s*%08x\n" % (inner, crc32(inner))


def _seq_number(b):
    """The number in a SEQ field: plain decimal, no leading zeros, 0..MAX_SEQ; else None."""
    if not b or len(b) > 10 or (b[0] == 0x30 and len(b) > 1):
        return None
    for c in b:
        if c < 0x30 or c > 0x39:
            return None
    seq = int(b)
    return seq if seq <= MAX_SEQ else None


def _seq_of(inner):
    parts = inner.split(b" ", 2)
    seq = _seq_number(parts[1]) if len(parts) >= 2 else None
    return seq or 0


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
    for c in crc_text:  # int(..., 16) alone would also take "0x", a sign, "_" or spaces
        if not (0x30 <= c <= 0x39 or 0x41 <= c <= 0x46 or 0x61 <= c <= 0x66):
            return FrameError(BAD_FRAME, seq, "CRC is not 8 hex digits")
    crc = int(crc_text, 16)
    if crc32(inner) != crc:
        return FrameError(BAD_CRC, seq, "CRC-32 does not match the frame")
    parts = inner.split(b" ", 2)
    if len(parts) != 3:
        return FrameError(BAD_FRAME, seq, "frame needs TYPE SEQ PAYLOAD separated by single spaces")
    type_b, seq_b, payload = parts
    if _seq_number(seq_b) is None:
        return FrameError(BAD_FRAME, 0, "sequence number must be decimal 0..%d without leading zeros" % MAX_SEQ)
    if seq == 0 and type_b in (b"EVT", b"ANS"):
        return FrameError(BAD_FRAME, 0, "an event's or answers' sequence number must be 1 or more")
    type_ = type_b.decode()
    if type_ not in TYPES:
        return FrameError(BAD_TYPE, seq, "unknown frame type")
    if len(payload) > MAX_PAYLOAD:
        return FrameError(TOO_LONG, seq, "payload is %d bytes; the limit is %d" % (len(payload), MAX_PAYLOAD))
    try:
        text = payload.decode("utf-8")
    except UnicodeError:
        return FrameError(BAD_JSON, seq, "payload is not UTF-8")
    problem = json_problem(payload)
    if problem:
        return FrameError(BAD_JSON, seq, "payload is " + problem if problem.startswith("nested") else problem)
    try:
        body = json.loads(text)
    except ValueError:
        return FrameError(BAD_JSON, seq, "payload is not JSON")
    if not isinstance(body, dict):
        return FrameError(BAD_JSON, seq, "payload must be a JSON object")
    problem = number_problem(body)
    if problem:
        return FrameError(BAD_JSON, seq, problem)
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
