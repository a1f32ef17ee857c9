"""The gateway's side of the node: sends event frames with resends and back-off, heartbeats, and
notices when the gateway has gone silent (docs/protocol.md, "Link health" and "Sender rules")."""

import time
from . import wire

_HB_PAYLOAD = b'{"role":"node"}'


class GatewayLink:
    """Frames over the gateway port (Pico UART0 on GP0/GP1 through a MAX3485 to the gateway).

    >>> uart = UART(0, 115200, tx=Pin(0), rx=Pin(1), timeout=0, rxbuf=4096)
    >>> link = GatewayLink(uart)
    >>> frames = link.receive(time.ticks_ms())      # ACK / NAK / HB frames from the gateway
    >>> link.send_due(journal.pending, now, journal.frame)   # first sends and resends, oldest first
    """

    def __init__(self, port, reply_timeout_ms=2000, backoff_max_ms=16000, heartbeat_ms=2000,
                 silent_after_ms=6000, window=8):
        self.port = port
        self.reply_timeout_ms = reply_timeout_ms
        self.backoff_max_ms = backoff_max_ms
        self.heartbeat_ms = heartbeat_ms
        self.silent_after_ms = silent_after_ms
        self.window = window  # frames sent but not yet answered, at most
        self.decoder = wire.FrameDecoder()
        self._chunk = bytearray(512)
        now = time.ticks_ms()
        self.last_rx = None  # ticks_ms of the last good frame from the gateway
        self.started = now
        self.last_tx = time.ticks_add(now, -heartbeat_ms)
        self._hb_seq = 0
        self.resends = 0

    # -- receiving -------------------------------------------------------------------------------
    def receive(self, now):
        n = self.port.readinto(self._chunk)
        if not n:
            return []
        items = self.decoder.feed(memoryview(self._chunk)[:n])
        out = []
        for item in items:
            if isinstance(item, wire.Frame):
                self.last_rx = now  # only good frames prove the gateway is there, not line noise
                out.append(item)
        return out

    def silent(self, now):
        since = self.started if self.last_rx is None else self.last_rx
        if time.ticks_diff(now, since) < self.silent_after_ms:
            return False
        # Keep the reference just inside the timeout: ticks wrap, and a silence longer than half their
        # period (about 6 days on a Pico) would otherwise read as a fresh answer.
        self.last_rx = None
        self.started = time.ticks_add(now, -self.silent_after_ms)
        return True

    # -- sending ---------------------------------------------------------------------------------
    def _write(self, data, now):
        self.port.write(data)
        self.last_tx = now

    def backoff_ms(self, attempts):
        return min(self.reply_timeout_ms << min(attempts, 10), self.backoff_max_ms)

    def send_due(self, pending, now, frame_of):
        """Send what is due: events never sent, and events whose reply timed out (the same bytes,
        ``frame_of(p)``, read back from the journal)."""
        in_flight = 0
        for p in pending:
            if p.due is not None and time.ticks_diff(p.due, now) > 0:
                in_flight += 1
                if in_flight >= self.window:
                    return
                continue
            if p.attempts:
                self.resends += 1
            self._write(frame_of(p), now)
            p.due = time.ticks_add(now, self.backoff_ms(p.attempts))
            p.attempts += 1
            in_flight += 1
            if in_flight >= self.window:
                return

    def resend_soon(self, p, now, delay_ms=0):
        p.due = time.ticks_add(now, delay_ms)

    def rush(self, pending, now):
        """The gateway is back: resend everything now instead of waiting out long back-offs."""
        for p in pending:
            p.due = None
            p.attempts = 0

    def heartbeat(self, now):
        if time.ticks_diff(now, self.last_tx) >= self.heartbeat_ms:
            self._hb_seq = self._hb_seq % wire.MAX_SEQ + 1
            self._write(wire.encode_frame("HB", self._hb_seq, _HB_PAYLOAD), now)
