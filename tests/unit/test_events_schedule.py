"""EventBridge schedule expressions (broker/adapters/events_schedule.py): the parser accepts
AWS's rate() and six-field cron() and refuses the rest; next firing times; the rule timers
driven by trio's MockClock."""

from __future__ import annotations

import datetime as dt

import pytest
import trio
import trio.testing

from broker.adapters.events_schedule import RuleTimers, ScheduleError, parse_schedule


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


def iso(value: int | None) -> str | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 minute)",
        "rate(5 minutes)",
        "rate(1 hour)",
        "rate(12 hours)",
        "rate(1 day)",
        "rate(7 days)",
        "cron(0 12 * * ? *)",
        "cron(15 10 ? * 6L 2002-2005)",
        "cron(0/15 * * * ? *)",
        "cron(0 8 1 * ? *)",
        "cron(0/10 * ? * MON-FRI *)",
        "cron(0/5 8-17 ? * MON-FRI *)",
        "cron(0 9 ? * 2#1 *)",
        "cron(0 18 ? * MON-FRI *)",
        "cron(0 10 L * ? *)",
        "cron(0 10 15W * ? *)",
        "cron(0 10 LW * ? *)",
        "cron(0 0 1 JAN,JUL ? *)",
    ],
)
def test_valid(expression: str) -> None:
    assert parse_schedule(expression).expression == expression


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "rate(0 minutes)",
        "rate(1 minutes)",
        "rate(2 minute)",
        "rate(5 weeks)",
        "rate(-1 days)",
        "rate(5  minutes)",
        "cron(0 12 * * * *)",  # day-of-month and day-of-week both set
        "cron(0 12 ? * ? *)",  # both '?'
        "cron(0 12 * * ?)",  # five fields
        "cron(60 12 * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 12 32 * ? *)",
        "cron(0 12 ? 13 * *)",
        "cron(0 12 ? * 8 *)",
        "cron(0 12 ? * 2#6 *)",
        "cron(0 12 * * ? 1969)",
        "cron(0/0 * * * ? *)",
        "cron(a 12 * * ? *)",
        "cron(0 12 * * ? *",
        "at(2024-01-01T00:00:00)",
    ],
)
def test_invalid(expression: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(expression)


def test_rate_counts_from_anchor() -> None:
    s = parse_schedule("rate(5 minutes)")
    anchor = ms("2024-01-01T00:00:30")
    assert s.next_after(anchor - 1000, anchor) == anchor + 300_000
    assert s.next_after(anchor, anchor) == anchor + 300_000
    assert s.next_after(anchor + 300_000, anchor) == anchor + 600_000
    assert s.next_after(anchor + 299_999, anchor) == anchor + 300_000


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("cron(0 12 * * ? *)", "2024-01-01T11:59:59", "2024-01-01 12:00"),
        ("cron(0 12 * * ? *)", "2024-01-01T12:00:00", "2024-01-02 12:00"),
        ("cron(0/15 * * * ? *)", "2024-01-01T10:16:00", "2024-01-01 10:30"),
        ("cron(0 8 1 * ? *)", "2024-01-15T00:00:00", "2024-02-01 08:00"),
        ("cron(0/10 * ? * MON-FRI *)", "2024-01-06T10:00:00", "2024-01-08 00:00"),  # Sat -> Mon
        ("cron(0 9 ? * 2#1 *)", "2024-01-02T00:00:00", "2024-02-05 09:00"),  # first Monday
        ("cron(15 10 ? * 6L 2002-2005)", "2002-01-01T00:00:00", "2002-01-25 10:15"),  # last Fri
        ("cron(0 10 L * ? *)", "2024-02-01T00:00:00", "2024-02-29 10:00"),  # leap year
        ("cron(0 10 L-2 * ? *)", "2024-04-01T00:00:00", "2024-04-28 10:00"),
        ("cron(0 10 15W * ? *)", "2024-06-01T00:00:00", "2024-06-14 10:00"),  # 15th is a Sat
        ("cron(0 10 1W * ? *)", "2024-06-01T00:00:00", "2024-06-03 10:00"),  # 1st Sat -> Mon 3rd
        ("cron(0 10 LW * ? *)", "2024-08-01T00:00:00", "2024-08-30 10:00"),  # 31st is a Sat
        ("cron(0 0 1 JAN,JUL ? *)", "2024-01-01T00:00:00", "2024-07-01 00:00"),
        ("cron(0 0 29 2 ? *)", "2024-03-01T00:00:00", "2028-02-29 00:00"),
        ("cron(0 0 1 1 ? 2020)", "2024-01-01T00:00:00", None),
        ("cron(0 22 ? * FRI-MON *)", "2024-01-02T00:00:00", "2024-01-05 22:00"),  # wrapping
    ],
)
def test_cron_next(expression: str, after: str, expected: str | None) -> None:
    assert iso(parse_schedule(expression).next_after(ms(after))) == expected


async def test_timers_fire_in_order_with_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    base = ms("2024-01-01T00:00:00")

    def wall() -> int:
        return base + int(trio.current_time() * 1000)

    timers = RuleTimers(wall)
    fired: list[tuple[object, str | None]] = []

    async def fire(key: object, due: int) -> None:
        fired.append((key, iso(due)))

    timers.set("five", parse_schedule("rate(5 minutes)"), base)
    timers.set("noon", parse_schedule("cron(0 0/6 * * ? *)"), base)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run, fire)
        await trio.sleep(11 * 60)
        timers.remove("five")
        timers.set("one", parse_schedule("rate(1 minute)"), wall())
        await trio.sleep(3 * 60 + 1)
        timers.remove("one")
        await trio.sleep(6 * 3600)
        nursery.cancel_scope.cancel()
    assert fired == [
        ("five", "2024-01-01 00:05"),
        ("five", "2024-01-01 00:10"),
        ("one", "2024-01-01 00:12"),
        ("one", "2024-01-01 00:13"),
        ("one", "2024-01-01 00:14"),
        ("noon", "2024-01-01 06:00"),
    ]


async def test_timer_rearm_replaces(autojump_clock: trio.testing.MockClock) -> None:
    base = ms("2024-01-01T00:00:00")
    timers = RuleTimers(lambda: base + int(trio.current_time() * 1000))
    fired: list[str | None] = []

    async def fire(key: object, due: int) -> None:
        fired.append(iso(due))

    timers.set("r", parse_schedule("rate(10 minutes)"), base)
    timers.set("r", parse_schedule("rate(3 minutes)"), base)  # PutRule changed the schedule
    assert len(timers) == 1
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run, fire)
        await trio.sleep(10 * 60)
        nursery.cancel_scope.cancel()
    assert fired == ["2024-01-01 00:03", "2024-01-01 00:06", "2024-01-01 00:09"]
