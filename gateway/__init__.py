"""The branch gateway, in rooms. Each room owns one responsibility and imports only the rooms
below it (tests/test_layers.py keeps it so):

- ``config``, ``questions`` (modules at this level): the gateway's settings and the caring questions;
- ``store``: the SQLite store and its outbox;
- ``scoring``: the TFLite model and the stop-payment list (features and the verdict rule are core);
- ``counter``: the counter lines: serial ports, the pipeline that answers each frame, lamps;
- ``link``: MQTT to the centre (uplink, signed downlink) and the private broker;
- ``branch``: the supervisor's workflow: an alert's life, escalation, the branch console, shift
  report, exports;
- ``ops``: the running service (composition root, systemd), the installer's self-test, the doctor.

May import: ``counterguard.core`` and ``counterguard.hardware``.
"""
