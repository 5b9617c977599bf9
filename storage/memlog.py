"""MemoryLog: the SegmentedLog interface kept in memory, for tests and the simulator.

``sync`` only advances ``synced_index``; ``crash`` forgets every entry above it, which is what a
power loss does to a real log. ``segment_entries_max`` mimics segments so that
``compact_prefix`` moves ``first_index`` in whole segments as the file log does; with the
default (no limit) everything at or below the given index is dropped, except that the log keeps
``first_index <= last_index + 1``.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

from storage.errors import LogError

__all__ = ["MemoryLog"]

_TERM_MAX = (1 << 64) - 1


class MemoryLog:
    def __init__(
        self,
        *,
        payload_bytes_max: int = 16 << 20,
        segment_entries_max: int | None = None,
        fail_sync: BaseException | None = None,
    ) -> None:
        self._first = 1
        self._terms: array[int] = array("Q")
        self._datas: list[bytes] = []
        self._synced = 0
        self._payload_bytes_max = payload_bytes_max
        self._segment_entries_max = segment_entries_max
        self._segment_bases = [1]  # used only with segment_entries_max
        self._closed = False
        self._failed: BaseException | None = None
        self.fail_sync = fail_sync  # when set, the next sync raises it (as an fsync error would)
        self._stats = {"syncs": 0, "appends": 0, "records": 0}

    @property
    def first_index(self) -> int:
        return self._first

    @property
    def last_index(self) -> int:
        return self._first + len(self._terms) - 1

    @property
    def synced_index(self) -> int:
        return self._synced

    @property
    def payload_bytes_max(self) -> int:
        return self._payload_bytes_max

    def append(self, entries: Sequence[tuple[int, bytes]]) -> int:
        self._check_writable()
        floor = self._terms[-1] if self._terms else 0
        for term, data in entries:
            if not floor <= term <= _TERM_MAX:
                raise LogError(f"term {term} is below the previous term {floor} or too large")
            if len(data) > self._payload_bytes_max:
                raise LogError(
                    f"entry data is larger than payload_bytes_max={self._payload_bytes_max}"
                )
            floor = term
        for term, data in entries:
            self._push(term, bytes(data))
        self._stats["appends"] += 1
        return self.last_index

    def append_batch(self, term: int, datas: Sequence[bytes]) -> int:
        return self.append([(term, d) for d in datas])

    def _push(self, term: int, data: bytes) -> None:
        limit = self._segment_entries_max
        if limit is not None and self.last_index + 1 - self._segment_bases[-1] >= limit:
            self._segment_bases.append(self.last_index + 1)
        self._terms.append(term)
        self._datas.append(data)
        self._stats["records"] += 1

    def sync(self) -> int:
        self._check_writable()
        if self.fail_sync is not None:
            exc, self.fail_sync = self.fail_sync, None
            self._failed = exc
            raise LogError(f"fsync failed: {exc!r}") from exc
        self._synced = self.last_index
        self._stats["syncs"] += 1
        return self._synced

    def entry(self, index: int) -> tuple[int, bytes]:
        self._check_open()
        rel = index - self._first
        if not 0 <= rel < len(self._terms):
            raise IndexError(f"index {index} outside [{self._first}, {self.last_index}]")
        return self._terms[rel], self._datas[rel]

    def entries(self, lo: int, hi: int, *, bytes_max: int | None = None) -> list[tuple[int, bytes]]:
        self._check_open()
        if lo >= hi:
            return []
        if lo < self._first or hi > self.last_index + 1:
            raise IndexError(f"range [{lo}, {hi}) outside [{self._first}, {self.last_index + 1})")
        out: list[tuple[int, bytes]] = []
        budget = bytes_max
        for index in range(lo, hi):
            term, data = self.entry(index)
            if budget is not None:
                if len(data) > budget and out:
                    break
                budget -= len(data)
            out.append((term, data))
        return out

    def term_at(self, index: int) -> int:
        rel = index - self._first
        if 0 <= rel < len(self._terms):
            return self._terms[rel]
        if index == 0 and self._first == 1:
            return 0
        raise IndexError(f"index {index} outside [{self._first}, {self.last_index}]")

    def truncate_suffix(self, index: int) -> None:
        self._check_writable()
        if index >= self.last_index:
            return
        if index < self._first - 1:
            raise LogError(
                f"cannot truncate to {index}: entries below {self._first} were compacted"
            )
        keep = index + 1 - self._first
        del self._terms[keep:]
        del self._datas[keep:]
        # Truncation is durable on return in the file log, and so everything kept is synced.
        self._synced = index
        while len(self._segment_bases) > 1 and self._segment_bases[-1] > index + 1:
            self._segment_bases.pop()

    def compact_prefix(self, index: int) -> None:
        self._check_writable()
        if self._segment_entries_max is None:
            new_first = min(index + 1, self.last_index + 1)
        else:
            bases = self._segment_bases
            drop = 0
            while drop < len(bases) - 1 and bases[drop + 1] - 1 <= index:
                drop += 1
            new_first = bases[drop]
            del bases[:drop]
        if new_first <= self._first:
            return
        cut = new_first - self._first
        del self._terms[:cut]
        del self._datas[:cut]
        self._first = new_first
        self._synced = max(self._synced, new_first - 1)

    def reset(self, next_index: int) -> None:
        """Drop every entry; the next append takes ``next_index`` (snapshot install)."""
        self._check_writable()
        if next_index < 1:
            raise ValueError("next_index must be >= 1")
        self._terms = array("Q")
        self._datas = []
        self._first = next_index
        self._synced = next_index - 1
        self._segment_bases = [next_index]

    def crash(self) -> None:
        """Forget every entry that was not synced, as a power loss would."""
        keep = self._synced + 1 - self._first
        if keep < len(self._terms):
            del self._terms[keep:]
            del self._datas[keep:]
        while len(self._segment_bases) > 1 and self._segment_bases[-1] > self.last_index + 1:
            self._segment_bases.pop()
        self._closed = False
        self._failed = None

    def close(self) -> None:
        self._closed = True

    def reopen(self) -> None:
        """Make a closed log usable again (the in-memory stand-in for ``open``)."""
        self._closed = False

    def statistics(self) -> dict[str, int]:
        return {
            "segments": len(self._segment_bases),
            "bytes": sum(map(len, self._datas)),
            "first_index": self._first,
            "last_index": self.last_index,
            "synced_index": self._synced,
            **self._stats,
        }

    def _check_open(self) -> None:
        if self._closed:
            raise LogError("log is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._failed is not None:
            raise LogError(f"log failed earlier and accepts no more writes: {self._failed!r}")
