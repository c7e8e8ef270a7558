"""Exponential backoff with jitter, bounded both in attempts and in total time."""

from __future__ import annotations

import random
import time


class Backoff:
    """Delays between attempts: base * 2**n with full jitter, capped, never past the deadline.

    >>> b = Backoff(attempts=3, max_seconds=60)
    >>> b.next_delay() is not None   # after attempt 1
    True
    """

    def __init__(self, attempts: int, max_seconds: float, base: float = 0.5, cap: float = 15.0):
        self.attempts = attempts
        self.deadline = time.monotonic() + max_seconds
        self.base = base
        self.cap = cap
        self.attempt = 1  # the attempt being made now

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt, or None when the budget is spent."""
        if self.attempt >= self.attempts:
            return None
        ceiling = min(self.cap, self.base * 2 ** (self.attempt - 1))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if time.monotonic() + delay > self.deadline:
            return None
        self.attempt += 1
        return delay
