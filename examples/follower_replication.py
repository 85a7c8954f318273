"""A follower that replicates a leader's topic into its own data directory.

The follower embeds the library (its own `Store`), asks its replica for the end offset,
and replays the leader's topic over HTTP from exactly there, long polling at the end. The
replica's offsets are the leader's offsets (both logs are dense, and the follower appends
in order), so after a crash or restart it simply resumes from its own end: no bookkeeping
besides the data itself. Keys, headers and values are copied; timestamps are the replica's.

    logstore serve &                          # the leader; or give --url
    python examples/follower_replication.py --topic orders --replica ./replica --once
"""

from __future__ import annotations

import argparse
import os

from logstore import DEFAULT_URL, Client, Record, Store


def replicate(leader: Client, replica: Store, topic: str, once: bool) -> int:
    """Copy new messages until caught up (`once`) or forever; the number copied."""
    replica.create_topic(topic, name=leader.topic(topic).name, exist_ok=True)
    offset = replica.topic(topic).end_offset
    copied = 0
    while True:
        messages = leader.read(topic, offset, max_messages=1000, wait=0 if once else 10)
        if not messages:
            if once:
                return copied
            continue
        records = [Record(m.value, m.key, m.headers or None) for m in messages]
        first = replica.write_many(topic, records)
        assert first == messages[0].offset, "the replica's offsets must equal the leader's"
        offset = messages[-1].offset + 1
        copied += len(messages)
        print(f"replicated offsets {first}..{offset - 1}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("LOGSTORE_URL", DEFAULT_URL))
    parser.add_argument("--topic", required=True)
    parser.add_argument("--replica", required=True, help="the follower's data directory")
    parser.add_argument("--once", action="store_true", help="stop when caught up")
    args = parser.parse_args()
    token = os.environ.get("LOGSTORE_TOKEN")
    with Store(args.replica) as replica, Client(args.url, token=token) as leader:
        copied = replicate(leader, replica, args.topic, args.once)
        end = replica.topic(args.topic).end_offset
    print(f"copied {copied} messages; replica of {args.topic!r} ends at offset {end}")


if __name__ == "__main__":
    main()
