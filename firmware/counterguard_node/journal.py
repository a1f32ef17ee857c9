"""Events, and their answers to the caring questions, kept in flash until the gateway has answered
them: the node's promise that nothing is lost.

The journal is one append-only file of wire-protocol frames, one per line, so every record carries
its own CRC-32 and is read back with the same codec that reads the line:

    $EVT <seq> <event>*crc     taken in from the terminal, not yet answered by the gateway
    $ANS <seq> <answers>*crc   the customer's answers for an event, taken in and kept the same way
    $ACK <seq> {}*crc          the gateway answered (ACK, or a NAK that means "do not resend")
    $HB <seq> {}*crc           written first by a clean-up: the last sequence number used

A record counts only once its line feed is written: the terminal hears ``queued`` after the whole
record has been flushed, so a reset in the middle of an append leaves a torn record that was never
confirmed to anyone. It is skipped on reading (a ``$`` always starts a new record, and a record
without its line feed or with a bad CRC is not one).

Clean-up copies the live event records, byte for byte, one at a time, to ``journal.new`` and renames
it over ``journal.log`` (a rename is atomic on littlefs and POSIX), so a reset during clean-up leaves
either the old or the new file. Neither start-up nor clean-up holds more than one event in RAM.

The bound (``capacity`` events, default 200) is what flash can promise: a clean-up briefly holds two
copies of every waiting event (at most 1056 bytes each) plus up to ``compact_bytes`` of settled
records, about 0.5 MB for 200 events, inside a Pico's 1.4 MB filesystem. RAM holds only where each
event sits in the file and its resend state (one small object per event); the frame is read back from
flash into one buffer, allocated once, for every send. When the journal is full ``put`` raises
``JournalFull`` and the bridge tells the terminal to stop.
"""

import os
from . import wire

LOG = "journal.log"
NEW = "journal.new"
_LINE_LIMIT = 2 * wire.MAX_FRAME + 2  # a torn record and a whole one can share a line, never more


class JournalFull(Exception):
    """No room for another event; the terminal must hold new transactions until ``resume``."""


class Pending:
    """One event waiting for the gateway: where its frame (line feed included) sits in the journal
    file, and its resend state."""

    __slots__ = ("seq", "event_id", "offset", "length", "attempts", "due")
    kind = "EVT"  # the frame type; a class attribute, so it costs no RAM per waiting record

    def __init__(self, seq, event_id, offset, length):
        self.seq = seq
        self.event_id = event_id
        self.offset = offset
        self.length = length
        self.attempts = 0
        self.due = None  # ticks_ms when it may be (re)sent; None = now


class PendingAnswers(Pending):
    """One event's answers to the caring questions waiting for the gateway (an ``ANS`` frame)."""

    kind = "ANS"


_PENDING = {"EVT": Pending, "ANS": PendingAnswers}


def _join(a, b):
    return a + "/" + b if a else b


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


def _nothing():
    pass


