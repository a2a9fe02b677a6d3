"""A publisher process the tests can kill -9:
`python -m tests.mqtt.publisher_child URL OUTBOX N WAIT_S`.

Connects (waiting up to WAIT_S for the broker), queues N events for session 'sess-kill', prints 'QUEUED' and then blocks forever."""

from __future__ import annotations

import sys
import time

from edge_service.mqtt import MqttSettings, Publisher


def main() -> None:
    url, outbox, n, wait_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    pub = Publisher(MqttSettings(url=url, reconnect_max_s=1), outbox)
    pub.start(status={"clip": {"state": "streaming"}})
    if pub.wait_connected(wait_s):
        print("CONNECTED", flush=True)
    for i in range(n):
        pub.event("sess-kill", "manoeuvre", {"i": i})
    print("QUEUED", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
