"""The link room: the outbox to the centre over MQTT (``uplink``), signed manifests from the
centre (``downlink``) and the private mosquitto for the demo and tests (``broker``).
May import: core, the store and scoring rooms, the gateway's ``config`` and ``questions``."""
