"""Resource alarms, as RabbitMQ has them: a memory high watermark and a free-disk low watermark.

The node holds one :class:`Alarms`. Its monitor task measures, every
``resource_check_interval_ms``, the process's resident memory (``/proc/self/statm``) and the
space left to unprivileged users on the filesystem of the data directory (``os.statvfs``), and
raises or clears:

* ``"memory"`` while the resident set is at or above the watermark: ``memory_high_watermark_bytes``
  when set, else ``memory_high_watermark`` (a fraction, RabbitMQ's
  ``vm_memory_high_watermark.relative``, default 0.6) of the memory available to the process
  (the cgroup limit when there is one, else the machine's total);
* ``"disk"`` while the free space is below ``disk_free_limit_bytes`` (default 50 MB, RabbitMQ's
  ``disk_free_limit.absolute``).

While any alarm is raised the front ends block publishers and let consumers drain the queues:
AMQP connections that publish get ``connection.blocked`` (when the client advertised the
capability) and are no longer read until every alarm clears (then ``connection.unblocked``);
MQTT and STOMP connections that publish are no longer read; the AWS endpoint answers publishing
calls with its throttling error. Other code reads the state through :meth:`Alarms.raised`,
:meth:`Alarms.wait_cleared` and :meth:`Alarms.statistics`.

:meth:`Alarms.evaluate` is the decision (no I/O, values in); :func:`process_rss_bytes`,
:func:`memory_total_bytes` and :func:`disk_free_bytes` are the measurements.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import trio

from broker.config import Config

log = logging.getLogger("polymq.alarms")

MEMORY = "memory"
DISK = "disk"

#: Read at most this much of a /proc or /sys file
PROC_FILE_BYTES_MAX = 64 << 10


@dataclass(frozen=True, slots=True)
class Thresholds:
    """``memory_high_watermark_bytes`` 0 means: the fraction of ``memory_total_bytes``;
    ``disk_free_limit_bytes`` 0 turns the disk alarm off."""

    memory_high_watermark: float = 0.6
    memory_high_watermark_bytes: int = 0
    disk_free_limit_bytes: int = 50_000_000

    def memory_limit_bytes(self, memory_total_bytes: int) -> int:
        if self.memory_high_watermark_bytes > 0:
            return self.memory_high_watermark_bytes
        return int(self.memory_high_watermark * memory_total_bytes)


class Alarms:
    """The node's resource alarms: which are raised, an event for their clearing, counters of
    blocked connections, and the monitor task that measures."""

    def __init__(
        self,
        thresholds: Thresholds = Thresholds(),
        *,
        data_dir: str = ".",
        check_interval_s: float = 1.0,
    ) -> None:
        self.thresholds = thresholds
        self.data_dir = data_dir
        self.check_interval_s = check_interval_s
        self._raised: frozenset[str] = frozenset()
        self._cleared = trio.Event()
        self._cleared.set()
        self.memory_total_bytes = 0
        self.memory_bytes = 0
        self.disk_free_bytes = -1
        self.checks = 0
        self.raised_total = 0
        #: protocol -> connections held by an alarm right now
        self.blocked: dict[str, int] = {}
        self.blocked_total = 0
        self.refused_total = 0  # publishing requests refused (the AWS endpoint throttles)

    @classmethod
    def from_config(cls, cfg: Config) -> Alarms:
        return cls(
            Thresholds(
                memory_high_watermark=cfg.memory_high_watermark,
                memory_high_watermark_bytes=cfg.memory_high_watermark_bytes,
                disk_free_limit_bytes=cfg.disk_free_limit_bytes,
            ),
            data_dir=cfg.data_dir,
            check_interval_s=max(1, cfg.resource_check_interval_ms) / 1000,
        )

    # -- state ---------------------------------------------------------------------------------

    def raised(self) -> frozenset[str]:
        """The alarms raised now ("memory", "disk"); empty when publishing is allowed."""
        return self._raised

    async def wait_cleared(self) -> None:
        """Return once no alarm is raised."""
        while self._raised:
            await self._cleared.wait()

    def set_raised(self, name: str, raised: bool, **detail: Any) -> bool:
        """Raise or clear one alarm; True when that changed anything (logged)."""
        if raised == (name in self._raised):
            return False
        if raised:
            self._raised = self._raised | {name}
            self.raised_total += 1
            if len(self._raised) == 1:
                self._cleared = trio.Event()
            log.warning("resource alarm raised", extra={"alarm": name, **detail})
        else:
            self._raised = self._raised - {name}
            log.warning("resource alarm cleared", extra={"alarm": name, **detail})
            if not self._raised:
                self._cleared.set()
        return True

    def connection_blocked(self, protocol: str, blocked: bool) -> None:
        """A front end started (or stopped) holding a publishing connection."""
        n = self.blocked.get(protocol, 0) + (1 if blocked else -1)
        self.blocked[protocol] = max(0, n)
        if blocked:
            self.blocked_total += 1

    def request_refused(self) -> None:
        self.refused_total += 1

    def statistics(self) -> dict[str, Any]:
        t = self.thresholds
        return {
            "raised": sorted(self._raised),
            "memory_bytes": self.memory_bytes,
            "memory_limit_bytes": t.memory_limit_bytes(self.memory_total_bytes),
            "memory_total_bytes": self.memory_total_bytes,
            "disk_free_bytes": self.disk_free_bytes,
            "disk_free_limit_bytes": t.disk_free_limit_bytes,
            "checks": self.checks,
            "raised_total": self.raised_total,
            "blocked_connections": dict(self.blocked),
            "blocked_total": self.blocked_total,
            "refused_requests_total": self.refused_total,
        }

    # -- decision ------------------------------------------------------------------------------

    def evaluate(self, memory_bytes: int, memory_total_bytes: int, disk_free: int) -> None:
        """Raise or clear each alarm for these measurements (``disk_free`` < 0: unknown, the
        disk alarm keeps its state)."""
        self.checks += 1
        self.memory_bytes = memory_bytes
        self.memory_total_bytes = memory_total_bytes
        limit = self.thresholds.memory_limit_bytes(memory_total_bytes)
        self.set_raised(
            MEMORY, memory_bytes >= limit, memory_bytes=memory_bytes, memory_limit_bytes=limit
        )
        if disk_free >= 0:
            self.disk_free_bytes = disk_free
            free_limit = self.thresholds.disk_free_limit_bytes
            self.set_raised(
                DISK,
                free_limit > 0 and disk_free < free_limit,
                disk_free_bytes=disk_free,
                disk_free_limit_bytes=free_limit,
            )

    def check(self) -> None:
        """Measure and evaluate once."""
        self.evaluate(process_rss_bytes(), memory_total_bytes(), disk_free_bytes(self.data_dir))

    # -- monitor -------------------------------------------------------------------------------

    async def monitor(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Check at once (so a node starting over its limits blocks publishers from its first
        connection), then every ``check_interval_s``."""
        self.check()
        task_status.started()
        while True:
            await trio.sleep(self.check_interval_s)
            self.check()


# -- measurements --------------------------------------------------------------------------------


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(PROC_FILE_BYTES_MAX).decode("ascii", "replace")


def process_rss_bytes() -> int:
    """This process's resident set size (``/proc/self/statm``: pages, second field)."""
    try:
        fields = _read("/proc/self/statm").split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def memory_total_bytes() -> int:
    """The memory this process may use: the cgroup's limit when one is set (v2
    ``memory.max``, v1 ``memory.limit_in_bytes``), else the machine's ``MemTotal``."""
    total = 0
    try:
        for line in _read("/proc/meminfo").splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        total = 0
    if total <= 0:
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            total = 0
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = _read(path).strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            return int(text)
    return total


def disk_free_bytes(path: str) -> int:
    """Bytes available to unprivileged users on the filesystem holding ``path`` (-1 when it
    cannot be measured)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize
