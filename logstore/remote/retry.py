"""What the clients send again after a connection failure, and how long they wait first.

The rule:

- A request that never reached the server (the connection could not be opened) is always
  sent again: nothing happened.
- A request that may have reached it (the connection broke or timed out after it was sent)
  is sent again only if doing it twice is the same as doing it once: every GET, PUT and
  DELETE; ack, nack, commit and seek (settling a lease twice settles it once); and publish,
  because every publish carries an `Idempotency-Key` (the server answers a repeat with the
  first write's offsets and appends nothing, for 2 minutes). A retried DELETE answered 404
  and a retried create answered "exists with these settings" count as done.
- A poll that may have reached the server is not sent again: it would lease further
  messages while the lost answer's leases stay out until their `ack_wait`. The caller gets
  `ServerUnreachable` and decides (the lost messages are delivered again after `ack_wait`).
- Error answers (4xx, 5xx) are never retried: they are the server's word.

Waits grow exponentially with full jitter between half and all of the step, so clients that
lost the same server do not come back in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Retry:
    """`attempts` further tries after the first; waits of `base` * 2**n seconds, at most
    `cap`, each drawn between half and all of that."""

    attempts: int = 3
    base: float = 0.05
    cap: float = 2.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0 for the first)."""
        step = min(self.cap, self.base * 2**retry)
        return random.uniform(step / 2, step)


NO_RETRY = Retry(attempts=0)
