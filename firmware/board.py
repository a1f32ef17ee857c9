"""Board config for one counter node (a Pico-class board). provisioning/flash.py writes this file
with the counter's number; edit it by hand only to change wiring or timings."""

COUNTER = 1              # counter number at this branch, 1..64 (events carry it)
GATEWAY_UART = 0         # UART0: TX on GP0, RX on GP1, to the MAX3485 RS-485 transceiver
GATEWAY_TX = 0
GATEWAY_RX = 1
RS485_DE = 2             # GP2 drives the MAX3485's DE and /RE (high = transmit); None if auto-direction
BAUD = 115200
LIGHT = "neopixel"       # "neopixel" (data on LIGHT_PIN) or "led" (the board's own LED)
LIGHT_PIN = 16
CAPACITY = 200           # events kept in flash while the gateway has not answered
STATE_DIR = "/state"
HEARTBEAT_MS = 2000
SILENT_MS = 6000         # three heartbeats without a word: protection offline
REPLY_TIMEOUT_MS = 2000
BACKOFF_MAX_MS = 16000
WATCHDOG_MS = 8000       # the RP2040's maximum is about 8.3 s
