"""The branch room: the supervisor's workflow. An alert's life (``lifecycle``), escalating
unacknowledged reds (``escalation``), the branch console (``console``), the supervisor's commands
(``supervisor_cli``), the shift report (``report``) and exports (``export``).
May import: core, hardware, the store, scoring and counter rooms, the gateway's ``config`` and ``questions``."""
