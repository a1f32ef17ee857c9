"""counterguard gateway: teller events over serial, verdicts, counter lamps, store and uplink."""

__version__ = "0.1.0"
