"""The replaceable pieces of the simulator: the state machine entries are applied to, and the
client that proposes entries and counts acknowledgements.

The broker's machine plugs in later through ``StateMachine``; a workload of broker commands
through ``Client``. The simulator only relies on these two protocols.
"""

from __future__ import annotations

import hashlib
import random
from typing import Protocol

import msgpack

__all__ = ["Client", "ListMachine", "StateMachine", "UniqueValueClient", "chain"]


class StateMachine(Protocol):
    """Deterministic: replicas that apply the same entries reach the same ``digest``."""

    @property
    def index(self) -> int: ...
    @property
    def digest(self) -> bytes: ...
    def apply(self, index: int, term: int, data: bytes) -> None: ...
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...


def chain(digest: bytes, data: bytes) -> bytes:
    """The hash chain every replica's ``digest`` follows: one link per applied entry."""
    return hashlib.blake2b(digest + data, digest_size=16).digest()


class ListMachine:
    """An append-only list of the non-empty entries, with a hash chain over every entry.

    Empty entries (a new leader's no-op) are chained but not listed, as the broker will skip
    them. The snapshot holds the whole list, so snapshots grow and are sent in many chunks.
    """

    def __init__(self) -> None:
        self._index = 0
        self._digest = b""
        self.values: list[bytes] = []

    @property
    def index(self) -> int:
        return self._index

    @property
    def digest(self) -> bytes:
        return self._digest

    def apply(self, index: int, term: int, data: bytes) -> None:
        assert index == self._index + 1, f"applied {index} after {self._index}"
        self._index = index
        self._digest = chain(self._digest, data)
        if data:
            self.values.append(data)

    def snapshot(self) -> bytes:
        out = msgpack.packb([self._index, self._digest, self.values], use_bin_type=True)
        assert isinstance(out, bytes)
        return out

    def restore(self, data: bytes) -> None:
        index, digest, values = msgpack.unpackb(data, raw=False)
        self._index, self._digest, self.values = index, digest, list(values)


class Client(Protocol):
    """Proposes entries and learns which of them were acknowledged."""

    def next_value(self, rng: random.Random) -> bytes: ...
    def acknowledged(self, data: bytes) -> None: ...
    def is_proposed(self, data: bytes) -> bool: ...
    @property
    def acked(self) -> set[bytes]: ...


class UniqueValueClient:
    """Every proposal is a distinct value, so each can be traced to where it was applied."""

    def __init__(self) -> None:
        self._n = 0
        self._proposed: set[bytes] = set()
        self._acked: set[bytes] = set()

    def next_value(self, rng: random.Random) -> bytes:
        self._n += 1
        value = b"v%d:" % self._n + b"x" * rng.randrange(0, 24)
        self._proposed.add(value)
        return value

    def acknowledged(self, data: bytes) -> None:
        self._acked.add(data)

    def is_proposed(self, data: bytes) -> bool:
        return data in self._proposed

    @property
    def acked(self) -> set[bytes]:
        return self._acked
