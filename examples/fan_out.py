"""Fan-out: one published order reaches billing, shipping and analytics, each on its own.

Each consumer has a durable subscription on the `orders` topic. The topic stores each
message once; every subscription keeps its own position, leases and acknowledgements, so
every consumer gets every order, at its own pace, and a consumer that restarts resumes after
its last acknowledged message (at-least-once: an unacknowledged one comes again).

    logstore serve &                          # or give --url
    python examples/fan_out.py
"""

from __future__ import annotations

import argparse
import os

from logstore import DEFAULT_URL, Client, Record

TOPIC = "orders"
CONSUMERS = ("billing", "shipping", "analytics")


def consume(client: Client, name: str) -> list[str]:
    """Poll, handle, acknowledge (by lease token), until nothing is left; the values handled."""
    handled = []
    while True:
        deliveries = client.poll(TOPIC, name, max_messages=10, wait=0.5)
        if not deliveries:
            return handled
        handled += [d.value.decode() for d in deliveries]
        client.ack(TOPIC, name, [d.lease for d in deliveries])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("LOGSTORE_URL", DEFAULT_URL))
    args = parser.parse_args()
    with Client(args.url, token=os.environ.get("LOGSTORE_TOKEN")) as client:
        client.create_topic(TOPIC, exist_ok=True)
        for name in CONSUMERS:
            client.subscribe(TOPIC, name, start="latest")
        orders = [
            Record(f"order {n}".encode(), key=f"customer-{n % 2}".encode()) for n in (1, 2, 3)
        ]
        client.write_many(TOPIC, orders)
        for name in CONSUMERS:
            handled = consume(client, name)
            print(f"{name}: {', '.join(handled)}")
            info = client.subscription(TOPIC, name)
            print(f"{name}: lag {info.lag}, acknowledged up to offset {info.ack_floor}")


if __name__ == "__main__":
    main()