class Journal:
    """The pending events, oldest first, mirrored in ``<directory>/journal.log``.

    ``feed`` is called after each record read or copied at start-up and clean-up (pass the
    watchdog's ``feed``: a long clean-up is progress, not a hang).

    >>> j = Journal("/state", capacity=200, feed=wdt.feed)    # on the board: a folder on flash
    >>> p = j.put(b'{"event_id":"e1",...}', "e1")
    >>> uart.write(j.frame(p))                  # the same bytes every time it is sent
    >>> j.settle(p.seq)                         # after the gateway's ACK
    """

    def __init__(self, directory, capacity=200, compact_bytes=65536, feed=None):
        if capacity < 1:
            raise ValueError("journal capacity must be at least 1 event")
        self.directory = directory
        self.capacity = capacity
        self.compact_bytes = compact_bytes
        self.pending = []  # Pending, oldest first
        self.last_seq = 0
        self._log = _join(directory, LOG)
        self._new = _join(directory, NEW)
        self._feed = feed or _nothing
        self._buf = bytearray(wire.MAX_FRAME + 1)  # one frame read back from flash, reused for every send
        self._size = 0
        self._file = None  # appends
        self._reader = None  # frames read back for sending
        self._recover()

    # -- reading back after a reset --------------------------------------------------------------
    def _recover(self):
        if _exists(self._new):
            if _exists(self._log):
                os.remove(self._new)  # a clean-up that never finished: the old log is whole
            else:
                os.rename(self._new, self._log)
        live = {}
        order = []
        if _exists(self._log):
            with open(self._log, "rb") as f:
                offset = 0
                while True:
                    line = f.readline(_LINE_LIMIT)
                    if not line:
                        break
                    self._replay(line, offset, live, order)
                    offset += len(line)
                    self._feed()
        self.pending = [live[s] for s in order if s in live]
        try:
            self._compact()
        except OSError:
            self._size = _size(self._log)  # flash full: go on appending to the old log, whose offsets hold

    def _replay(self, line, offset, live, order):
        if line[-1] != 0x0A:
            return  # torn: its line feed never reached flash, so the terminal never heard "queued"
        start = line.rfind(b"$")  # a torn record may sit before it on the same line
        if start < 0:
            return
        item = wire.decode_line(line[start:-1])
        if not isinstance(item, wire.Frame):
            return
        if item.seq > self.last_seq:
            self.last_seq = item.seq
        if item.type in _PENDING:  # an event or its answers
            if item.seq not in live:
                order.append(item.seq)
            live[item.seq] = _PENDING[item.type](item.seq, item.body.get("event_id"), offset + start,
                                                 len(line) - start)
        elif item.type == "ACK":
            live.pop(item.seq, None)

    def _compact(self):
        """Copy the live events to a new file and rename it over the log.

        Offsets change only once the new file is in place, so a failed clean-up (flash full) leaves
        the journal as it was.
        """
        self.close()
        offsets = []
        src = open(self._log, "rb") if _exists(self._log) else None
        try:
            with open(self._new, "wb") as f:
                offset = f.write(wire.encode_frame("HB", self.last_seq, b"{}"))
                for p in self.pending:
                    offsets.append(offset)
                    offset += f.write(self._read(src, p))
                    self._feed()
        except OSError:
            try:
                os.remove(self._new)
            except OSError:
                pass
            raise
        finally:
            if src is not None:
                src.close()
        os.rename(self._new, self._log)
        for p, new_offset in zip(self.pending, offsets):
            p.offset = new_offset
        self._size = offset

    def _read(self, f, p):
        f.seek(p.offset)
        view = memoryview(self._buf)[:p.length]
        if f.readinto(view) != p.length:
            raise OSError("journal record %d is cut short in %s" % (p.seq, self._log))
        return view

    def frame(self, p):
        """The frame bytes of pending event ``p``, read back from flash.

        A view of the journal's one read buffer: write it out before asking for the next frame.
        """
        if self._reader is None:
            self._reader = open(self._log, "rb")
        return self._read(self._reader, p)

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
        if self._reader is not None:
            # Reopened on the next read, so it surely sees this record (littlefs handles are separate).
            self._reader.close()
            self._reader = None
        try:
            if self._file is None:
                self._file = open(self._log, "ab")
            offset = self._size
            if self._file.write(data) != len(data):
                raise OSError("flash took only part of a journal record")
            self._file.flush()  # on littlefs this commits the record; the terminal hears "queued" after it
        except OSError:
            # Flash full or failing: whatever part was written is a torn record; later appends go after it.
            self.close()
            self._size = _size(self._log)
            raise
        self._size += len(data)
        return offset

    def put(self, payload, event_id, kind="EVT"):
        """Keep one event, or with ``kind="ANS"`` one event's answers (compact payload bytes); returns
        its ``Pending``. Answers count against the capacity like events.

        Raises ``JournalFull``, or ``OSError`` if flash could not take it (nothing is kept).
        """
        if self.full:
            raise JournalFull("%d events are waiting for the gateway (the limit)" % len(self.pending))
        seq = self.next_seq()
        frame = wire.encode_frame(kind, seq, payload)
        try:
            offset = self._append(frame)
        except OSError:
            self._compact()  # flash full: answered events' records may be what fills it; then try once more
            offset = self._append(frame)
        p = _PENDING[kind](seq, event_id, offset, len(frame))
        self.pending.append(p)
        return p

    def find(self, seq):
        for p in self.pending:
            if p.seq == seq:
                return p
        return None

    def holds_event(self, event_id):
        """True while the event ``event_id`` itself still waits here for the gateway's verdict."""
        for p in self.pending:
            if p.kind == "EVT" and p.event_id == event_id:
                return True
        return False

    def settle(self, seq):
        """The gateway answered ``seq`` for good: forget it (and clean up the file now and then).

        If flash cannot take the record (it is full), a clean-up is tried at once: it leaves out every
        answered event and so makes room. If that fails too, the event is forgotten in RAM only: after a
        reset it is sent again and the gateway answers it again with the same verdict (twice, never
        zero times).
        """
        p = self.find(seq)
        if p is None:
            return None
        self.pending.remove(p)
        try:
            self._append(wire.encode_frame("ACK", seq, b"{}"))
            full = False
        except OSError:
            full = True
        if full or self._size > self.compact_bytes or (not self.pending and self._size > 4096):
            try:
                self._compact()
            except OSError:
                pass  # see above; the next settle tries again
        return p

    def close(self):
        for f in (self._file, self._reader):
            if f is not None:
                f.close()
        self._file = self._reader = None
