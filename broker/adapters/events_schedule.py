"""EventBridge schedule expressions and the timers of scheduled rules.

``parse_schedule`` reads ``rate(value unit)`` and AWS's six-field
``cron(minutes hours day-of-month month day-of-week year)`` (UTC) and refuses anything else with
``ScheduleError`` (the adapter answers ``ValidationException: Parameter ScheduleExpression is
not valid.`` as AWS does). ``Schedule.next_after(after_ms, anchor_ms)`` is pure: the first
firing strictly after ``after_ms`` (a rate counts from ``anchor_ms``, the rule's creation).

Cron fields, as the EventBridge user guide lists them:

=============  ==========================  =====================
field          values                      wildcards
=============  ==========================  =====================
minutes        0-59                        , - * /
hours          0-23                        , - * /
day-of-month   1-31                        , - * ? / L W
month          1-12 or JAN-DEC             , - * /
day-of-week    1-7 or SUN-SAT (1 = SUN)    , - * ? L #
year           1970-2199                   , - * /
=============  ==========================  =====================

One of day-of-month and day-of-week must be ``?``. ``L`` in day-of-month is the last day of the
month (``L-n`` n days before it), ``nW`` the weekday nearest day n within the month, ``LW`` the
last weekday; ``nL`` in day-of-week the last such weekday of the month, ``n#k`` the k-th.

``RuleTimers`` keeps one timer per enabled scheduled rule and calls ``fire(key, due_ms)`` when
one is due; the wall clock is injected and waits are trio timeouts, so tests drive it with
trio's MockClock.
"""

from __future__ import annotations

import calendar
import datetime as dt
import heapq
import re
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

import trio

YEAR_MIN = 1970
YEAR_MAX = 2199
#: Longest schedule expression accepted (AWS: 256 characters).
SCHEDULE_EXPRESSION_CHARS_MAX = 256
#: Largest rate value (about 100 years in minutes; bounds the arithmetic).
RATE_VALUE_MAX = 52_560_000
#: Scheduled rules one node keeps timers for.
TIMERS_MAX = 100_000

MINUTE_MS = 60_000
RATE_UNITS_MS = {
    "minute": MINUTE_MS,
    "minutes": MINUTE_MS,
    "hour": 60 * MINUTE_MS,
    "hours": 60 * MINUTE_MS,
    "day": 1440 * MINUTE_MS,
    "days": 1440 * MINUTE_MS,
}
MONTHS = {
    m: i
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
WEEKDAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}

RATE_RE = re.compile(r"^rate\((\d+) ([a-z]+)\)$")
CRON_RE = re.compile(r"^cron\(([^()]*)\)$")


class ScheduleError(ValueError):
    """The expression is not a valid schedule expression."""


@dataclass(frozen=True)
class _Field:
    values: frozenset[int]  # plain values (ranges, lists, steps expanded)
    any: bool = False  # "*"
    question: bool = False  # "?"
    last: bool = False  # "L" (day-of-month)
    last_offset: int = 0  # "L-n"
    weekday_near: tuple[int, ...] = ()  # "nW"
    last_weekday: bool = False  # "LW"
    last_dow: tuple[int, ...] = ()  # "nL" in day-of-week
    nth_dow: tuple[tuple[int, int], ...] = ()  # "n#k"


@dataclass(frozen=True)
class Schedule:
    expression: str
    rate_ms: int = 0  # a rate; 0 for cron
    fields: tuple[_Field, ...] = ()

    @property
    def is_rate(self) -> bool:
        return self.rate_ms > 0

    def next_after(self, after_ms: int, anchor_ms: int = 0) -> int | None:
        """The first firing time (ms since the epoch) strictly after ``after_ms``; None when
        there is none before the end of year 2199."""
        if self.rate_ms:
            if after_ms < anchor_ms:
                return anchor_ms + self.rate_ms
            k = (after_ms - anchor_ms) // self.rate_ms + 1
            return anchor_ms + k * self.rate_ms
        return _cron_next(self.fields, after_ms)


