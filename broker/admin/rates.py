"""Message rates for the management API, from counters sampled when the API is read.

RabbitMQ's ``message_stats`` carry, beside each counter, ``<counter>_details: {"rate": r}`` in
messages per second over its last sampling interval. Here the counters (``broker.metrics``)
are sampled lazily: a request takes a new sample when the newest one is older than
``SAMPLE_INTERVAL_S``, and a rate is the difference between the two newest samples over the
time between them. Two samples are kept, whatever the number of requests, so the memory is
bounded by twice the number of queues; a queue deleted and declared again is a new key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: the shortest time between two samples
SAMPLE_INTERVAL_S = 2.0

#: counter name -> value, for one queue (or ``None``: the node totals)
Counters = dict[str, int]


class Rates:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._older: tuple[float, dict[Any, Counters]] | None = None
        self._newer: tuple[float, dict[Any, Counters]] | None = None

    def sample(self, take: Callable[[], dict[Any, Counters]]) -> None:
        """Take a sample (``take()``) unless the newest is recent enough."""
        now = self.clock()
        if self._newer is not None and now - self._newer[0] < SAMPLE_INTERVAL_S:
            return
        self._older, self._newer = self._newer, (now, take())

    def rate(self, key: Any, name: str) -> float:
        """Messages per second of counter ``name`` of ``key`` between the two newest
        samples (0.0 until there are two)."""
        if self._older is None or self._newer is None:
            return 0.0
        t0, old = self._older
        t1, new = self._newer
        if t1 <= t0:
            return 0.0
        before = old.get(key)
        after = new.get(key)
        if before is None or after is None:
            return 0.0
        return round(max(0, after.get(name, 0) - before.get(name, 0)) / (t1 - t0), 1)
