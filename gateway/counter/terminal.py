"""A teller terminal as the gateway sees it: sends events in wire-protocol-v1 frames and waits for
the verdict, resending after a lost reply. Used by the demo, the tests and the benchmarks; the
counter-node firmware does the same job on a microcontroller.
"""

from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass

from counterguard.core import wire


class TerminalError(RuntimeError):
    """The gateway did not answer an event after every resend."""


@dataclass(frozen=True)
class Reply:
    type: str  # "ACK" or "NAK"
    seq: int
    body: dict


class TellerTerminal:
    """Speaks protocol v1 over a file descriptor (the far end of a pty, or an open serial device).

    >>> import os, tty
    >>> master, slave = os.openpty(); tty.setraw(slave)
    >>> terminal = TellerTerminal(master)   # the gateway opens os.ttyname(slave)
    """

    def __init__(self, fd: int, *, timeout: float = 2.0, retries: int = 5):
        self.fd = fd
        self.timeout = timeout
        self.retries = retries
        self.decoder = wire.FrameDecoder()
        self.seq = 0
        self.pending: list = []  # decoded frames not yet claimed by a waiter
        self.heartbeats = 0
        self.resends = 0

    def next_seq(self) -> int:
        self.seq = self.seq % wire.MAX_SEQ + 1
        return self.seq

    def write(self, data: bytes) -> None:
        """Write all of ``data``, reading replies meanwhile: a long burst must not fill the line's
        buffer in the other direction while the gateway is answering it. A line that takes nothing
        for a while (the gateway died and nobody reads) raises TerminalError instead of hanging."""
        view = memoryview(data)
        stall_s = max(5.0, 3 * self.timeout)
        moved = time.monotonic()
        while view:
            readable, writable, _ = select.select([self.fd], [self.fd], [], 1.0)
            if readable:
                self.pending.extend(self.read(0))
            if writable:
                os.set_blocking(self.fd, False)
                try:
                    n = os.write(self.fd, view[:4096])
                except BlockingIOError:
                    n = 0
                finally:
                    os.set_blocking(self.fd, True)
                view = view[n:]
                if n:
                    moved = time.monotonic()
            if view and time.monotonic() - moved > stall_s:
                raise TerminalError(f"the gateway has read nothing from the line for {stall_s:.0f} s; "
                                    f"{len(view)} byte(s) not sent")

    def read(self, timeout: float) -> list:
        """Frames (and errors) that arrive within ``timeout``; heartbeats are counted and dropped."""
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return []
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            return []
        return self._decode(data)

    def _decode(self, data: bytes) -> list:
        out = []
        for item in self.decoder.feed(data):
            if isinstance(item, wire.Frame) and item.type == "HB":
                self.heartbeats += 1
            else:
                out.append(item)
        return out

    def _wait(self, seqs: set, deadline: float) -> dict:
        got = {}
        keep = []
        for item in self.pending:
            if isinstance(item, wire.Frame) and item.type in ("ACK", "NAK") and item.seq in seqs:
                got[item.seq] = item
            else:
                keep.append(item)
        self.pending = keep
        while len(got) < len(seqs):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for item in self.read(left):
                if isinstance(item, wire.Frame) and item.seq in seqs and item.type in ("ACK", "NAK"):
                    got[item.seq] = item
                else:
                    self.pending.append(item)
        return got

    def send(self, event: dict) -> Reply:
        """Send one event and return the gateway's ACK or NAK, resending the same frame if needed."""
        return self.send_many([event])[0]

    def answer(self, event_id: str, answers: dict, by: str | None = None) -> Reply:
        """Send the customer's answers for an event (an ANS frame); the ACK carries the final verdict."""
        body = {"event_id": event_id, "answers": answers, **({"by": by} if by else {})}
        return self.send_many([body], frame_type="ANS")[0]

    @staticmethod
    def _payloads(events: list) -> list:
        return [event if isinstance(event, bytes) else wire.encode_payload(event) for event in events]

    def send_many(self, events: list, *, window: int = 64, frame_type: str = "EVT") -> list:
        """Send events (or, with ``frame_type="ANS"``, answers) pipelined ``window`` frames at a time;
        replies in the order of ``events``."""
        replies: list = [None] * len(events)
        payloads = None
        for start in range(0, len(events), window):
            if payloads is None:
                payloads = self._payloads(events[start:start + window])
            frames = {}
            for i, payload in enumerate(payloads):
                seq = self.next_seq()
                frames[seq] = (start + i, wire.encode_frame(frame_type, seq, payload))
            waiting = set(frames)
            for attempt in range(self.retries + 1):
                if attempt:
                    self.resends += len(waiting)
                self.write(b"".join(frames[s][1] for s in sorted(waiting)))
                if not attempt:
                    # Encode the next window while the gateway answers this one; an event that
                    # cannot be encoded raises in its turn, after this window's replies.
                    try:
                        payloads = self._payloads(events[start + window:start + 2 * window])
                    except (TypeError, ValueError):
                        payloads = None
                got = self._wait(waiting, time.monotonic() + self.timeout)
                for seq, frame in got.items():
                    replies[frames[seq][0]] = Reply(frame.type, seq, frame.body)
                waiting -= set(got)
                if not waiting:
                    break
            if waiting:
                raise TerminalError(f"no reply from the gateway to {len(waiting)} event(s) after {self.retries} resends")
        return replies
