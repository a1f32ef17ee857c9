"""Byte ports the drivers read and write: whatever the board (or the unix port) hands them.

A port has ``readinto(buf) -> int | None`` that never blocks (0 or None when nothing is waiting)
and ``write(data)``. ``machine.UART(..., timeout=0)`` already is one. A stream that blocks until its
buffer is full (the Pico's USB CDC ``sys.stdin.buffer``, a pty opened on the unix port) is wrapped
in ``PolledPort``, which reads only the bytes that ``select.poll`` says are there.
"""

import select


class PolledPort:
    """Non-blocking reads from a blocking stream, one byte per poll (USB CDC, ptys).

    >>> import sys
    >>> terminal = PolledPort(sys.stdin.buffer, sys.stdout.buffer)   # Pico USB CDC
    """

    def __init__(self, stream, out=None, limit=256):
        self.stream = stream
        self.out = out if out is not None else stream
        self.limit = limit  # bytes per call, so one busy side cannot starve the other
        self._poll = select.poll()
        self._poll.register(stream, select.POLLIN)
        self._one = bytearray(1)

    def readinto(self, buf):
        # ipoll and the one-byte buffer allocate nothing per byte.
        n = 0
        one = self._one
        limit = min(len(buf), self.limit)
        while n < limit:
            ready = False
            for _ in self._poll.ipoll(0):
                ready = True
            if not ready or not self.stream.readinto(one):
                break
            buf[n] = one[0]
            n += 1
        return n

    def write(self, data):
        mv = memoryview(data)
        while mv:
            n = self.out.write(mv)
            if n is None:  # a non-blocking stream that is full: try again
                continue
            mv = mv[n:]
        return len(data)


class Rs485Port:
    """A UART behind a half-duplex RS-485 transceiver (MAX3485): DE//RE high only while sending.

    Wiring: UART TX (GP0) to DI, UART RX (GP1) to RO, GP2 to DE and /RE tied together, A/B to the
    gateway's USB-RS485 adapter, 120 ohm termination at both ends of the pair.

    >>> port = Rs485Port(UART(0, 115200, tx=Pin(0), rx=Pin(1), timeout=0), Pin(2, Pin.OUT, value=0))
    """

    def __init__(self, uart, de):
        self.uart = uart
        self.de = de
        de.value(0)

    def readinto(self, buf):
        return self.uart.readinto(buf)

    def write(self, data):
        self.de.value(1)
        n = self.uart.write(data)
        self.uart.flush()  # wait until the last stop bit has left before letting go of the pair
        self.de.value(0)
        return n