def parse_schedule(expression: str) -> Schedule:
    if not isinstance(expression, str) or len(expression) > SCHEDULE_EXPRESSION_CHARS_MAX:
        raise ScheduleError("too long")
    m = RATE_RE.match(expression)
    if m is not None:
        value, unit = int(m.group(1)), m.group(2)
        if unit not in RATE_UNITS_MS or value < 1 or value > RATE_VALUE_MAX:
            raise ScheduleError("bad rate")
        if (value == 1) != (not unit.endswith("s")):
            raise ScheduleError("a rate of 1 takes a singular unit, others a plural one")
        return Schedule(expression, rate_ms=value * RATE_UNITS_MS[unit])
    m = CRON_RE.match(expression)
    if m is None:
        raise ScheduleError("neither rate() nor cron()")
    parts = m.group(1).split()
    if len(parts) != 6:
        raise ScheduleError("cron takes six fields")
    minutes = _parse_plain(parts[0], 0, 59, {})
    hours = _parse_plain(parts[1], 0, 23, {})
    dom = _parse_dom(parts[2])
    month = _parse_plain(parts[3], 1, 12, MONTHS)
    dow = _parse_dow(parts[4])
    year = _parse_plain(parts[5], YEAR_MIN, YEAR_MAX, {})
    if dom.question == dow.question:
        raise ScheduleError("exactly one of day-of-month and day-of-week must be '?'")
    return Schedule(expression, fields=(minutes, hours, dom, month, dow, year))


