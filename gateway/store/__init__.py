"""The store room: every event, verdict, alert, acknowledgement, outcome and the outbox, in one
SQLite file (``db``). May import: core, the gateway's ``config`` and ``questions``."""
