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

from _http import DEFAULT_URL, Client

TOPIC = "orders"
CONSUMERS = ("billing", "shipping", "analytics")


def consume(client: Client, name: str) -> list[str]:
    """Poll, handle, acknowledge, until nothing is left; the values handled."""
    handled = []
    path = f"/topics/{TOPIC}/subscriptions/{name}"
    while True:
        messages = client.call("POST", f"{path}/poll", max=10, wait=0.5)["messages"]
        if not messages:
            return handled
        handled += [m["value"] for m in messages]
        client.call("POST", f"{path}/ack", {"offsets": [m["offset"] for m in messages]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    client = Client(args.url)
    client.ensure_topic(TOPIC)
    for name in CONSUMERS:
        client.call("PUT", f"/topics/{TOPIC}/subscriptions/{name}", {"start": "latest"})
    orders = [{"value": f"order {n}", "key": f"customer-{n % 2}"} for n in range(1, 4)]
    client.publish(TOPIC, orders)
    for name in CONSUMERS:
        handled = consume(client, name)
        print(f"{name}: {', '.join(handled)}")
        info = client.call("GET", f"/topics/{TOPIC}/subscriptions/{name}")
        print(f"{name}: lag {info['lag']}, acknowledged up to offset {info['ack_floor']}")


if __name__ == "__main__":
    main()
