"""The replaceable pieces of the simulator: the state machine entries are applied to, and the
client that proposes entries, learns their replies and checks what the committed log did.

Two pairs plug in: ``ListMachine`` + ``UniqueValueClient`` (a hash chain over unique values,
the default) and, in ``tests/sim/broker.py``, the broker's own ``Machine`` + a broker workload.
The simulator only relies on the two protocols below.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Protocol

import msgpack

__all__ = ["Client", "ListMachine", "StateMachine", "UniqueValueClient", "chain"]


class StateMachine(Protocol):
    """Deterministic: replicas that apply the same entries reach the same ``digest`` (a hash
    chain over the entries) and the same ``state_digest`` (a hash of the whole state)."""

    @property
    def index(self) -> int: ...
    @property
    def digest(self) -> bytes: ...
    def apply(self, index: int, term: int, data: bytes) -> Any:
        """Apply one committed entry; returns its reply (compared across replicas)."""
        ...

    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...
    def state_digest(self) -> bytes: ...
    def check(self) -> None:
        """The machine's own invariants; raises AssertionError."""
        ...


def chain(digest: bytes, data: bytes) -> bytes:
    """The hash chain every replica's ``digest`` follows: one link per applied entry."""
    return hashlib.blake2b(digest + data, digest_size=16).digest()


class ListMachine:
    """An append-only list of the non-empty entries, with a hash chain over every entry.

    Empty entries (a new leader's no-op) are chained but not listed, as the broker skips
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

    def apply(self, index: int, term: int, data: bytes) -> Any:
        assert index == self._index + 1, f"applied {index} after {self._index}"
        self._index = index
        self._digest = chain(self._digest, data)
        if data:
            self.values.append(data)
        return None

    def snapshot(self) -> bytes:
        out = msgpack.packb([self._index, self._digest, self.values], use_bin_type=True)
        assert isinstance(out, bytes)
        return out

    def restore(self, data: bytes) -> None:
        index, digest, values = msgpack.unpackb(data, raw=False)
        self._index, self._digest, self.values = index, digest, list(values)

    def state_digest(self) -> bytes:
        return self._digest

    def check(self) -> None:
        pass


class Client(Protocol):
    """Proposes entries, learns the replies of acknowledged ones, and checks the committed
    history and the final state. Check methods return the broken rule, or None."""

    def next_value(self, rng: random.Random, now_ms: int) -> bytes:
        """A client request, stamped with the clock of the node it is sent to."""
        ...

    def leader_value(
        self, rng: random.Random, machine: StateMachine, now_ms: int, elected: bool
    ) -> bytes | None:
        """What a leader proposes on its own as time passes (``elected``: first call of its
        term); ``machine`` is the leader's. Without it, None and no use of ``rng``."""
        ...

    def acknowledged(self, data: bytes, reply: Any) -> str | None:
        """``data`` was applied where and with the term it was proposed: this is the reply
        the client gets."""
        ...

    def observe(self, index: int, data: bytes, reply: Any) -> str | None:
        """Each committed entry once, in index order, when it is first applied anywhere."""
        ...

    def final_check(self, machine: StateMachine) -> str | None:
        """After the run, on a replica (all replicas are equal by then)."""
        ...

    def is_proposed(self, data: bytes) -> bool: ...
    def stats(self) -> dict[str, int]: ...
    @property
    def acked(self) -> set[bytes]: ...


class UniqueValueClient:
    """Every proposal is a distinct value, so each can be traced to where it was applied."""

    def __init__(self) -> None:
        self._n = 0
        self._proposed: set[bytes] = set()
        self._acked: set[bytes] = set()

    def next_value(self, rng: random.Random, now_ms: int) -> bytes:
        self._n += 1
        value = b"v%d:" % self._n + b"x" * rng.randrange(0, 24)
        self._proposed.add(value)
        return value

    def leader_value(
        self, rng: random.Random, machine: StateMachine, now_ms: int, elected: bool
    ) -> bytes | None:
        return None

    def acknowledged(self, data: bytes, reply: Any) -> str | None:
        self._acked.add(data)
        return None

    def observe(self, index: int, data: bytes, reply: Any) -> str | None:
        return None

    def final_check(self, machine: StateMachine) -> str | None:
        values = set(getattr(machine, "values", ()))
        if values and not self._acked <= values:
            lost = sorted(self._acked - values)[:3]
            return f"acknowledged values lost: {lost}"
        return None

    def is_proposed(self, data: bytes) -> bool:
        return data in self._proposed

    def stats(self) -> dict[str, int]:
        return {"acked": len(self._acked)}

    @property
    def acked(self) -> set[bytes]:
        return self._acked
