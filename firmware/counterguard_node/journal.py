"""Events kept in flash until the gateway has answered them: the node's promise that nothing is lost.

The journal is one append-only file of wire-protocol frames, so every record carries its own CRC-32
and the frame decoder that reads the line also reads the journal:

    $EVT <seq> <event>*crc     taken in from the terminal, not yet answered by the gateway
    $ACK <seq> {...}*crc       the gateway answered (ACK, or a NAK that means "do not resend")
    $HB <seq> {}*crc           written first by a compaction: the last sequence number used

A reset in the middle of an append leaves a torn last record; ``$`` always starts a new frame, so the
next append resynchronises and the torn record (bad CRC or cut short) is ignored on reading. The
terminal is only told an event was taken after its record is written.

Compaction writes the live events to ``journal.new`` and renames it over ``journal.log`` (a rename
is atomic on littlefs and POSIX), so a reset during compaction leaves either the old or the new file.

The bound (``capacity`` events, default 200) is what flash can promise: 200 events of at most 1056
bytes each is about 210 KB, inside a Pico's 1.4 MB filesystem even with the log's settled records.
RAM holds only where each event sits in the file (about 100 bytes per event); the frame is read back
from flash for every send.
When the journal is full ``put`` raises ``JournalFull`` and the bridge tells the terminal to stop.
"""

import os
from . import wire

LOG = "journal.log"
NEW = "journal.new"


class JournalFull(Exception):
    """No room for another event; the terminal must hold new transactions until ``resume``."""


class Pending:
    """One event waiting for the gateway: where its frame sits in the journal file (the bytes are
    read back for each send, so RAM holds about 100 bytes per event, not the event) and resend state."""

    __slots__ = ("seq", "event_id", "offset", "length", "attempts", "due")

    def __init__(self, seq, event_id, offset, length):
        self.seq = seq
        self.event_id = event_id
        self.offset = offset
        self.length = length
        self.attempts = 0
        self.due = None  # ticks_ms when it may be (re)sent; None = now


def _join(a, b):
    return a + "/" + b if a else b


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Journal:
    """The pending events, oldest first, mirrored in ``<directory>/journal.log``.

    >>> j = Journal("/state", capacity=200)    # on the board: a folder on the flash filesystem
    >>> p = j.put(b'{"event_id":"e1",...}', "e1")
    >>> uart.write(j.frame(p))                  # the same bytes every time it is sent
    >>> j.settle(p.seq)                         # after the gateway's ACK
    """

    def __init__(self, directory, capacity=200, compact_bytes=65536):
        if capacity < 1:
            raise ValueError("journal capacity must be at least 1 event")
        self.directory = directory
        self.capacity = capacity
        self.compact_bytes = compact_bytes
        self.pending = []  # Pending, oldest first
        self.last_seq = 0
        self._log = _join(directory, LOG)
        self._new = _join(directory, NEW)
        self._size = 0
        self._file = None  # appends
        self._reader = None  # frames read back for sending
        self._recover()

    # -- reading back after a reset --------------------------------------------------------------
    def _recover(self):
        if _exists(self._new):
            if _exists(self._log):
                os.remove(self._new)  # a compaction that never finished: the old log is whole
            else:
                os.rename(self._new, self._log)
        live = {}
        order = []
        if _exists(self._log):
            decoder = wire.FrameDecoder()
            with open(self._log, "rb") as f:
                while True:
                    chunk = f.read(512)
                    if not chunk:
                        break
                    for item in decoder.feed(chunk):
                        self._replay(item, live, order)
            for item in decoder.feed(b"\n"):  # a torn last record without its line feed
                self._replay(item, live, order)
        entries = [live[s] for s in order if s in live]  # (Pending, payload), oldest first
        self.pending = [e[0] for e in entries]
        self._compact([e[1] for e in entries])

    def _replay(self, item, live, order):
        if not isinstance(item, wire.Frame):
            return  # a torn record: it was never confirmed to anyone
        if item.seq > self.last_seq:
            self.last_seq = item.seq
        if item.type == "EVT":
            if item.seq not in live:
                order.append(item.seq)
            # Recovery keeps the payload until the rewrite below; after that only offsets stay in RAM.
            live[item.seq] = (Pending(item.seq, item.body.get("event_id"), 0, 0), item.payload)
        elif item.type == "ACK":
            live.pop(item.seq, None)

    def _compact(self, payloads=None):
        """Rewrite the live events to a new file and rename it over the log."""
        if payloads is None:
            payloads = [self._payload(p) for p in self.pending]
        self.close()
        with open(self._new, "wb") as f:
            offset = f.write(wire.encode_frame("HB", self.last_seq, b"{}"))
            for p, payload in zip(self.pending, payloads):
                frame = wire.encode_frame("EVT", p.seq, payload)
                p.offset, p.length = offset, len(frame)
                offset += f.write(frame)
        os.rename(self._new, self._log)
        self._size = offset

    def frame(self, p):
        """The frame bytes of pending event ``p``, read back from flash."""
        if self._reader is None:
            self._reader = open(self._log, "rb")
        self._reader.seek(p.offset)
        return self._reader.read(p.length)

    def _payload(self, p):
        frame = self.frame(p)
        return frame[frame.index(b" ", 5) + 1:frame.rindex(b"*")]

    # -- use -------------------------------------------------------------------------------------
    def __len__(self):
        return len(self.pending)

    @property
    def full(self):
        return len(self.pending) >= self.capacity

    def next_seq(self):
        self.last_seq = self.last_seq % wire.MAX_SEQ + 1
        return self.last_seq

    def _append(self, data):
        """Append one record; returns its offset in the file."""
        if self._file is None:
            self._file = open(self._log, "ab")
        if self._reader is not None:
            # Reopened on the next read, so it surely sees this record (littlefs handles are separate).
            self._reader.close()
            self._reader = None
        offset = self._size
        self._file.write(data)
        self._file.flush()  # on littlefs this commits the record; the terminal hears "queued" after it
        self._size += len(data)
        return offset

    def put(self, payload, event_id):
        """Keep one event (compact payload bytes); returns its ``Pending``. Raises ``JournalFull``."""
        if self.full:
            raise JournalFull("%d events are waiting for the gateway (the limit)" % len(self.pending))
        seq = self.next_seq()
        frame = wire.encode_frame("EVT", seq, payload)
        p = Pending(seq, event_id, self._append(frame), len(frame))
        self.pending.append(p)
        return p

    def find(self, seq):
        for p in self.pending:
            if p.seq == seq:
                return p
        return None

    def settle(self, seq):
        """The gateway answered ``seq`` for good: forget it (and compact the file now and then)."""
        p = self.find(seq)
        if p is None:
            return None
        self._append(wire.encode_frame("ACK", seq, b"{}"))
        self.pending.remove(p)
        if self._size > self.compact_bytes or (not self.pending and self._size > 4096):
            self._compact()
        return p

    def close(self):
        for f in (self._file, self._reader):
            if f is not None:
                f.close()
        self._file = self._reader = None