def _number(text: str, lo: int, hi: int, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit() or len(text) > 4:
        raise ScheduleError(f"bad value {text!r}")
    n = int(text)
    if not lo <= n <= hi:
        raise ScheduleError(f"{n} out of range {lo}-{hi}")
    return n


def _expand(item: str, lo: int, hi: int, names: dict[str, int]) -> set[int]:
    """One list item: ``*``, ``n``, ``a-b``, each optionally ``/step``."""
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or not 1 <= int(step_text) <= hi:
            raise ScheduleError(f"bad step {step_text!r}")
        step = int(step_text)
    if base == "*":
        start, end = lo, hi
    elif "-" in base:
        a, _, b = base.partition("-")
        start, end = _number(a, lo, hi, names), _number(b, lo, hi, names)
    else:
        start = _number(base, lo, hi, names)
        end = hi if slash else start
    if start <= end:
        return set(range(start, end + 1, step))
    # a wrapping range (FRI-MON, NOV-FEB)
    span = list(range(start, hi + 1)) + list(range(lo, end + 1))
    return set(span[::step])


def _parse_plain(text: str, lo: int, hi: int, names: dict[str, int]) -> _Field:
    if text == "*":
        return _Field(frozenset(range(lo, hi + 1)), any=True)
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError("empty list item")
        values |= _expand(item, lo, hi, names)
    return _Field(frozenset(values))


def _parse_dom(text: str) -> _Field:
    if text == "?":
        return _Field(frozenset(), question=True)
    if text == "L":
        return _Field(frozenset(), last=True)
    if text == "LW":
        return _Field(frozenset(), last_weekday=True)
    m = re.match(r"^L-(\d{1,2})$", text)
    if m is not None:
        offset = int(m.group(1))
        if not 1 <= offset <= 30:
            raise ScheduleError("bad L offset")
        return _Field(frozenset(), last=True, last_offset=offset)
    if text.endswith("W"):
        day = _number(text[:-1], 1, 31, {})
        return _Field(frozenset(), weekday_near=(day,))
    return _parse_plain(text, 1, 31, {})


def _parse_dow(text: str) -> _Field:
    if text == "?":
        return _Field(frozenset(), question=True)
    if text == "L":
        return _Field(frozenset({7}))
    if "#" in text:
        day_text, _, nth_text = text.partition("#")
        day = _number(day_text, 1, 7, WEEKDAYS)
        if not nth_text.isdigit() or not 1 <= int(nth_text) <= 5:
            raise ScheduleError("bad # occurrence")
        return _Field(frozenset(), nth_dow=((day, int(nth_text)),))
    if text.endswith("L") and len(text) > 1:
        return _Field(frozenset(), last_dow=(_number(text[:-1], 1, 7, WEEKDAYS),))
    return _parse_plain(text, 1, 7, WEEKDAYS)


def _aws_weekday(year: int, month: int, day: int) -> int:
    """1 = Sunday ... 7 = Saturday."""
    return (dt.date(year, month, day).weekday() + 1) % 7 + 1


def _nearest_weekday(year: int, month: int, day: int, days_in_month: int) -> int | None:
    if day > days_in_month:
        return None
    wd = dt.date(year, month, day).weekday()  # 0 = Monday
    if wd < 5:
        return day
    if wd == 5:  # Saturday: the Friday before, or the Monday after on the 1st
        return day - 1 if day > 1 else day + 2
    return day + 1 if day < days_in_month else day - 2  # Sunday


def _days(dom: _Field, dow: _Field, year: int, month: int) -> list[int]:
    n = calendar.monthrange(year, month)[1]
    out: set[int] = set()
    if not dom.question:
        out |= {d for d in dom.values if d <= n}
        if dom.last and n - dom.last_offset >= 1:
            out.add(n - dom.last_offset)
        if dom.last_weekday:
            d = n
            while dt.date(year, month, d).weekday() >= 5:
                d -= 1
            out.add(d)
        for day in dom.weekday_near:
            near = _nearest_weekday(year, month, day, n)
            if near is not None:
                out.add(near)
    else:
        for d in range(1, n + 1):
            wd = _aws_weekday(year, month, d)
            if wd in dow.values:
                out.add(d)
            if wd in dow.last_dow and d + 7 > n:
                out.add(d)
            for want, nth in dow.nth_dow:
                if wd == want and (d - 1) // 7 + 1 == nth:
                    out.add(d)
    return sorted(out)


def _cron_next(fields: tuple[_Field, ...], after_ms: int) -> int | None:
    minutes, hours, dom, month_f, dow, year_f = fields
    start = dt.datetime.fromtimestamp(after_ms // MINUTE_MS * 60, dt.UTC) + dt.timedelta(minutes=1)
    mins = sorted(minutes.values)
    hrs = sorted(hours.values)
    for year in sorted(y for y in year_f.values if y >= start.year):
        for month in sorted(month_f.values):
            if (year, month) < (start.year, start.month):
                continue
            for day in _days(dom, dow, year, month):
                if (year, month, day) < (start.year, start.month, start.day):
                    continue
                same_day = (year, month, day) == (start.year, start.month, start.day)
                for hour in hrs:
                    if same_day and hour < start.hour:
                        continue
                    for minute in mins:
                        if same_day and hour == start.hour and minute < start.minute:
                            continue
                        when = dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)
                        return int(when.timestamp()) * 1000
    return None


class RuleTimers:
    """One timer per enabled scheduled rule. ``set`` (re)arms a key, ``remove`` drops it;
    ``run(fire)`` calls ``await fire(key, due_ms)`` for each due firing, in due order, and
    rearms the key for its next firing after that. A firing missed while the node was down is
    not made up (as AWS: a schedule fires at its times, at least once each, from when it runs).
    """

    def __init__(self, wall_ms: Callable[[], int]) -> None:
        self.wall_ms = wall_ms
        self._entries: dict[Hashable, tuple[Schedule, int, int]] = {}  # key -> (s, anchor, due)
        self._heap: list[tuple[int, int, Hashable]] = []
        self._seq = 0
        self._changed = trio.Event()

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[Hashable]:
        return list(self._entries)

    def due(self, key: Hashable) -> int | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[2]

    def set(self, key: Hashable, schedule: Schedule, anchor_ms: int) -> None:
        if key not in self._entries and len(self._entries) >= TIMERS_MAX:
            raise ScheduleError("too many scheduled rules")
        due = schedule.next_after(self.wall_ms(), anchor_ms)
        if due is None:
            self._entries.pop(key, None)
        else:
            self._entries[key] = (schedule, anchor_ms, due)
            self._seq += 1
            heapq.heappush(self._heap, (due, self._seq, key))
        self._changed.set()

    def remove(self, key: Hashable) -> None:
        if self._entries.pop(key, None) is not None:
            self._changed.set()

    async def run(self, fire: Callable[[Hashable, int], Awaitable[None]]) -> None:
        while True:
            self._changed = trio.Event()
            now = self.wall_ms()
            while self._heap:
                due, _, key = self._heap[0]
                entry = self._entries.get(key)
                if entry is None or entry[2] != due:
                    heapq.heappop(self._heap)  # superseded or removed
                    continue
                if due > now:
                    break
                heapq.heappop(self._heap)
                schedule, anchor, _ = entry
                nxt = schedule.next_after(max(now, due), anchor)
                if nxt is None:
                    del self._entries[key]
                else:
                    self._entries[key] = (schedule, anchor, nxt)
                    self._seq += 1
                    heapq.heappush(self._heap, (nxt, self._seq, key))
                await fire(key, due)
            wait_s = 3600.0
            if self._heap:
                wait_s = min(wait_s, max(0.0, (self._heap[0][0] - self.wall_ms()) / 1000))
            with trio.move_on_after(wait_s):
                await self._changed.wait()
