"""GroupCommitter: batching, fsync policies, flush, waits, limits and failures."""

from __future__ import annotations

import errno
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from storage.commit import BacklogFull, CommitFailed, FsyncPolicy, GroupCommitter
from storage.errors import LogError
from storage.log import SegmentedLog
from storage.memlog import MemoryLog

TIMEOUT_S = 10


class GatedLog(MemoryLog):
    """A MemoryLog whose sync blocks until released, and reports when it starts."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Semaphore(0)
        self.gated = False
        self.on_sync: Callable[[], None] | None = None

    def sync(self) -> int:
        if self.on_sync is not None:
            trio.from_thread.run_sync(self.on_sync)
        if self.gated:
            assert self.gate.acquire(timeout=TIMEOUT_S)
        return super().sync()


@asynccontextmanager
async def running(committer: GroupCommitter) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        yield nursery
        nursery.cancel_scope.cancel()


async def test_append_commits_in_order() -> None:
    log = MemoryLog()
    committer = GroupCommitter(log)
    with trio.fail_after(TIMEOUT_S):
        async with running(committer):
            assert await committer.append(b"a") == 1
            assert await committer.append(b"b") == 2
            assert committer.commit_index == 2
    assert log.entries(1, 3) == [(1, b"a"), (1, b"b")]
    assert log.synced_index == 2


async def test_proposals_during_fsync_share_the_next_one() -> None:
    log = GatedLog()
    log.gated = True
    started = trio.Event()
    log.on_sync = started.set
    committer = GroupCommitter(log)
    with trio.fail_after(TIMEOUT_S):
        async with running(committer) as nursery:
            nursery.start_soon(committer.append, b"first")
            await started.wait()  # the first batch is being fsynced
            started = trio.Event()
            log.on_sync = started.set
            last = committer.propose_many([b"x%d" % i for i in range(50)])
            assert last == 51
            for i in range(50):
                nursery.start_soon(committer.append, b"y%d" % i)
            assert committer.commit_index == 0
            log.gate.release()
            await started.wait()  # the second batch, with all 100 proposals
            assert committer.commit_index == 1
            log.gate.release()
            await committer.wait_committed(101)
    stats = committer.statistics()
    assert stats["fsyncs"] == 2
    assert stats["batches"] == 2
    assert stats["records"] == 101
    assert stats["batch_records_max"] == 100
    assert stats["avg_batch_records"] == 50.5
    assert log.synced_index == 101


async def test_many_concurrent_proposers_are_batched(tmp_path: Path) -> None:
    with SegmentedLog.open(tmp_path) as log:
        committer = GroupCommitter(log)
        seen: list[int] = []

        async def proposer(n: int) -> None:
            for i in range(20):
                index = await committer.append(b"%d-%d" % (n, i))
                assert log.synced_index >= index
                seen.append(index)

        with trio.fail_after(TIMEOUT_S):
            async with running(committer), trio.open_nursery() as inner:
                for n in range(32):
                    inner.start_soon(proposer, n)
        assert sorted(seen) == list(range(1, 641))
        stats = committer.statistics()
        assert stats["fsyncs"] < 640 / 4  # batching happened
        assert log.synced_index == 640


async def test_never_policy_syncs_only_on_flush() -> None:
    log = MemoryLog()
    committer = GroupCommitter(log, fsync="never")
    with trio.fail_after(TIMEOUT_S):
        async with running(committer):
            for i in range(10):
                await committer.append(b"%d" % i)
            assert committer.commit_index == 10
            assert log.synced_index == 0
            assert committer.statistics()["fsyncs"] == 0
            await committer.flush()
            assert log.synced_index == 10
            assert committer.statistics()["fsyncs"] == 1


async def test_interval_policy_commits_before_sync_then_syncs_in_background() -> None:
    log = GatedLog()
    synced = trio.Event()
    log.on_sync = synced.set
    committer = GroupCommitter(log, fsync="interval", fsync_interval_ms=30)
    with trio.fail_after(TIMEOUT_S):
        async with running(committer):
            log.gated = True
            await committer.append(b"a")  # commits without waiting for any fsync
            assert committer.commit_index == 1
            await synced.wait()  # the timer fired and the fsync is running
            synced = trio.Event()
            log.on_sync = synced.set
            # The log is not written while that fsync runs: proposals wait for it.
            index = committer.propose(b"b")
            with trio.move_on_after(0.05):
                await committer.wait_committed(index)
            assert committer.commit_index == 1
            log.gated = False
            log.gate.release()
            await committer.wait_committed(index)
            await committer.flush()
            assert log.synced_index == 2


async def test_interval_policy_flush() -> None:
    log = MemoryLog()
    committer = GroupCommitter(log, fsync="interval", fsync_interval_ms=60_000)
    with trio.fail_after(TIMEOUT_S):
        async with running(committer):
            await committer.append(b"a")
            assert log.synced_index == 0
            await committer.flush()
            assert log.synced_index == 1


async def test_wait_commit_beyond() -> None:
    log = MemoryLog()
    committer = GroupCommitter(log)
    results: list[int] = []

    async def applier() -> None:
        applied = 0
        while applied < 5:
            applied = await committer.wait_commit_beyond(applied)
            results.append(applied)

    with trio.fail_after(TIMEOUT_S):
        async with running(committer), trio.open_nursery() as inner:
            inner.start_soon(applier)
            await trio.testing.wait_all_tasks_blocked()
            assert results == []
            committer.propose_many([b"1", b"2"])
            await committer.wait_committed(2)
            committer.propose_many([b"3", b"4", b"5"])
    assert results[-1] == 5
    assert results == sorted(set(results))


async def test_backlog_limit() -> None:
    committer = GroupCommitter(MemoryLog(), pending_bytes_max=100)
    committer.propose(b"x" * 60)
    with pytest.raises(BacklogFull):
        committer.propose(b"x" * 41)
    with pytest.raises(BacklogFull):
        committer.propose_many([b"x" * 20, b"x" * 21])
    assert committer.last_proposed_index == 1
    assert committer.propose_many([b"x" * 20, b"x" * 20]) == 3
    with trio.fail_after(TIMEOUT_S):
        async with running(committer):
            await committer.wait_committed(3)
            assert committer.statistics()["pending_bytes"] == 0
            committer.propose(b"x" * 100)


async def test_oversize_proposal_is_rejected_without_killing_the_pipeline() -> None:
    committer = GroupCommitter(MemoryLog(payload_bytes_max=10))
    with pytest.raises(LogError):
        committer.propose(b"x" * 11)
    with trio.fail_after(TIMEOUT_S):
        async with running(committer):
            assert await committer.append(b"x" * 10) == 1


async def test_fsync_failure_is_fatal() -> None:
    log = MemoryLog()
    committer = GroupCommitter(log)
    outcome: list[BaseException] = []

    async def proposer() -> None:
        try:
            await committer.append(b"doomed")
        except CommitFailed as exc:
            outcome.append(exc)

    with trio.fail_after(TIMEOUT_S):
        async with running(committer):
            await committer.append(b"ok")
        log.fail_sync = OSError(errno.EIO, "I/O error")
        with pytest.raises(ExceptionGroup) as info:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(proposer)
                await committer.run()
        assert info.group_contains(LogError, match="fsync failed")
    assert len(outcome) == 1
    assert committer.commit_index == 1
    with pytest.raises(CommitFailed):
        committer.propose(b"later")


async def test_interval_fsync_failure_is_fatal() -> None:
    log = MemoryLog()
    committer = GroupCommitter(log, fsync="interval", fsync_interval_ms=10)
    log.fail_sync = OSError(errno.EIO, "I/O error")
    with trio.fail_after(TIMEOUT_S), pytest.raises(ExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(committer.append, b"a")
            await committer.run()
    assert info.group_contains(LogError, match="fsync failed")


async def test_write_failure_is_fatal(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path)
    committer = GroupCommitter(log)
    with trio.fail_after(TIMEOUT_S):
        async with running(committer):
            await committer.append(b"a")
        log.close()  # every later write fails
        committer.propose(b"b")
        with pytest.raises(LogError, match="closed"):
            await committer.run()
    with pytest.raises(CommitFailed):
        await committer.wait_committed(2)


async def test_committed_data_from_memory_and_log(tmp_path: Path) -> None:
    with SegmentedLog.open(tmp_path) as log:
        log.append([(1, b"old1"), (1, b"old2")])
        committer = GroupCommitter(log, retained_bytes_max=8)
        assert committer.commit_index == 2
        with trio.fail_after(TIMEOUT_S):
            async with running(committer):
                await committer.append(b"new3")
                committer.propose_many([b"new4", b"new5"])
                await committer.wait_committed(5)
        assert committer.pending_entry(1) is None
        assert committer.pending_entry(3) is None  # dropped: retained_bytes_max is 8
        assert committer.pending_entry(4) == b"new4"
        assert committer.committed_data(1, 6) == [b"old1", b"old2", b"new3", b"new4", b"new5"]
        committer.release(4)  # releases whole batches only; 4 shares one with 5
        assert committer.pending_entry(5) == b"new5"
        committer.release(5)
        assert committer.pending_entry(5) is None
        assert committer.committed_data(3, 6) == [b"new3", b"new4", b"new5"]
        with pytest.raises(IndexError):
            committer.committed_data(1, 7)


@pytest.mark.parametrize("policy", ["always", "interval", "never"])
async def test_flush_then_reopen_has_everything(tmp_path: Path, policy: FsyncPolicy) -> None:
    log = SegmentedLog.open(tmp_path, segment_bytes_max=4096)
    committer = GroupCommitter(log, fsync=policy)
    with trio.fail_after(TIMEOUT_S):
        async with running(committer):
            for i in range(100):
                committer.propose(b"%03d" % i * 10)
            await committer.flush()
            assert log.synced_index == 100
    log.close()
    with SegmentedLog.open(tmp_path, segment_bytes_max=4096) as again:
        assert [d for _, d in again.entries(1, 101)] == [b"%03d" % i * 10 for i in range(100)]


async def test_cancelled_waiters_leave_their_batch() -> None:
    log = GatedLog()
    log.gated = True
    started = trio.Event()
    log.on_sync = started.set
    committer = GroupCommitter(log)
    scopes: list[trio.CancelScope] = []
    cancelled: list[str] = []

    async def wait_then_cancel(name: str, index: int | None) -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            if index is None:
                await committer.append(b"cancelled")
            else:
                await committer.wait_committed(index)
        if scope.cancelled_caught:
            cancelled.append(name)

    with trio.fail_after(TIMEOUT_S):
        async with running(committer) as nursery:
            nursery.start_soon(committer.append, b"first")
            await started.wait()  # the batch holding index 1 is being fsynced
            nursery.start_soon(wait_then_cancel, "in-flight", 1)
            nursery.start_soon(wait_then_cancel, "open", None)  # proposes index 2
            await trio.testing.wait_all_tasks_blocked()
            for scope in scopes:
                scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(cancelled) == ["in-flight", "open"]
            log.gated = False
            log.gate.release()
            # A cancelled append does not withdraw its proposal.
            await committer.wait_committed(2)
            assert await committer.append(b"third") == 3
    assert log.entries(1, 4) == [(1, b"first"), (1, b"cancelled"), (1, b"third")]


async def test_cancelling_run_waits_for_the_running_fsync_then_run_restarts() -> None:
    log = GatedLog()
    log.gated = True
    started = trio.Event()
    log.on_sync = started.set
    committer = GroupCommitter(log)
    run_scope = trio.CancelScope()
    stopped = trio.Event()

    async def run_until_cancelled() -> None:
        with run_scope:
            await committer.run()
        stopped.set()

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_until_cancelled)
            nursery.start_soon(committer.append, b"a")
            await started.wait()
            run_scope.cancel()
            with trio.move_on_after(0.05):
                await stopped.wait()
            assert not stopped.is_set()  # the fsync thread is still in log.sync
            assert committer.commit_index == 0
            log.gated = False
            log.gate.release()
            await stopped.wait()
            # The fsync finished before run stopped, so its batch is durable and committed.
            assert committer.commit_index == 1
            assert log.synced_index == 1
            await nursery.start(committer.run)
            assert await committer.append(b"b") == 2
            assert log.synced_index == 2
            nursery.cancel_scope.cancel()
    assert committer.statistics()["fsyncs"] == 2
