"""The teller terminal's side of the node: one JSON object per line, in and out (UTF-8, LF).

In: one event per line (docs/events.md), or an event's answers to the caring questions (a line with an
``answers`` member, see dialogue.py). Out: one JSON object per line with a ``type``:
``ready``, ``queued``, ``verdict``, ``rejected``, ``error``, ``stop``, ``resume``, ``offline``,
``online`` (docs/firmware.md lists every field).
"""

import json
from micropython import const

MAX_LINE = const(2048)  # longer than any event that can fit a 1024-byte payload


class TerminalPort:
    """Assembles lines from the terminal's port and writes reply lines back.

    >>> terminal = TerminalPort(PolledPort(sys.stdin.buffer, sys.stdout.buffer))
    >>> for line in terminal.lines(): ...      # bytes, or TOO_LONG for an overlong line
    >>> terminal.send({"type": "ready"})
    """

    TOO_LONG = object()

    def __init__(self, port, max_line=MAX_LINE):
        self.port = port
        self.max_line = max_line
        self._line = bytearray(max_line)
        self._len = 0
        self._overflow = False
        self._chunk = bytearray(256)

    def lines(self):
        out = []
        n = self.port.readinto(self._chunk)
        if not n:
            return out
        line = self._line
        for i in range(n):
            c = self._chunk[i]
            if c == 0x0A:
                if self._overflow:
                    out.append(self.TOO_LONG)
                elif self._len:
                    out.append(bytes(memoryview(line)[:self._len]))
                self._len = 0
                self._overflow = False
            elif self._overflow:
                continue
            elif self._len >= len(line):
                self._overflow = True
            else:
                line[self._len] = c
                self._len += 1
        return out

    def send(self, message):
        """Write one reply line: a dict, or JSON object bytes already encoded."""
        if isinstance(message, dict):
            message = json.dumps(message).encode()
        self.port.write(message + b"\n")

    def send_with_type(self, type_, payload, extra=None):
        """``{"type": type_, <extra>, <the fields of JSON object bytes payload>}`` as one line.

        The gateway's payload is spliced in as it came, keeping its key order.
        """
        head = b'{"type":' + json.dumps(type_).encode()
        if extra:
            for key in extra:
                head += b"," + json.dumps(key).encode() + b":" + json.dumps(extra[key]).encode()
        body = bytes(payload).strip()
        if len(body) > 2 and body[0] == 0x7B:  # '{' with at least one member
            self.port.write(head + b"," + body[1:] + b"\n")
        else:
            self.port.write(head + b"}\n")
