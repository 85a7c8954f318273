"""Cache invalidation broadcast: every process drops the keys that one publisher names.

Several worker processes each keep a local cache. Whoever changes the data behind a key
publishes the key to the `cache-invalidation` topic; every worker follows the topic by long
polling from the end it last saw (a replay read, not a subscription: each worker must see
every message), and evicts the key within milliseconds. A worker that restarts resumes from
the offset it stopped at, so it misses nothing.

    logstore serve &                          # or give --url
    python examples/cache_invalidation.py --workers 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from logstore import DEFAULT_URL, Client

TOPIC = "cache-invalidation"


def worker(client: Client, number: int, offset: int) -> None:
    cache = {f"user:{i}": f"profile {i}" for i in range(1, 6)}
    print(f"worker {number}: ready with {len(cache)} cached keys", flush=True)
    while True:
        messages = client.read(TOPIC, offset, wait=10)
        for message in messages:
            if message.headers.get("kind") == "shutdown":
                print(f"worker {number}: {len(cache)} keys left: {sorted(cache)}", flush=True)
                return
            key = message.key.decode()
            cache.pop(key, None)
            print(f"worker {number}: evicted {key}", flush=True)
        if messages:
            offset = messages[-1].offset + 1


def broadcast(client: Client, url: str, count: int) -> None:
    """Start the workers, publish two invalidations and a shutdown, print what they did."""
    start = client.create_topic(TOPIC, exist_ok=True).end_offset
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--url",
                url,
                "--worker",
                str(n),
                "--offset",
                str(start),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]
    for w in workers:  # each says it is ready before we publish
        print(w.stdout.readline(), end="")
    client.write(TOPIC, b"profile changed", key=b"user:2")
    client.write(TOPIC, b"account deleted", key=b"user:4")
    client.write(TOPIC, b"", headers={"kind": "shutdown"})
    for w in workers:
        out, _ = w.communicate(timeout=60)
        print(out, end="")
        if w.returncode != 0:
            sys.exit(f"a worker failed with exit code {w.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("LOGSTORE_URL", DEFAULT_URL))
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    with Client(args.url, token=os.environ.get("LOGSTORE_TOKEN")) as client:
        if args.worker is not None:
            worker(client, args.worker, args.offset)
        else:
            broadcast(client, args.url, args.workers)


if __name__ == "__main__":
    main()
