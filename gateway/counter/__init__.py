"""The counter room: serial ports that reopen themselves (``serial_link``), one thread per counter
line (``counter_line``), the pipeline that turns a frame into a stored verdict and a reply
(``pipeline``), replaying a file of events the same way (``replay``), the lamps and buzzer
(``lamps``) and a simulated teller terminal (``terminal``).
May import: core, hardware, the store and scoring rooms, the gateway's ``config`` and ``questions``."""
