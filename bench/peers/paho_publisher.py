"""Publishes N messages with paho-mqtt as fast as the client takes them, then waits until the broker
has acknowledged every one (QoS 1) or the socket has taken them (QoS 0). A process of its own, so
its peak memory can be read by bench/publish.py.

    python bench/peers/paho_publisher.py PORT TOPIC N QOS PAYLOAD_FILE
"""

from __future__ import annotations

import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main() -> int:
    port, topic, n, qos, payload_file = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    payload = open(payload_file, "rb").read()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-paho-{qos}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    last = None
    for _ in range(n):
        last = client.publish(topic, payload, qos=qos)
    deadline = time.monotonic() + 120
    while not last.is_published() and time.monotonic() < deadline:
        time.sleep(0.005)
    client.disconnect()
    client.loop_stop()
    return 0 if last.is_published() else 1


if __name__ == "__main__":
    sys.exit(main())
