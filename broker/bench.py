"""``polymq bench``: a load generator for a running broker, in the manner of ``nats bench`` and
RabbitMQ's PerfTest.

    polymq bench amqp|mqtt|stomp|sqs --producers N --consumers M --size BYTES
        --rate MSGS_PER_S (0 = unlimited) --duration S [--persistent] [--qos 0|1] [--confirm]
        [--url URL] [--json] [--progress]

Producers publish for ``--duration`` seconds, each at ``rate / producers`` messages per second
(or as fast as the broker takes them), into one queue (AMQP, STOMP, SQS) or topic (MQTT; a
shared subscription when there are several consumers) that the consumers share, so every
message is consumed once. Then the consumers drain what is left (up to ``--drain-timeout``).
Every message carries its send time and a sequence number; the consumers record the latency
from send to receipt in an HDR histogram (``hdrhistogram``), and count duplicates.

With ``--confirm`` a message counts as published once the broker confirmed it (AMQP publisher
confirms, MQTT PUBACK, STOMP RECEIPT, the SQS answer); unconfirmed publishers are bounded by
``--inflight`` unconfirmed messages each. The run fails (exit 1) when a confirmed message was
not consumed, or a client error happened.

The protocol clients are small trio implementations of just what the benchmark needs
(``broker/bench_*.py``); they do not go through the broker's own code.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import SplitResult, urlsplit

import trio
from hdrh.histogram import HdrHistogram

PROTOCOLS = ("amqp", "mqtt", "stomp", "sqs")
DEFAULT_URLS = {
    "amqp": "amqp://guest:guest@127.0.0.1:5672/",
    "mqtt": "mqtt://127.0.0.1:1883",
    "stomp": "stomp://guest:guest@127.0.0.1:61613",
    "sqs": "http://127.0.0.1:4566",
}
#: the send time (ns, monotonic) and sequence number leading every payload
STAMP = struct.Struct(">QQ")
#: latencies are recorded in microseconds, 1 us to 10 min, 3 significant digits
LATENCY_US_MAX = 600_000_000
PROGRESS_INTERVAL_S = 1.0
DRAIN_POLL_S = 0.01
CONNECT_TIMEOUT_S = 10.0
#: the largest message the benchmark sends
SIZE_BYTES_MAX = 16 << 20
PRODUCERS_MAX = 1000
CONSUMERS_MAX = 1000
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: what one read from a broker's socket takes at most
READ_BYTES_MAX = 256 << 10
#: messages an unpaced producer writes with one send
PRODUCER_BATCH = 32
#: the bound on a client's goodbye (DISCONNECT, connection.close) when it closes
CLOSE_TIMEOUT_S = 2.0


class BenchError(Exception):
    """A client-side failure the run reports (connection refused, protocol error, ...)."""


@dataclass(frozen=True)
class Settings:
    protocol: str
    url: str
    producers: int = 1
    consumers: int = 1
    size: int = 256
    rate: int = 0
    duration_s: float = 10.0
    persistent: bool = False
    qos: int = 0
    confirm: bool = False
    queue: str = ""
    inflight_max: int = 1000
    prefetch: int = 1000
    drain_timeout_s: float = 10.0

    @property
    def rate_per_producer(self) -> float:
        return self.rate / self.producers if self.rate and self.producers else 0.0


class Stats:
    """Counters and the latency histogram shared by every client task."""

    def __init__(self, producers: int) -> None:
        self.sent = 0
        self.confirmed = 0
        self.nacked = 0
        self.consumed = 0
        self.duplicates = 0
        self.errors: list[str] = []
        self.latency_us = HdrHistogram(1, LATENCY_US_MAX, 3)
        # per producer: the sequence numbers seen (a bitmap grows with the count)
        self._seen = [bytearray() for _ in range(max(1, producers))]
        self.consumers_ready = 0

    def stamp(self, producer: int, seq: int, size: int) -> bytes:
        """A payload of ``size`` bytes carrying the send time, producer and sequence."""
        head = STAMP.pack(time.monotonic_ns(), (producer << 40) | seq)
        return head + b"\x00" * (size - len(head)) if size > len(head) else head

    def received(self, payload: bytes | bytearray | memoryview) -> None:
        if len(payload) < STAMP.size:
            self.errors.append(f"a message of {len(payload)} bytes carries no stamp")
            return
        sent_ns, tag = STAMP.unpack_from(payload)
        self._count(sent_ns, tag >> 40, tag & ((1 << 40) - 1))

    def received_text(self, body: str) -> None:
        """SQS bodies are text: ``"<sent ns>:<producer>:<seq>:"`` then padding."""
        try:
            sent, producer, seq, _ = body.split(":", 3)
            self._count(int(sent), int(producer), int(seq))
        except ValueError:
            self.errors.append("a message body carries no stamp")

    def _count(self, sent_ns: int, producer: int, seq: int) -> None:
        now = time.monotonic_ns()
        if producer >= len(self._seen):
            self.errors.append(f"a message of an unknown producer {producer}")
            return
        seen = self._seen[producer]
        byte, bit = divmod(seq, 8)
        if byte >= len(seen):
            seen.extend(bytes(byte - len(seen) + 4096))
        if seen[byte] & (1 << bit):
            self.duplicates += 1
            return
        seen[byte] |= 1 << bit
        self.consumed += 1
        self.latency_us.record_value(min(LATENCY_US_MAX, max(1, (now - sent_ns) // 1000)))


class Driver(Protocol):
    """One protocol's clients (``broker/bench_<protocol>.py``)."""

    async def setup(self) -> None: ...

    async def producer(self, index: int, stop: trio.Event) -> None: ...

    async def consumer(self, index: int, ready: Callable[[], None], done: trio.Event) -> None: ...

    async def teardown(self) -> None: ...


