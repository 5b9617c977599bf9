"""GroupCommitter: the single-node commit pipeline over a log.

``propose`` assigns the next index and buffers the data without awaiting; ``run`` is the commit
loop. Rules:

1. The loop takes *all* buffered proposals as one batch and writes them with one
   ``log.append_batch`` call. Proposals made while that batch is written and fsynced form the
   next batch, so they share the next fsync.
2. ``commit_index`` only moves forward, and only after the batch is durable for
   ``fsync="always"`` (after the write for ``"interval"`` and ``"never"``).
3. Waiters park on one task list per batch (``wait_task_rescheduled``): the in-flight batch's
   list for indexes it holds, the open batch's list for anything later. A commit reschedules
   the whole list; a cancelled waiter takes itself out of it.
4. Log writes, fsyncs and prefix compactions never overlap: each holds ``_io_lock``; fsync and
   compaction run in a worker thread. For ``fsync="always"`` the per-batch fsync runs in one
   long-lived thread owned by ``run`` (a ``trio.to_thread`` thread per batch costs more than
   the fsync itself); a cancel of ``run`` waits for an fsync already started.
5. A failed write or fsync is fatal: ``run`` raises, every waiter gets ``CommitFailed``, and
   every later call raises it too.

fsync policies (what a crash of the machine can lose):
- ``always``: nothing that was confirmed; a confirm means the entry is on disk.
- ``interval``: entries confirmed in the last ``fsync_interval_ms`` before a power loss or
  kernel crash (a crash of the process alone loses nothing written).
- ``never``: everything since the last ``flush`` on a power loss or kernel crash.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal

import outcome
import trio
from trio.lowlevel import Abort, RaiseCancelT, Task, current_task, reschedule, wait_task_rescheduled

from storage.errors import LogError
from storage.interface import Log

__all__ = ["BacklogFull", "CommitFailed", "FsyncPolicy", "GroupCommitter"]

FsyncPolicy = Literal["always", "interval", "never"]


def _abort_never(_: RaiseCancelT) -> Abort:
    return Abort.FAILED


class BacklogFull(LogError):
    """Proposals not yet committed would pass ``pending_bytes_max``; retry after commits."""


class CommitFailed(LogError):
    """The commit pipeline stopped after a write or fsync error; the node must stop."""


def _park(waiters: list[Task]) -> Callable[[RaiseCancelT], Abort]:
    """Add the current task to ``waiters``; returns the abort function that takes it out."""
    task = current_task()
    waiters.append(task)

    def abort(_: RaiseCancelT) -> Abort:
        waiters.remove(task)
        return Abort.SUCCEEDED

    return abort


def _wake(waiters: list[Task]) -> None:
    for task in waiters:
        reschedule(task)


class GroupCommitter:
    def __init__(
        self,
        log: Log,
        *,
        fsync: FsyncPolicy = "always",
        fsync_interval_ms: int = 200,
        pending_bytes_max: int = 64 << 20,
        retained_bytes_max: int = 64 << 20,
        term: int = 1,
        on_fsync: Callable[[float], None] | None = None,
    ) -> None:
        """``on_fsync``, when given, is called with the seconds each fsync took (metrics)."""
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"unknown fsync policy {fsync!r}")
        if fsync_interval_ms <= 0:
            raise ValueError("fsync_interval_ms must be positive")
        self._log = log
        self._fsync = fsync
        self._fsync_interval_s = fsync_interval_ms / 1000
        self._pending_bytes_max = pending_bytes_max
        self._payload_bytes_max = log.payload_bytes_max
        self._retained_bytes_max = retained_bytes_max
        self._term = term
        self._on_fsync = on_fsync
        # Entries already in the log when the committer starts count as committed.
        self._commit = log.last_index
        self._taken = log.last_index  # highest index handed to the log
        self._proposed = log.last_index  # highest index assigned
        self._open: list[bytes] = []  # proposals not yet taken by the loop
        self._open_bytes = 0
        self._inflight_bytes = 0
        # Tasks parked until the batch holding the open proposals commits, and until the
        # in-flight batch commits (see rule 3).
        self._open_waiters: list[Task] = []
        self._batch_waiters: list[Task] = []
        self._idle: Task | None = None  # the loop, parked until something is proposed
        self._io_lock = trio.Lock()
        # Requests to the fsync thread of the current ``run`` (``fsync="always"``): the task to
        # reschedule with the outcome of ``log.sync``; ``None`` stops the thread.
        self._fsync_requests: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._failed: BaseException | None = None
        # Committed batches kept for the apply loop: (first index, datas), oldest first.
        self._retained: deque[tuple[int, list[bytes]]] = deque()
        self._retained_bytes = 0
        self._stats = {"batches": 0, "records": 0, "bytes": 0, "fsyncs": 0, "batch_records_max": 0}

    # -- proposing ------------------------------------------------------------------------------

    @property
    def commit_index(self) -> int:
        return self._commit

    @property
    def last_proposed_index(self) -> int:
        return self._proposed

    @property
    def term(self) -> int:
        return self._term

    def propose(self, data: bytes) -> int:
        """Buffer ``data`` for the next batch and return its index (not committed yet)."""
        if self._failed is not None:
            raise CommitFailed(f"commit pipeline failed: {self._failed!r}")
        size = len(data)
        if size > self._payload_bytes_max:
            raise LogError(f"entry data is larger than payload_bytes_max={self._payload_bytes_max}")
        if self._open_bytes + self._inflight_bytes + size > self._pending_bytes_max:
            raise BacklogFull(
                f"uncommitted proposals would pass pending_bytes_max={self._pending_bytes_max}"
            )
        self._open.append(data)
        self._open_bytes += size
        if self._idle is not None:
            reschedule(self._idle)
            self._idle = None
        self._proposed += 1
        return self._proposed

    def propose_many(self, datas: Sequence[bytes]) -> int:
        """Buffer every item of ``datas`` (all or none); returns the last index."""
        if self._failed is not None:
            raise CommitFailed(f"commit pipeline failed: {self._failed!r}")
        if not datas:
            return self._proposed
        size = sum(map(len, datas))
        if max(map(len, datas)) > self._payload_bytes_max:
            raise LogError(f"entry data is larger than payload_bytes_max={self._payload_bytes_max}")
        if self._open_bytes + self._inflight_bytes + size > self._pending_bytes_max:
            raise BacklogFull(
                f"uncommitted proposals would pass pending_bytes_max={self._pending_bytes_max}"
            )
        self._open.extend(datas)
        self._open_bytes += size
        if self._idle is not None:
            reschedule(self._idle)
            self._idle = None
        self._proposed += len(datas)
        return self._proposed

    async def wait_committed(self, index: int) -> None:
        """Return once ``commit_index >= index``."""
        while self._commit < index:
            if self._failed is not None:
                raise CommitFailed(f"commit pipeline failed: {self._failed!r}")
            waiters = self._batch_waiters if index <= self._taken else self._open_waiters
            await wait_task_rescheduled(_park(waiters))
        if self._failed is not None and self._commit < index:
            raise CommitFailed(f"commit pipeline failed: {self._failed!r}")
        await trio.lowlevel.checkpoint()

    async def append(self, data: bytes) -> int:
        """Propose ``data`` and wait until it commits; returns its index."""
        index = self.propose(data)
        # The new entry is in the open batch: one wait covers it unless the pipeline fails.
        task = current_task()
        waiters = self._open_waiters
        waiters.append(task)

        def abort(_: RaiseCancelT) -> Abort:
            waiters.remove(task)
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)
        while self._commit < index:
            if self._failed is not None:
                raise CommitFailed(f"commit pipeline failed: {self._failed!r}")
            waiters = self._batch_waiters if index <= self._taken else self._open_waiters
            await wait_task_rescheduled(_park(waiters))
        return index

    async def wait_commit_beyond(self, index: int) -> int:
        """Return ``commit_index`` once it is above ``index``."""
        await self.wait_committed(index + 1)
        return self._commit

    # -- committed data for the apply loop ------------------------------------------------------

    def pending_entry(self, index: int) -> bytes | None:
        """Data of a committed entry still held in memory, or ``None`` (read the log then)."""
        for first, datas in self._retained:
            if index < first:
                return None
            if index < first + len(datas):
                return datas[index - first]
        return None

    def committed_data(self, lo: int, hi: int) -> list[bytes]:
        """Data of committed entries ``[lo, hi)``, from memory where held, else from the log."""
        if hi - 1 > self._commit:
            raise IndexError(f"entries up to {hi - 1} requested, commit index is {self._commit}")
        out: list[bytes] = []
        index = lo
        for first, datas in self._retained:
            if index >= hi:
                break
            end = first + len(datas)
            if end <= index:
                continue
            if first > index:
                out.extend(d for _, d in self._log.entries(index, min(first, hi)))
                index = min(first, hi)
                if index >= hi:
                    break
            stop = min(end, hi)
            out.extend(datas[index - first : stop - first])
            index = stop
        if index < hi:
            out.extend(d for _, d in self._log.entries(index, hi))
        return out

    def release(self, index: int) -> None:
        """Forget retained data of entries ``<= index`` (they have been applied)."""
        retained = self._retained
        while retained and retained[0][0] + len(retained[0][1]) - 1 <= index:
            _, datas = retained.popleft()
            self._retained_bytes -= sum(map(len, datas))

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The commit loop; raises if a write or fsync fails."""
        if self._fsync == "never":
            task_status.started()
            await self._loop()
            return
        try:
            async with trio.open_nursery() as nursery:
                # A fresh queue per run: a thread that never started leaves its stop request
                # behind, and it must not stop the next run's thread.
                requests: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
                self._fsync_requests = requests
                if self._fsync == "interval":
                    nursery.start_soon(self._interval_syncer)
                else:
                    nursery.start_soon(self._fsync_worker_task, requests)
                task_status.started()
                try:
                    await self._loop()
                finally:
                    requests.put(None)
        except BaseExceptionGroup:
            failed = self._failed
            if failed is None:
                raise
            raise failed from None

    async def _fsync_worker_task(self, requests: queue.SimpleQueue[Task | None]) -> None:
        # A trio worker thread (not a bare one) so that ``log.sync`` may use ``trio.from_thread``.
        # It cannot be abandoned: ``run`` stops it with ``None`` and waits for a running fsync.
        await trio.to_thread.run_sync(
            self._fsync_worker, trio.lowlevel.current_trio_token(), requests
        )

    def _fsync_worker(
        self, token: trio.lowlevel.TrioToken, requests: queue.SimpleQueue[Task | None]
    ) -> None:
        sync = self._log.sync
        while (task := requests.get()) is not None:
            token.run_sync_soon(reschedule, task, outcome.capture(sync))

    async def _loop(self) -> None:
        log = self._log
        always = self._fsync == "always"
        stats = self._stats
        if always and log.synced_index < log.last_index:
            await self._sync()
        while True:
            batch = self._open
            if not batch:
                self._idle = current_task()
                await wait_task_rescheduled(self._abort_idle)
                continue
            # The fsync wait below defers a cancel until the fsync returns; honour it here,
            # before taking a batch (no schedule point unless cancelled).
            await trio.lowlevel.checkpoint_if_cancelled()
            self._open = []
            batch_bytes = self._open_bytes
            self._open_bytes = 0
            self._inflight_bytes = batch_bytes
            first = self._taken + 1
            self._taken += len(batch)
            waiters = self._batch_waiters = self._open_waiters
            self._open_waiters = []
            # A background/flush fsync or a compaction may be running in its thread: wait for
            # it (uncontended, this takes no checkpoint).
            try:
                self._io_lock.acquire_nowait()
            except trio.WouldBlock:
                await self._io_lock.acquire()
            try:
                try:
                    log.append_batch(self._term, batch)
                except BaseException as exc:
                    self._die(exc)
                    raise
                if always:
                    await self._sync_batch()
            finally:
                self._io_lock.release()
            self._commit = self._taken
            self._inflight_bytes = 0
            stats["batches"] += 1
            stats["records"] += len(batch)
            stats["bytes"] += batch_bytes
            if len(batch) > stats["batch_records_max"]:
                stats["batch_records_max"] = len(batch)
            self._retain(first, batch, batch_bytes)
            _wake(waiters)
            waiters.clear()

    def _abort_idle(self, _: RaiseCancelT) -> Abort:
        self._idle = None
        return Abort.SUCCEEDED

    async def _sync_batch(self) -> None:
        """fsync the log in the fsync worker thread; the caller holds ``_io_lock``.

        Like ``trio.to_thread.run_sync`` without ``abandon_on_cancel``, a cancel is only delivered
        once the fsync has returned.
        """
        started = time.perf_counter()
        self._fsync_requests.put(current_task())
        try:
            # The worker reschedules this task with the outcome of ``log.sync``.
            await wait_task_rescheduled(_abort_never)
        except BaseException as exc:
            self._die(exc)
            raise
        self._stats["fsyncs"] += 1
        if self._on_fsync is not None:
            self._on_fsync(time.perf_counter() - started)

    def _retain(self, first: int, batch: list[bytes], batch_bytes: int) -> None:
        retained = self._retained
        retained.append((first, batch))
        self._retained_bytes += batch_bytes
        while self._retained_bytes > self._retained_bytes_max and len(retained) > 1:
            _, datas = retained.popleft()
            self._retained_bytes -= sum(map(len, datas))

    async def _sync(self) -> None:
        """fsync the log in a worker thread; the caller holds ``_io_lock``."""
        started = time.perf_counter()
        try:
            await trio.to_thread.run_sync(self._log.sync)
        except BaseException as exc:
            self._die(exc)
            raise
        self._stats["fsyncs"] += 1
        if self._on_fsync is not None:
            self._on_fsync(time.perf_counter() - started)

    def _die(self, exc: BaseException) -> None:
        if self._failed is None:
            self._failed = exc
        _wake(self._batch_waiters)
        self._batch_waiters.clear()
        _wake(self._open_waiters)
        self._open_waiters.clear()

    async def _interval_syncer(self) -> None:
        while True:
            await trio.sleep(self._fsync_interval_s)
            await self._sync_if_needed()

    async def _sync_if_needed(self) -> None:
        async with self._io_lock:
            if self._failed is not None:
                raise CommitFailed(f"commit pipeline failed: {self._failed!r}")
            if self._log.synced_index < self._log.last_index:
                await self._sync()

    async def flush(self) -> None:
        """Return once everything proposed so far is written and fsynced; needs ``run``."""
        await self.wait_committed(self._proposed)
        if self._fsync != "always":
            await self._sync_if_needed()

    async def compact_prefix(self, index: int) -> None:
        """Drop whole log segments holding only entries ``<= index`` (covered by a snapshot)."""
        async with self._io_lock:
            if self._failed is not None:
                raise CommitFailed(f"commit pipeline failed: {self._failed!r}")
            await trio.to_thread.run_sync(self._log.compact_prefix, index)

    async def aclose(self) -> None:
        """Flush; the caller then cancels ``run`` and closes the log."""
        await self.flush()

    def statistics(self) -> dict[str, float]:
        stats = self._stats
        batches = stats["batches"]
        return {
            **stats,
            "avg_batch_records": stats["records"] / batches if batches else 0.0,
            "commit_index": self._commit,
            "pending_bytes": self._open_bytes + self._inflight_bytes,
            "retained_bytes": self._retained_bytes,
        }
