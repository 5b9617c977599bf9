"""AMQP 0-9-1 throughput and latency: polymq and RabbitMQ side by side, in one run.

Every row is 1 producer -> 1 fresh queue (default exchange) -> 1 consumer, 256-byte bodies, the
producer and the consumer in separate processes. Each body starts with a sequence number (and,
for the latency rows, a send timestamp); the consumer counts lost and duplicated messages.

Rows:
  a  transient (delivery_mode 1, non-durable queue), pika BlockingConnection producer
     (basic_publish in a loop) and pika consumer (basic_consume, manual acks, prefetch
     ``--prefetch``, ``basic_ack(multiple=True)`` every ``--ack-every`` messages, as
     throughput-minded RabbitMQ users run it); msgs/s at the consumer, first to last message.
  b  transient, raw client: pre-encoded basic.publish + header + body blocks sent in large
     sendall() chunks; a struct consumer acks multiple every ``--ack-every``; msgs/s consumed.
  c  persistent (delivery_mode 2, durable queue) with publisher confirms, raw: the producer keeps
     at most ``--window`` unconfirmed messages; msgs/s confirmed (producer) and consumed.
  d  latency at a fixed ``--rate`` msg/s (raw), transient and persistent + confirms: p50 / p99 /
     max from the scheduled send time (CLOCK_MONOTONIC, system-wide) to the consumer's read.

Each row runs ``--repeat`` times per broker, brokers alternating; the table prints the median,
the best and the spread, and polymq/RabbitMQ. polymq runs as a subprocess
(``python -m broker serve --fsync always``, fresh data directory); RabbitMQ is expected on
``--rabbit-port`` (``/work/shared/scripts/reference-brokers start``). Every wait is bounded by
``--timeout``: a broker that stops reading or delivering is reported, not waited for.

    python bench/bench_amqp.py [--seconds 5] [--repeat 3] [--rabbit-port 5673] [--only a,b,c,d]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import struct
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import amqp_raw as raw
from common import (
    HOST,
    Polymq,
    Tally,
    compare_with_rabbitmq,
    describe,
    finish_summary,
    print_epilogue,
    print_latency_head,
    print_latency_rows,
    print_rate_head,
    print_rate_rows,
    run_pair,
    trial_record,
    wait_go,
)

BODY_SIZE = 256
SEQ_TS = struct.Struct(">QQ")

# row key -> (scenario letter, label)
ROWS = [
    ("a", "a", "transient, pika -> pika"),
    ("b", "b", "transient, raw -> raw"),
    ("c-confirmed", "c", "persistent+confirms, raw: confirmed"),
    ("c-consumed", "c", "persistent+confirms, raw: consumed"),
    ("d-transient", "d", "latency, transient"),
    ("d-persistent", "d", "latency, persistent+confirms"),
]
TRIALS = {  # trial name -> (scenario letter, producer kind, consumer kind, persistent)
    "a": ("a", "pika", "pika", False),
    "b": ("b", "raw", "raw", False),
    "c": ("c", "raw-confirm", "raw", True),
    "d-transient": ("d", "latency", "raw", False),
    "d-persistent": ("d", "latency-confirm", "raw", True),
}


# -- consumer processes ----------------------------------------------------------------------


def _consume_loop(
    ctrl: Any,
    tally: Tally,
    fileno: int,
    pump: Any,
    idle: Any,
    timeout: float,
) -> tuple[int | None, str | None]:
    """Run until every expected message arrived, or nothing arrived for ``timeout`` s."""
    expect: int | None = None
    while expect is None or tally.unique < expect:
        ready, _, _ = select.select([fileno, ctrl], [], [], 0.5)
        if ctrl in ready:
            msg = ctrl.recv()
            if msg[0] == "expect":
                expect = msg[1]
                tally.last_progress = time.monotonic()
            else:
                return expect, "stopped"
        if fileno in ready:
            before = tally.unique + tally.dup
            pump()
            if tally.unique + tally.dup != before:
                tally.last_progress = time.monotonic()
        else:
            idle()
        if expect is not None and time.monotonic() - tally.last_progress > timeout:
            return expect, f"stalled: no delivery for {timeout:.0f} s"
    # catch late duplicates for a moment
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        ready, _, _ = select.select([fileno], [], [], 0.05)
        if ready:
            pump()
    return expect, None


def consumer_raw(port: int, queue: str, durable: bool, opts: dict, ctrl: Any) -> None:
    tally = Tally()
    error = None
    expect = None
    conn = None
    try:
        conn = raw.RawConnection(HOST, port, timeout=opts["timeout"])
        conn.channel_open(1)
        conn.queue_declare(1, queue, durable)
        conn.basic_qos(1, opts["prefetch"])
        conn.basic_consume(1, queue)
        ctrl.send(("ready",))
        sock, buf = conn.sock, conn.buf
        ack_every = opts["ack_every"]
        state = {"tag": 0, "acked": 0}
        unpack = SEQ_TS.unpack_from
        body = tally.body
        scan_tag = [0]

        def on_body(tag: int, view: memoryview) -> None:
            state["tag"] = tag
            body(*unpack(view, 0))

        def on_ack(tag: int, multiple: bool) -> None:
            raise raw.BrokerClosed("unexpected basic.ack to a consumer")

        def ack() -> None:
            conn.send(raw.ack_frame(1, state["tag"], True))
            state["acked"] = state["tag"]

        def pump() -> None:
            data = sock.recv(1 << 18)
            if not data:
                raise raw.BrokerClosed("socket closed by the broker")
            tally.now_ns = now = time.monotonic_ns()
            if not tally.first_ns:
                tally.first_ns = now
            buf.extend(data)
            before = tally.unique + tally.dup
            used, scan_tag[0] = raw.scan(buf, on_body, on_ack, on_ack, scan_tag[0])
            del buf[:used]
            if tally.unique + tally.dup != before:
                tally.last_ns = now
            pending = state["tag"] - state["acked"]
            if pending >= ack_every or (pending > 0 and not select.select([sock], [], [], 0)[0]):
                ack()

        def idle() -> None:
            if state["tag"] > state["acked"]:
                ack()

        expect, error = _consume_loop(ctrl, tally, sock.fileno(), pump, idle, opts["timeout"])
        if state["tag"] > state["acked"]:
            ack()
    except Exception as exc:  # reported in the table
        error = describe(exc)
        with contextlib.suppress(Exception):
            ctrl.send(("error", error))
    finally:
        if conn is not None:
            conn.close()
    delete_queue(port, queue, opts["timeout"])
    ctrl.send(("result", tally.result(expect, error)))


def consumer_pika(port: int, queue: str, durable: bool, opts: dict, ctrl: Any) -> None:
    import pika

    tally = Tally()
    error = None
    expect = None
    conn = None
    try:
        conn = pika.BlockingConnection(pika_params(port, opts["timeout"]))
        ch = conn.channel()
        ch.queue_declare(queue, durable=durable)
        ch.basic_qos(prefetch_count=opts["prefetch"])
        ack_every = opts["ack_every"]
        state = {"tag": 0, "acked": 0}
        unpack = SEQ_TS.unpack_from
        body = tally.body

        def on_message(chan: Any, method: Any, _props: Any, payload: bytes) -> None:
            tally.now_ns = now = time.monotonic_ns()
            if not tally.first_ns:
                tally.first_ns = now
            tally.last_ns = now
            body(*unpack(payload, 0))
            tag = state["tag"] = method.delivery_tag
            if tag - state["acked"] >= ack_every:
                chan.basic_ack(tag, multiple=True)
                state["acked"] = tag

        ch.basic_consume(queue, on_message, auto_ack=False)
        ctrl.send(("ready",))
        expect_box: list[int | None] = [None]

        while True:
            before = tally.unique + tally.dup
            conn.process_data_events(time_limit=0.1)
            if tally.unique + tally.dup != before:
                tally.last_progress = time.monotonic()
            elif state["tag"] > state["acked"]:
                ch.basic_ack(state["tag"], multiple=True)
                state["acked"] = state["tag"]
            while ctrl.poll():
                msg = ctrl.recv()
                if msg[0] == "expect":
                    expect_box[0] = msg[1]
                    tally.last_progress = time.monotonic()
            expect = expect_box[0]
            if expect is not None and tally.unique >= expect:
                conn.process_data_events(time_limit=0.3)  # late duplicates
                break
            if expect is not None and time.monotonic() - tally.last_progress > opts["timeout"]:
                error = f"stalled: no delivery for {opts['timeout']:.0f} s"
                break
        if state["tag"] > state["acked"]:
            ch.basic_ack(state["tag"], multiple=True)
    except Exception as exc:
        error = describe(exc)
        with contextlib.suppress(Exception):
            ctrl.send(("error", error))
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
    delete_queue(port, queue, opts["timeout"])
    ctrl.send(("result", tally.result(expect, error)))


def delete_queue(port: int, queue: str, timeout: float) -> None:
    """queue.delete over a connection of its own; any failure is ignored."""
    with contextlib.suppress(Exception):
        conn = raw.RawConnection(HOST, port, timeout=timeout)
        try:
            conn.channel_open(1)
            conn.queue_delete(1, queue)
        finally:
            conn.close()


def pika_params(port: int, timeout: float) -> Any:
    """pika's parameters for guest on HOST:``port``: no heartbeats, one attempt, every wait
    bounded by ``timeout``."""
    import pika

    return pika.ConnectionParameters(
        host=HOST,
        port=port,
        credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0,
        connection_attempts=1,
        socket_timeout=timeout,
        blocked_connection_timeout=timeout,
    )


# -- producer processes ----------------------------------------------------------------------


class Confirms:
    """Publisher-confirm bookkeeping for tags 1..n: multiple and single acks/nacks."""

    def __init__(self) -> None:
        self.upto = 0
        self.above: set[int] = set()
        self.nacked = 0
        self.last_ns = 0

    @property
    def settled(self) -> int:
        return self.upto + len(self.above)

    def ack(self, tag: int, multiple: bool) -> None:
        self.last_ns = time.monotonic_ns()
        if multiple:
            if tag > self.upto:
                self.upto = tag
                if self.above:
                    self.above = {t for t in self.above if t > tag}
        elif tag > self.upto:
            self.above.add(tag)
        while self.above and self.upto + 1 in self.above:
            self.upto += 1
            self.above.discard(self.upto)

    def nack(self, tag: int, multiple: bool) -> None:
        before = self.settled
        self.ack(tag, multiple)
        self.nacked += self.settled - before


def _no_deliver(tag: int, view: memoryview) -> None:
    raise raw.BrokerClosed("unexpected delivery to the producer")


def producer_raw(port: int, queue: str, kind: str, opts: dict, ctrl: Any) -> None:
    out: dict[str, Any] = {"sent": 0, "error": None}
    conn = None
    confirms = Confirms()
    try:
        confirm = kind in ("raw-confirm", "latency-confirm")
        persistent = confirm
        conn = raw.RawConnection(HOST, port, timeout=opts["timeout"])
        conn.channel_open(1)
        if confirm:
            conn.confirm_select(1)
        block, boff = raw.publish_block(1, "", queue, bytes(BODY_SIZE), 2 if persistent else 1)
        wait_go(ctrl, opts["timeout"] * 2, raw.Stalled)

        def drain(timeout: float | None) -> None:
            if conn.recv_some(timeout):
                used, _ = raw.scan(conn.buf, _no_deliver, confirms.ack, confirms.nack)
                del conn.buf[:used]

        pub = _Publisher(conn, block, boff, confirm, confirms, drain)
        if kind.startswith("latency"):
            _latency_publish(pub, opts, out)
        else:
            _bulk_publish(pub, opts, out)
        if confirm:  # wait for the last confirms (drain raises Stalled after the timeout)
            while confirms.settled < out["sent"]:
                drain(None)
            out["confirmed"] = confirms.settled
            out["nacked"] = confirms.nacked
            span = (confirms.last_ns - out["t0_ns"]) / 1e9
            out["confirm_rate"] = confirms.settled / span if span > 0 else 0.0
    except Exception as exc:
        out["error"] = describe(exc)
        if confirms.settled:
            out["confirmed"] = confirms.settled
    finally:
        if conn is not None:
            conn.close()
    ctrl.send(("result", out))


class _Publisher(NamedTuple):
    """A raw producer's connection, its pre-encoded publish block (the sequence number and
    timestamp go at ``boff``) and its confirm bookkeeping."""

    conn: raw.RawConnection
    block: bytes
    boff: int
    confirm: bool
    confirms: Confirms
    drain: Callable[[float | None], None]


def _bulk_publish(pub: _Publisher, opts: dict, out: dict) -> None:
    conn, block, boff, confirm, confirms, drain = pub
    per_send = opts["batch"]
    window = opts["window"]
    batch = bytearray(block * per_send)
    offsets = [k * len(block) + boff for k in range(per_send)]
    pack = SEQ_TS.pack_into
    seq = 0
    out["t0_ns"] = t0 = time.monotonic_ns()
    deadline = t0 + int(opts["seconds"] * 1e9)
    sends = 0
    while time.monotonic_ns() < deadline:
        if confirm and seq - confirms.settled + per_send > window:
            drain(None)  # window full: wait for confirms (Stalled after the timeout)
            continue
        for k, off in enumerate(offsets):
            pack(batch, off, seq + k, 0)
        conn.send(batch)
        seq += per_send
        out["sent"] = seq
        sends += 1
        if confirm or sends % 64 == 0:
            drain(0)  # confirms, or a connection.close from the broker
    out["publish_rate"] = seq / ((time.monotonic_ns() - t0) / 1e9)


def _latency_publish(pub: _Publisher, opts: dict, out: dict) -> None:
    conn, block, boff, confirm, confirms, drain = pub
    msg = bytearray(block)
    interval = 1e9 / opts["rate"]
    total = int(opts["rate"] * opts["seconds"])
    window = opts["window"]
    out["t0_ns"] = t0 = time.monotonic_ns() + 1_000_000
    late = 0
    for i in range(total):
        due = t0 + int(i * interval)
        while True:
            now = time.monotonic_ns()
            if now >= due:
                break
            drain((due - now) / 1e9)
        if now - due > 1_000_000:
            late += 1
        while confirm and i - confirms.settled >= window:
            drain(None)
        # the timestamp is the scheduled send time, so a publisher held back by the broker
        # (window full, socket full) shows in the latency instead of hiding it
        SEQ_TS.pack_into(msg, boff, i, due)
        conn.send(msg)
        out["sent"] = i + 1
    out["late_sends"] = late
    out["publish_rate"] = total / ((time.monotonic_ns() - t0) / 1e9)


def producer_pika(port: int, queue: str, kind: str, opts: dict, ctrl: Any) -> None:
    import pika

    out: dict[str, Any] = {"sent": 0, "error": None}
    conn = None
    try:
        conn = pika.BlockingConnection(pika_params(port, opts["timeout"]))
        ch = conn.channel()
        props = pika.BasicProperties(delivery_mode=1)
        pad = bytes(BODY_SIZE - SEQ_TS.size)
        pack = SEQ_TS.pack
        publish = ch.basic_publish
        wait_go(ctrl, opts["timeout"] * 2, raw.Stalled)
        seq = 0
        t0 = time.monotonic_ns()
        deadline = t0 + int(opts["seconds"] * 1e9)
        while time.monotonic_ns() < deadline:
            for _ in range(100):
                publish("", queue, pack(seq, 0) + pad, props)
                seq += 1
            out["sent"] = seq
        out["publish_rate"] = seq / ((time.monotonic_ns() - t0) / 1e9)
    except Exception as exc:
        out["error"] = describe(exc)
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
    ctrl.send(("result", out))


# -- orchestration ---------------------------------------------------------------------------


def run_trial(name: str, broker: str, port: int, rep: int, opts: dict) -> dict[str, Any]:
    _, pkind, ckind, persistent = TRIALS[name]
    queue = f"bench-{name}-{broker}-{rep}-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    cons_fn = consumer_pika if ckind == "pika" else consumer_raw
    prod_fn = producer_pika if pkind == "pika" else producer_raw
    return run_pair(
        cons_fn, (port, queue, persistent, opts), prod_fn, (port, queue, pkind, opts), opts
    )


def start_polymq(fsync: str) -> Polymq:
    """polymq on a free AMQP port, the other listeners off."""
    return Polymq("amqp", fsync, ("admin", "mqtt", "stomp", "http"))


def _check_rabbit(port: int) -> str | None:
    try:
        raw.RawConnection(HOST, port, timeout=5).close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# -- report ----------------------------------------------------------------------------------


def _values(results: list[dict], key: str) -> list[dict]:
    """The per-trial record (rate or latencies, lost, dup) of one table row."""
    out = []
    for r in results:
        rec = trial_record(r, key.startswith("d-"))
        if key == "c-confirmed" and not r["errors"]:
            prod = r.get("producer") or {}
            rec["value"] = prod.get("confirm_rate")
            rec["lost"] = (prod.get("sent", 0) - prod["confirmed"]) if "confirmed" in prod else None
            rec["dup"] = prod.get("nacked")
        out.append(rec)
    return out


def print_table(results: dict, brokers: list[str], row_keys: list[str], repeat: int) -> None:
    labels = {k: label for k, _, label in ROWS}
    trial_of = {"a": "a", "b": "b", "c-confirmed": "c", "c-consumed": "c"}
    print_rate_head(38, 119)
    for key in row_keys:
        if key.startswith("d-"):
            continue
        print_rate_rows(
            labels[key],
            38,
            brokers,
            lambda broker, key=key: _values(results.get((trial_of[key], broker), []), key),
            repeat,
        )
    lat_keys = [k for k in row_keys if k.startswith("d-")]
    if lat_keys:
        print_latency_head(38, 119)
    for key in lat_keys:
        print_latency_rows(
            labels[key],
            38,
            brokers,
            lambda broker, key=key: _values(results.get((key, broker), []), key),
            repeat,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="publish time per trial")
    ap.add_argument("--repeat", type=int, default=3, help="trials per row and broker")
    ap.add_argument("--rabbit-port", type=int, default=5673)
    ap.add_argument("--only", default="a,b,c,d", help="comma-separated scenarios (a,b,c,d)")
    ap.add_argument("--brokers", default="polymq,rabbitmq")
    ap.add_argument("--prefetch", type=int, default=1000, help="consumer prefetch (basic.qos)")
    ap.add_argument("--ack-every", type=int, default=100, help="consumer acks multiple every N")
    ap.add_argument("--window", type=int, default=2000, help="unconfirmed messages (c, d)")
    ap.add_argument("--batch", type=int, default=200, help="raw messages per sendall (b, c)")
    ap.add_argument("--rate", type=float, default=1000.0, help="msg/s for the latency rows")
    ap.add_argument("--timeout", type=float, default=30.0, help="give up after N s of silence")
    ap.add_argument("--fsync", default="always", help="polymq --fsync policy")
    args = ap.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    opts = {
        k: getattr(args, k)
        for k in ("seconds", "prefetch", "ack_every", "window", "batch", "rate", "timeout")
    }
    trials = [name for name, spec in TRIALS.items() if spec[0] in only]
    row_keys = [key for key, letter, _ in ROWS if letter in only]

    results, notes, polymq, rss, code = compare_with_rabbitmq(
        brokers,
        args.rabbit_port,
        _check_rabbit,
        "RabbitMQ",
        lambda: start_polymq(args.fsync),
        f"polymq (fsync={args.fsync}) and RabbitMQ :{args.rabbit_port}; {args.seconds:g} s per "
        f"trial, {args.repeat} trials per row and broker; {BODY_SIZE}-byte bodies; prefetch "
        f"{args.prefetch}, ack multiple every {args.ack_every}; confirm window {args.window}; "
        f"latency at {args.rate:g} msg/s; {os.cpu_count()} CPUs",
        trials,
        args.repeat,
        lambda name, broker, port, rep: run_trial(name, broker, port, rep, opts),
        _summary,
        name_width=13,
    )
    ordered = [b for b in ("polymq", "rabbitmq") if b in brokers]
    print_table(results, ordered, row_keys, args.repeat)
    print()
    print("lost: sent (or confirmed) but never consumed; dup: consumed more than once; for the")
    print("'confirmed' row, lost = published but never confirmed and dup = nacked.")
    print(
        "spread: half the min..max range over the median. Latency: scheduled send -> consumer read."
    )
    print_epilogue(polymq, rss, code, notes)


def _summary(name: str, res: dict) -> str:
    prod = res.get("producer") or {}
    parts = [f"sent {prod.get('sent', 0):,}"]
    if "publish_rate" in prod:
        parts.append(f"published {prod['publish_rate']:,.0f}/s")
    if "confirm_rate" in prod:
        parts.append(f"confirmed {prod['confirm_rate']:,.0f}/s")
    return finish_summary(parts, res, name.startswith("d-"))


if __name__ == "__main__":
    main()
