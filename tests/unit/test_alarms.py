"""broker/alarms.py: the alarm decision, the clearing event, and the measurements."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
import trio.testing

from broker import config
from broker.alarms import (
    DISK,
    MEMORY,
    Alarms,
    Thresholds,
    disk_free_bytes,
    memory_total_bytes,
    process_rss_bytes,
)

GIB = 1 << 30


@pytest.mark.parametrize(
    ("thresholds", "memory", "total", "disk", "raised"),
    [
        (Thresholds(), GIB, 4 * GIB, 10 * GIB, set()),
        # the fraction of total memory (0.6 by default)
        (Thresholds(), int(2.4 * GIB), 4 * GIB, 10 * GIB, {MEMORY}),
        (Thresholds(memory_high_watermark=0.4), int(1.7 * GIB), 4 * GIB, 10 * GIB, {MEMORY}),
        # an absolute watermark wins over the fraction
        (Thresholds(memory_high_watermark_bytes=100), 100, 4 * GIB, 10 * GIB, {MEMORY}),
        (Thresholds(memory_high_watermark_bytes=101), 100, 4 * GIB, 10 * GIB, set()),
        # free disk below the limit (50 MB by default)
        (Thresholds(), GIB, 4 * GIB, 49_999_999, {DISK}),
        (Thresholds(), GIB, 4 * GIB, 50_000_000, set()),
        (Thresholds(disk_free_limit_bytes=0), GIB, 4 * GIB, 0, set()),  # 0: off
        (Thresholds(memory_high_watermark_bytes=1), GIB, 4 * GIB, 0, {MEMORY, DISK}),
    ],
)
def test_evaluate_raises_what_is_over_its_threshold(
    thresholds: Thresholds, memory: int, total: int, disk: int, raised: set[str]
) -> None:
    alarms = Alarms(thresholds)
    alarms.evaluate(memory, total, disk)
    assert alarms.raised() == raised
    stats = alarms.statistics()
    assert stats["raised"] == sorted(raised)
    assert stats["raised_total"] == len(raised)


def test_alarms_clear_one_by_one_and_an_unknown_disk_keeps_its_state() -> None:
    alarms = Alarms(Thresholds(memory_high_watermark_bytes=1000, disk_free_limit_bytes=1000))
    alarms.evaluate(2000, GIB, 10)
    assert alarms.raised() == {MEMORY, DISK}
    alarms.evaluate(10, GIB, -1)  # the disk could not be measured: still raised
    assert alarms.raised() == {DISK}
    alarms.evaluate(10, GIB, 5000)
    assert alarms.raised() == frozenset()
    assert alarms.statistics()["raised_total"] == 2
    assert alarms.statistics()["checks"] == 3


async def test_wait_cleared_returns_when_the_last_alarm_clears() -> None:
    alarms = Alarms()
    await alarms.wait_cleared()  # nothing raised: at once
    alarms.set_raised(MEMORY, True)
    alarms.set_raised(DISK, True)
    cleared = trio.Event()

    async def waiter() -> None:
        await alarms.wait_cleared()
        cleared.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        alarms.set_raised(MEMORY, False)
        await trio.testing.wait_all_tasks_blocked()
        assert not cleared.is_set()
        alarms.set_raised(DISK, False)
        with trio.fail_after(5):
            await cleared.wait()


def test_set_raised_reports_changes_only() -> None:
    alarms = Alarms()
    assert alarms.set_raised(DISK, True)
    assert not alarms.set_raised(DISK, True)
    assert alarms.set_raised(DISK, False)
    assert not alarms.set_raised(DISK, False)


def test_blocked_connections_are_counted_per_protocol() -> None:
    alarms = Alarms()
    alarms.connection_blocked("amqp", True)
    alarms.connection_blocked("amqp", True)
    alarms.connection_blocked("mqtt", True)
    alarms.connection_blocked("amqp", False)
    alarms.request_refused()
    stats = alarms.statistics()
    assert stats["blocked_connections"] == {"amqp": 1, "mqtt": 1}
    assert stats["blocked_total"] == 3
    assert stats["refused_requests_total"] == 1


def test_measurements_are_plausible(tmp_path: Path) -> None:
    rss = process_rss_bytes()
    total = memory_total_bytes()
    assert 1 << 20 < rss < total
    st = os.statvfs(tmp_path)
    free = disk_free_bytes(str(tmp_path))
    assert 0 <= free <= st.f_blocks * st.f_frsize
    assert disk_free_bytes(str(tmp_path / "no" / "such" / "dir")) == -1


async def test_monitor_checks_before_it_reports_started(tmp_path: Path) -> None:
    alarms = Alarms(Thresholds(memory_high_watermark_bytes=1), data_dir=str(tmp_path))
    async with trio.open_nursery() as nursery:
        await nursery.start(alarms.monitor)
        assert alarms.raised() == {MEMORY}
        assert alarms.statistics()["disk_free_bytes"] >= 0
        nursery.cancel_scope.cancel()


def test_from_config_and_config_validation() -> None:
    cfg = config.build(
        environ={},
        flags={"memory_high_watermark": "0.4", "disk_free_limit_bytes": "1000"},
    )
    alarms = Alarms.from_config(cfg)
    assert alarms.thresholds == Thresholds(0.4, 0, 1000)
    assert alarms.check_interval_s == 1.0
    for bad in ("1.5", "-0.1", "lots"):
        with pytest.raises(config.ConfigError, match="memory_high_watermark"):
            config.build(environ={}, flags={"memory_high_watermark": bad})
