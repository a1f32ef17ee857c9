"""Counter node entry point on a Pico-class board: the teller terminal on USB CDC, the gateway on
UART0 through an RS-485 transceiver, events kept in flash under board.STATE_DIR.

Settings come from board.py (written by ``counterguard firmware flash --counter N``).
"""

import os
import select
import sys

import machine

import board
from counterguard_node.bridge import Bridge
from counterguard_node.indicator import Indicator
from counterguard_node.journal import Journal
from counterguard_node.link import GatewayLink
from counterguard_node.ports import PolledPort, Rs485Port
from counterguard_node.terminal import TerminalPort


def light():
    if board.LIGHT == "neopixel":
        import neopixel
        return neopixel.NeoPixel(machine.Pin(board.LIGHT_PIN), 1)
    return machine.Pin("LED", machine.Pin.OUT)


def main():
    try:
        os.mkdir(board.STATE_DIR)
    except OSError:
        pass  # already there
    uart = machine.UART(board.GATEWAY_UART, board.BAUD, tx=machine.Pin(board.GATEWAY_TX),
                        rx=machine.Pin(board.GATEWAY_RX), timeout=0, rxbuf=4096)
    gateway_port = uart if board.RS485_DE is None else Rs485Port(uart, machine.Pin(board.RS485_DE, machine.Pin.OUT))
    terminal_port = PolledPort(sys.stdin.buffer, sys.stdout.buffer)
    # Armed before the journal is read back: a start-up that hangs resets too. Reading back and
    # cleaning up a long journal feed it as they go, so a full queue never makes a reset loop.
    watchdog = machine.WDT(timeout=board.WATCHDOG_MS)
    bridge = Bridge(
        TerminalPort(terminal_port),
        GatewayLink(gateway_port, reply_timeout_ms=board.REPLY_TIMEOUT_MS, backoff_max_ms=board.BACKOFF_MAX_MS,
                    heartbeat_ms=board.HEARTBEAT_MS, silent_after_ms=board.SILENT_MS),
        Journal(board.STATE_DIR, capacity=board.CAPACITY, feed=watchdog.feed),
        Indicator(light()),
        watchdog,
        counter=board.COUNTER,
    )
    poller = select.poll()
    poller.register(sys.stdin, select.POLLIN)
    poller.register(uart, select.POLLIN)
    try:
        bridge.run(wait=poller.poll)
    except KeyboardInterrupt:
        # Ctrl-C on USB is mpremote coming in for maintenance. The watchdog cannot be stopped once
        # armed, so a timer keeps feeding it until the next reset; the terminal hears it.
        maintenance = machine.Timer(period=1000, callback=lambda t: watchdog.feed())
        bridge.terminal.send({"type": "offline", "pending": len(bridge.journal),
                              "detail": "counter node stopped for maintenance; reset it to resume"})
        return maintenance


_maintenance = main()
