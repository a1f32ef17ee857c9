"""The ops room: the running service and its health. The composition root (``app``), systemd
readiness and watchdog (``sd_notify``), the installer's self-test (``selftest``) and the doctor
(``doctor``). May import every other room, core and hardware."""
