"""The cost of an ack when a subscription's acknowledgements hold many gaps (issue #14).

Acknowledging every other offset leaves one gap per unacknowledged offset above the ack
floor; the state is kept as sorted ranges (logstore/engine/local/subscription_state.py) and
written whole to LMDB on every ack. This measures one more ack at N gaps, and the state's size.

    .venv/bin/python bench/ack_gaps.py [GAPS] [--fsync always|never]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from logstore import Store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gaps", type=int, nargs="?", default=200_000)
    parser.add_argument("--fsync", default="always", choices=("always", "never"))
    args = parser.parse_args()
    n = 2 * args.gaps + 2
    with tempfile.TemporaryDirectory() as tmp, Store(tmp, fsync=args.fsync) as store:
        store.create_topic("t")
        for first in range(0, n, 10_000):
            store.write_many("t", [b""] * min(10_000, n - first))
        store.subscribe("t", "s")
        odd = list(range(1, n - 2, 2))  # offset 0 stays unacknowledged: the floor stays at 0
        for i in range(0, len(odd), 10_000):
            store.ack("t", "s", odd[i : i + 10_000])
        seconds = []
        for offset in range(n - 1, n - 41, -2):  # 20 more acks, each adds one more range
            start = time.perf_counter()
            store.ack("t", "s", [offset])
            seconds.append(time.perf_counter() - start)
    print(
        f"{args.gaps} gaps, fsync={args.fsync}: one ack takes "
        f"{statistics.median(seconds) * 1000:.1f} ms (median of 20), "
        f"{max(seconds) * 1000:.1f} ms at most; the ack state written on each ack: "
        f"{8 + 16 * args.gaps} bytes (8 + 16 per range of acked offsets)"
    )


if __name__ == "__main__":
    main()
