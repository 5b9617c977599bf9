"""The seams a simulator replaces: where time and randomness come from.

Pure modules never import ``time`` or ``random``; the node takes a ``Clock`` and a ``Random`` from
here and passes values down (``Meta.time_ms``), so a whole node can run on a fake clock.
"""

from __future__ import annotations

import gc
import random as _random
import secrets
import time as _time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def monotonic_s(self) -> float: ...


class SystemClock:
    """Wall-clock milliseconds for message timestamps, monotonic seconds for timers."""

    def now_ms(self) -> int:
        return _time.time_ns() // 1_000_000

    def monotonic_s(self) -> float:
        return _time.monotonic()


class ManualClock:
    """A clock that moves only when told to (tests and the simulator)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._ms = start_ms

    def now_ms(self) -> int:
        return self._ms

    def monotonic_s(self) -> float:
        return self._ms / 1000.0

    def advance(self, ms: int) -> None:
        self._ms += ms


class Random(Protocol):
    def token(self, nbytes: int) -> str: ...


class SystemRandom:
    def token(self, nbytes: int) -> str:
        return secrets.token_urlsafe(nbytes)


class SeededRandom:
    def __init__(self, seed: int) -> None:
        self._rng = _random.Random(seed)

    def token(self, nbytes: int) -> str:
        return self._rng.randbytes(nbytes).hex()


# A broker keeps many long-lived objects (queued messages, sessions). With CPython's default
# thresholds (700 allocations per young collection) the collector runs every few hundred
# messages and repeatedly walks objects that will live for a long time; measured on the node
# benchmark (64 publishers x 64 messages per call), raising the thresholds took confirmed
# publishes from ~155k/s to ~210k/s. Cycles are still collected, just in larger steps.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc(*, freeze: bool = False) -> None:
    """Set the collector thresholds for a broker process; ``freeze`` moves everything alive now
    (the recovered state, imported modules) out of the collector's way."""
    gc.set_threshold(*GC_THRESHOLDS)
    if freeze:
        gc.freeze()