class Pacer:
    """Spaces sends ``1 / rate_per_s`` apart (no pacing for rate 0), without drifting."""

    def __init__(self, rate_per_s: float) -> None:
        self.interval_s = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self.next_s = trio.current_time()

    async def wait(self) -> None:
        if not self.interval_s:
            await trio.lowlevel.checkpoint()
            return
        self.next_s += self.interval_s
        delay = self.next_s - trio.current_time()
        if delay > 0:
            await trio.sleep(delay)
        elif delay < -1.0:
            self.next_s = trio.current_time()  # too far behind: do not burst to catch up


# -- shared by the protocol clients ------------------------------------------------------------


def split_url(
    url: str, schemes: tuple[str, ...], usage: str, port: int
) -> tuple[str, int, SplitResult]:
    """Host, port (``port`` when the URL names none) and the parts of a broker URL whose
    scheme must be one of ``schemes``; ``usage`` says what one looks like."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise BenchError(f"{usage}, not {url}")
    return parts.hostname or "127.0.0.1", parts.port or port, parts


_Unit = TypeVar("_Unit")


class StreamConnection(Generic[_Unit]):
    """A client's TCP stream and read buffer; ``take`` pops the protocol's next whole unit
    (frame, packet) from the buffer."""

    protocol = "TCP"

    def __init__(self) -> None:
        self.stream: trio.SocketStream | None = None
        self.buf = bytearray()

    async def open(self) -> None:
        """Connect and handshake."""
        raise NotImplementedError

    def take(self) -> _Unit | None:
        raise NotImplementedError

    async def goodbye(self) -> None:
        """What the protocol sends before it closes (DISCONNECT, connection.close)."""

    async def fill(self) -> None:
        assert self.stream is not None
        data = await self.stream.receive_some(READ_BYTES_MAX)
        if not data:
            raise BenchError(f"the broker closed the {self.protocol} connection")
        self.buf += data

    async def next(self) -> _Unit:
        while True:
            got = self.take()
            if got is not None:
                return got
            await self.fill()

    async def close(self) -> None:
        if self.stream is None:
            return
        try:
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                await self.goodbye()
        except (OSError, BenchError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await self.stream.aclose()
            self.stream = None


class StreamDriver:
    """What the drivers over a ``StreamConnection`` share: ``connection(role)`` makes one for
    the role (``check``, ``p<index>``, ``c<index>``); the set-up checks the broker answers."""

    def __init__(self, settings: Settings, stats: Stats) -> None:
        self.settings = settings
        self.stats = stats

    def connection(self, role: str) -> StreamConnection[Any]:
        raise NotImplementedError

    async def connect(self, role: str) -> Any:
        conn = self.connection(role)
        await conn.open()
        return conn

    async def setup(self) -> None:
        conn = await self.connect("check")
        await conn.close()

    async def teardown(self) -> None:
        pass


async def produce(
    settings: Settings,
    stats: Stats,
    stream: trio.abc.SendStream,
    stop: trio.Event,
    inflight: trio.Semaphore | None,
    permits: int,
    listen: Callable[[trio.Semaphore], Awaitable[None]],
    encode: Callable[[int, int], Awaitable[bytes | bytearray]],
) -> None:
    """A producer's loop until ``stop``: ``encode(seq, n)`` gives the next ``n`` messages
    from sequence number ``seq`` on, written with one send, at the pace of the rate. With
    ``inflight`` (confirms), ``encode`` takes a permit per message and ``listen(inflight)``
    reads the confirms that give them back; at the end the loop waits, up to the drain
    timeout, for all ``permits`` back."""
    pacer = Pacer(settings.rate_per_producer)
    batch = 1 if settings.rate else PRODUCER_BATCH
    seq = 0
    async with trio.open_nursery() as nursery:
        if inflight is not None:
            nursery.start_soon(listen, inflight)
        while not stop.is_set():
            out = await encode(seq, batch)
            seq += batch
            await stream.send_all(out)
            stats.sent += batch
            if inflight is None:
                stats.confirmed += batch
            await pacer.wait()
        if inflight is not None:
            with trio.move_on_after(settings.drain_timeout_s):
                for _ in range(permits):  # every permit back: all confirmed
                    await inflight.acquire()
        nursery.cancel_scope.cancel()


def make_driver(settings: Settings, stats: Stats) -> Driver:
    if settings.protocol == "amqp":
        from broker.bench_amqp import AmqpDriver

        return AmqpDriver(settings, stats)
    if settings.protocol == "mqtt":
        from broker.bench_mqtt import MqttDriver

        return MqttDriver(settings, stats)
    if settings.protocol == "stomp":
        from broker.bench_stomp import StompDriver

        return StompDriver(settings, stats)
    from broker.bench_sqs import SqsDriver

    return SqsDriver(settings, stats)


@dataclass
class Result:
    protocol: str
    producers: int
    consumers: int
    size: int
    rate: int
    persistent: bool
    qos: int
    confirm: bool
    duration_s: float
    drain_s: float
    sent: int
    published: int
    consumed: int
    duplicates: int
    missing: int
    nacked: int
    publish_rate: float
    consume_rate: float
    latency_us: dict[str, float]
    errors: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors and (not self.confirm or self.missing == 0)


async def run(settings: Settings, progress: Callable[[float, Stats], None] | None = None) -> Result:
    stats = Stats(settings.producers)
    driver = make_driver(settings, stats)
    produce_s = drain_s = 0.0
    try:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            await driver.setup()
        async with trio.open_nursery() as nursery:
            done = trio.Event()
            for i in range(settings.consumers):
                await nursery.start(_consumer_task, driver, i, done)
            stop = trio.Event()
            started = trio.current_time()
            async with trio.open_nursery() as producers:
                for i in range(settings.producers):
                    producers.start_soon(_guard, stats, driver.producer(i, stop))
                if progress is not None:
                    producers.start_soon(_progress_loop, progress, stats, started, stop)
                await trio.sleep(settings.duration_s)
                stop.set()
            produce_s = trio.current_time() - started
            target = stats.confirmed if settings.confirm else stats.sent
            drain_started = trio.current_time()
            with trio.move_on_after(settings.drain_timeout_s if settings.consumers else 0):
                # the consumers count without signalling (no event per message): poll
                while stats.consumed < target and not stats.errors:  # noqa: ASYNC110
                    await trio.sleep(DRAIN_POLL_S)
            drain_s = trio.current_time() - drain_started
            done.set()
            nursery.cancel_scope.cancel()
    except (OSError, BenchError, trio.TooSlowError) as exc:
        stats.errors.append(_describe(exc))
    finally:
        with trio.move_on_after(CONNECT_TIMEOUT_S) as scope:
            scope.shield = True
            try:
                await driver.teardown()
            except (OSError, BenchError) as exc:
                stats.errors.append(f"teardown: {_describe(exc)}")
    return _result(settings, stats, produce_s, drain_s)


async def _consumer_task(
    driver: Driver, index: int, done: trio.Event, task_status: trio.TaskStatus[None]
) -> None:
    await driver.consumer(index, task_status.started, done)


async def _guard(stats: Stats, work: Awaitable[None]) -> None:
    try:
        await work
    except (OSError, BenchError) as exc:
        stats.errors.append(_describe(exc))


async def _progress_loop(
    progress: Callable[[float, Stats], None], stats: Stats, started: float, stop: trio.Event
) -> None:
    while not stop.is_set():
        with trio.move_on_after(PROGRESS_INTERVAL_S):
            await stop.wait()
        progress(trio.current_time() - started, stats)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "timed out connecting or setting up"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _result(settings: Settings, stats: Stats, produce_s: float, drain_s: float) -> Result:
    published = stats.confirmed if settings.confirm else stats.sent
    h = stats.latency_us
    latency: dict[str, float] = {}
    if h.get_total_count():
        for name, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)):
            latency[name] = float(h.get_value_at_percentile(pct))
        latency["max"] = float(h.get_max_value())
        latency["mean"] = round(float(h.get_mean_value()), 1)
    consume_s = produce_s + drain_s
    return Result(
        protocol=settings.protocol,
        producers=settings.producers,
        consumers=settings.consumers,
        size=settings.size,
        rate=settings.rate,
        persistent=settings.persistent,
        qos=settings.qos,
        confirm=settings.confirm,
        duration_s=round(produce_s, 3),
        drain_s=round(drain_s, 3),
        sent=stats.sent,
        published=published,
        consumed=stats.consumed,
        duplicates=stats.duplicates,
        missing=max(0, published - stats.consumed) if settings.consumers else 0,
        nacked=stats.nacked,
        publish_rate=round(published / produce_s, 1) if produce_s > 0 else 0.0,
        consume_rate=round(stats.consumed / consume_s, 1) if consume_s > 0 else 0.0,
        latency_us=latency,
        errors=stats.errors[:20],
    )


# -- command line ------------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="load a running broker and report throughput and latency",
        description="Publish and consume through a running broker; report msg/s and latency.",
    )
    p.add_argument("protocol", choices=PROTOCOLS)
    p.add_argument("--url", help="broker URL (default: the protocol's port on 127.0.0.1)")
    p.add_argument("--producers", type=int, default=1, metavar="N")
    p.add_argument("--consumers", type=int, default=1, metavar="M")
    p.add_argument("--size", type=int, default=256, metavar="BYTES", help="message size")
    p.add_argument(
        "--rate", type=int, default=0, metavar="MSGS_PER_S", help="total rate (0 = unlimited)"
    )
    p.add_argument("--duration", type=float, default=10.0, metavar="S", help="publishing time")
    p.add_argument("--persistent", action="store_true", help="persistent messages, durable queue")
    p.add_argument("--qos", type=int, choices=(0, 1), default=None, help="MQTT QoS (default 0)")
    p.add_argument("--confirm", action="store_true", help="wait for the broker's confirms")
    p.add_argument("--queue", default="", help="queue / topic name (default: a fresh one)")
    p.add_argument(
        "--inflight", type=int, default=1000, metavar="N", help="unconfirmed messages per producer"
    )
    p.add_argument("--prefetch", type=int, default=1000, metavar="N", help="consumer prefetch")
    p.add_argument(
        "--drain-timeout", type=float, default=10.0, metavar="S", help="time to consume the rest"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--progress", action="store_true", help="progress bar even when not a tty")


def settings_from_args(args: argparse.Namespace) -> Settings:
    problems = []
    if not 1 <= args.producers <= PRODUCERS_MAX:
        problems.append(f"--producers must be 1-{PRODUCERS_MAX}")
    if not 0 <= args.consumers <= CONSUMERS_MAX:
        problems.append(f"--consumers must be 0-{CONSUMERS_MAX}")
    if not STAMP.size <= args.size <= SIZE_BYTES_MAX:
        problems.append(f"--size must be {STAMP.size}-{SIZE_BYTES_MAX} bytes")
    if args.rate < 0:
        problems.append("--rate must not be negative")
    if not 0 < args.duration <= 24 * 3600 or not math.isfinite(args.duration):
        problems.append("--duration must be positive")
    if args.inflight < 1 or args.prefetch < 1:
        problems.append("--inflight and --prefetch must be positive")
    if args.drain_timeout < 0:
        problems.append("--drain-timeout must not be negative")
    if problems:
        raise ValueError("; ".join(problems))
    qos = args.qos if args.qos is not None else (1 if args.persistent or args.confirm else 0)
    if args.protocol == "mqtt" and args.confirm and qos == 0:
        raise ValueError("--confirm needs --qos 1 for MQTT (QoS 0 has no acknowledgement)")
    return Settings(
        protocol=args.protocol,
        url=args.url or DEFAULT_URLS[args.protocol],
        producers=args.producers,
        consumers=args.consumers,
        size=args.size,
        rate=args.rate,
        duration_s=args.duration,
        persistent=args.persistent,
        qos=qos,
        confirm=args.confirm,
        queue=args.queue,
        inflight_max=args.inflight,
        prefetch=args.prefetch,
        drain_timeout_s=args.drain_timeout,
    )


PROGRESS_BAR_CELLS = 30


def progress_printer(settings: Settings) -> Callable[[float, Stats], None]:
    def show(elapsed_s: float, stats: Stats) -> None:
        share = min(1.0, elapsed_s / settings.duration_s)
        filled = int(share * PROGRESS_BAR_CELLS)
        bar = "#" * filled + "." * (PROGRESS_BAR_CELLS - filled)
        published = stats.confirmed if settings.confirm else stats.sent
        rate = published / elapsed_s if elapsed_s > 0 else 0.0
        line = (
            f"\r[{bar}] {elapsed_s:5.1f}/{settings.duration_s:g} s  published {published}"
            f" ({rate:,.0f} msg/s)  consumed {stats.consumed}"
        )
        sys.stderr.write(line)
        sys.stderr.flush()

    return show


def format_summary(r: Result) -> str:
    mode = []
    if r.persistent:
        mode.append("persistent")
    if r.confirm:
        mode.append("confirm")
    if r.protocol == "mqtt":
        mode.append(f"qos {r.qos}")
    rate = f"{r.rate} msg/s" if r.rate else "unlimited"
    lines = [
        f"polymq bench {r.protocol}: {r.producers} producers, {r.consumers} consumers, "
        f"{r.size} B, {rate}, {r.duration_s:g} s" + (f", {', '.join(mode)}" if mode else ""),
        f"  published  {r.published:>10}  {r.publish_rate:>12,.1f} msg/s",
        f"  consumed   {r.consumed:>10}  {r.consume_rate:>12,.1f} msg/s"
        f"  (drained in {r.drain_s:.2f} s)",
        f"  missing    {r.missing:>10}  duplicates {r.duplicates}  nacked {r.nacked}",
    ]
    if r.latency_us:
        lat = r.latency_us
        lines.append(
            "  latency us "
            + "  ".join(f"{k} {lat[k]:,.0f}" for k in ("p50", "p90", "p99", "p99.9", "max"))
            + f"  mean {lat['mean']:,.1f}"
        )
    lines.extend(f"  error: {e}" for e in r.errors)
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"polymq: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    show = None
    if args.progress or sys.stderr.isatty():
        show = progress_printer(settings)
    result = trio.run(run, settings, show)
    if show is not None:
        sys.stderr.write("\n")
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(format_summary(result))
    return EXIT_OK if result.ok else EXIT_FAILED
