"""SegmentedLog and MemoryLog against a plain list model, under random operation sequences."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from storage.errors import LogError
from storage.log import SegmentedLog
from storage.memlog import MemoryLog

SEGMENT_BYTES_MAX = 256
payloads = st.binary(max_size=120) | st.sampled_from([b"", b"x" * 300])
term_steps = st.integers(min_value=0, max_value=2)


class LogModel(RuleBasedStateMachine):
    kind = "file"

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="polymq-model-")
        self.first = 1
        self.model: list[tuple[int, bytes]] = []
        self.log: Any = None

    def open(self) -> Any:
        if self.kind == "file":
            return SegmentedLog.open(
                self.dir,
                segment_bytes_max=SEGMENT_BYTES_MAX,
                index_interval_records=3,
                index_interval_bytes=100,
            )
        return MemoryLog(segment_entries_max=4)

    @initialize()
    def start(self) -> None:
        self.log = self.open()

    def teardown(self) -> None:
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def last(self) -> int:
        return self.first + len(self.model) - 1

    def floor_term(self) -> int:
        return self.model[-1][0] if self.model else 0

    @rule(items=st.lists(st.tuples(term_steps, payloads), max_size=8))
    def append(self, items: list[tuple[int, bytes]]) -> None:
        term = self.floor_term()
        entries = []
        for step, data in items:
            term += step
            entries.append((term, data))
        assert self.log.append(entries) == self.last + len(entries)
        self.model.extend(entries)

    @rule(step=term_steps, datas=st.lists(payloads, max_size=8))
    def append_batch(self, step: int, datas: list[bytes]) -> None:
        term = self.floor_term() + step
        assert self.log.append_batch(term, datas) == self.last + len(datas)
        self.model.extend((term, d) for d in datas)

    @rule()
    def lower_term_is_rejected(self) -> None:
        if self.model and self.model[-1][0] > 0:
            with pytest.raises(LogError):
                self.log.append([(self.model[-1][0] - 1, b"x")])

    @rule()
    def sync(self) -> None:
        assert self.log.sync() == self.last
        assert self.log.synced_index == self.last

    @rule(data=st.data())
    def truncate_suffix(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.first - 1, self.last + 1))
        self.log.truncate_suffix(index)
        if index < self.last:
            del self.model[index + 1 - self.first :]
            assert self.log.synced_index >= index

    @rule(data=st.data())
    def compact_prefix(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.first - 1, self.last + 1))
        self.log.compact_prefix(index)
        new_first = self.log.first_index
        assert self.first <= new_first <= max(self.first, min(index + 1, self.last + 1))
        del self.model[: new_first - self.first]
        self.first = new_first

    @rule()
    def reopen(self) -> None:
        self.log.close()
        if self.kind == "file":
            self.log = self.open()
        else:
            self.log.reopen()

    @rule(data=st.data())
    def read_range(self, data: st.DataObject) -> None:
        if not self.model:
            return
        lo = data.draw(st.integers(self.first, self.last))
        hi = data.draw(st.integers(lo, self.last + 1))
        bytes_max = data.draw(st.none() | st.integers(0, 400))
        got = self.log.entries(lo, hi, bytes_max=bytes_max)
        want = self.model[lo - self.first : hi - self.first]
        assert got == want[: len(got)]
        if bytes_max is None or lo == hi:
            assert len(got) == len(want)
        else:
            assert len(got) >= 1
            assert sum(len(d) for _, d in got) <= bytes_max or len(got) == 1
            if len(got) < len(want):
                total = sum(len(d) for _, d in got) + len(want[len(got)][1])
                assert total > bytes_max

    @invariant()
    def matches_model(self) -> None:
        if self.log is None:
            return
        log = self.log
        assert log.first_index == self.first
        assert log.last_index == self.last
        assert log.synced_index <= log.last_index
        for offset, (term, data) in enumerate(self.model):
            index = self.first + offset
            assert log.term_at(index) == term
            assert log.entry(index) == (term, data)
        assert log.entries(self.first, self.last + 1) == self.model
        if self.first == 1:
            assert log.term_at(0) == 0
        for bad in (self.first - 1, self.last + 1):
            if bad > 0:
                with pytest.raises(IndexError):
                    log.entry(bad)


class MemoryLogModel(LogModel):
    kind = "memory"


SETTINGS = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("machine", [LogModel, MemoryLogModel], ids=["segmented", "memory"])
def test_log_matches_model(machine: type[LogModel]) -> None:
    run_state_machine_as_test(machine, settings=SETTINGS)
