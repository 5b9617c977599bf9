"""STOMP 1.2 throughput and latency: polymq and RabbitMQ side by side, in one run.

Every row is 1 stomp.py producer -> 1 fresh ``/queue/<name>`` -> 1 stomp.py consumer, 256-byte
text bodies, the producer and the consumer in separate processes. The consumer subscribes with
``ack:client-individual`` and ``prefetch-count: --prefetch`` and ACKs every message. Each body
starts with a sequence number and a send timestamp (hex); the consumer counts lost and
duplicated messages.

Rows:
  a  throughput: the producer SENDs in a loop for ``--seconds``; msgs/s at the consumer, first
     to last message.
  b  latency at a fixed ``--rate`` msg/s for ``--seconds``: p50 / p99 / max from the scheduled
     send time (CLOCK_MONOTONIC, system-wide) to the consumer's ``on_message``.

The producer's last SEND carries a receipt, so "sent" counts what the broker took. Each row runs
``--repeat`` times per broker, brokers alternating; the table prints the median, the best and the
spread, and polymq/RabbitMQ. polymq runs as a subprocess (``python -m broker serve --fsync
always``, fresh data directory, STOMP only); RabbitMQ's STOMP plugin is expected on
``--rabbit-port`` (``/work/shared/scripts/reference-brokers start``); its queues are deleted
afterwards over AMQP (``--rabbit-amqp-port``). Every wait is bounded by ``--timeout``.

    python bench/bench_stomp.py [--seconds 5] [--repeat 3] [--only a,b] [--brokers polymq,rabbitmq]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import threading
import time
from typing import Any

from bench_amqp import delete_queue
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
PAD = b"." * (BODY_SIZE - 32)

# row key -> label
ROWS = {
    "a": "throughput, stomp.py -> stomp.py",
    "b": "latency, stomp.py -> stomp.py",
}


def _body(seq: int, ts: int) -> bytes:
    return b"%016x%016x" % (seq, ts) + PAD


# -- stomp.py plumbing -----------------------------------------------------------------------


def _listener_class() -> Any:
    import stomp

    class Listener(stomp.ConnectionListener):
        """Receipts, ERROR frames and disconnects, plus an optional message callback."""

        def __init__(self) -> None:
            self.connected = threading.Event()
            self.receipts: set[str] = set()
            self.receipt_cv = threading.Condition()
            self.errors: list[str] = []
            self.disconnected = False
            self.on_msg: Any = None

        def on_connected(self, frame: Any) -> None:
            self.connected.set()

        def on_receipt(self, frame: Any) -> None:
            with self.receipt_cv:
                self.receipts.add(frame.headers.get("receipt-id", ""))
                self.receipt_cv.notify_all()

        def on_error(self, frame: Any) -> None:
            body = frame.body.decode(errors="replace") if isinstance(frame.body, bytes) else ""
            self.errors.append(f"ERROR frame: {frame.headers.get('message')} {body.strip()!r}")

        def on_disconnected(self) -> None:
            self.disconnected = True
            self.connected.set()

        def on_message(self, frame: Any) -> None:
            if self.on_msg is not None:
                self.on_msg(frame)

        def wait_receipt(self, rid: str, timeout: float) -> None:
            with self.receipt_cv:
                end = time.monotonic() + timeout
                while rid not in self.receipts:
                    self.check()
                    left = end - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"no RECEIPT {rid} within {timeout:.0f} s")
                    self.receipt_cv.wait(min(left, 0.2))

        def check(self) -> None:
            if self.errors:
                raise RuntimeError("; ".join(self.errors))
            if self.disconnected:
                raise ConnectionError("disconnected by the broker")

    return Listener


def _connect(port: int, opts: dict) -> tuple[Any, Any]:
    import stomp

    conn = stomp.Connection12(
        [(HOST, port)],
        vhost="/",
        heartbeats=(0, 0),
        auto_decode=False,
        reconnect_attempts_max=1,
        timeout=opts["timeout"],
    )
    listener = _listener_class()()
    conn.set_listener("bench", listener)
    conn.connect("guest", "guest", wait=False)
    if not listener.connected.wait(opts["timeout"]):
        _close(conn)
        raise TimeoutError(f"no CONNECTED within {opts['timeout']:.0f} s")
    listener.check()
    with contextlib.suppress(Exception):  # no Nagle stall (40 ms) behind a delayed ACK
        conn.transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn, listener


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.disconnect()
        end = time.monotonic() + 3  # a bounded wait for the DISCONNECT receipt
        while conn.is_connected() and time.monotonic() < end:
            time.sleep(0.01)
    with contextlib.suppress(Exception):
        conn.transport.stop()


# -- consumer process ------------------------------------------------------------------------


def consumer(port: int, queue: str, opts: dict, ctrl: Any) -> None:
    tally = Tally()
    error = None
    expect = None
    conn = None
    try:
        conn, listener = _connect(port, opts)
        body = tally.body
        ack = conn.ack

        def on_msg(frame: Any) -> None:
            tally.now_ns = now = time.monotonic_ns()
            if not tally.first_ns:
                tally.first_ns = now
            tally.last_ns = now
            b = frame.body
            body(int(b[:16], 16), int(b[16:32], 16))
            ack(frame.headers["ack"])

        listener.on_msg = on_msg
        conn.subscribe(
            "/queue/" + queue,
            id="1",
            ack="client-individual",
            headers={"prefetch-count": str(opts["prefetch"]), "receipt": "sub"},
        )
        listener.wait_receipt("sub", opts["timeout"])
        ctrl.send(("ready",))
        while True:
            before = tally.unique + tally.dup
            if ctrl.poll(0.2):
                msg = ctrl.recv()
                if msg[0] == "expect":
                    expect = msg[1]
                    tally.last_progress = time.monotonic()
                else:
                    error = "stopped"
                    break
            if tally.unique + tally.dup != before:
                tally.last_progress = time.monotonic()
            listener.check()
            if expect is not None and tally.unique >= expect:
                time.sleep(0.3)  # late duplicates
                break
            if expect is not None and time.monotonic() - tally.last_progress > opts["timeout"]:
                error = f"stalled: no delivery for {opts['timeout']:.0f} s"
                break
        listener.on_msg = None
    except Exception as exc:  # reported in the table
        error = describe(exc)
        with contextlib.suppress(Exception):
            ctrl.send(("error", error))
    finally:
        if conn is not None:
            _close(conn)
    ctrl.send(("result", tally.result(expect, error)))


# -- producer process ------------------------------------------------------------------------


def producer(port: int, queue: str, kind: str, opts: dict, ctrl: Any) -> None:
    out: dict[str, Any] = {"sent": 0, "error": None}
    conn = None
    try:
        conn, listener = _connect(port, opts)
        dest = "/queue/" + queue
        send = conn.send
        wait_go(ctrl, opts["timeout"] * 2, TimeoutError)
        seq = 0
        t0 = time.monotonic_ns()
        if kind == "latency":
            interval = 1e9 / opts["rate"]
            total = int(opts["rate"] * opts["seconds"])
            t0 += 1_000_000
            late = 0
            for seq in range(total):
                due = t0 + int(seq * interval)
                now = time.monotonic_ns()
                if now < due:
                    time.sleep((due - now) / 1e9)
                elif now - due > 1_000_000:
                    late += 1
                # the timestamp is the scheduled send time: a producer held back by the
                # broker (socket full) shows in the latency instead of hiding it
                hdrs = {"receipt": "last"} if seq == total - 1 else None
                send(dest, _body(seq, due), headers=hdrs)
                out["sent"] = seq + 1
                if seq % 100 == 0:
                    listener.check()
            out["late_sends"] = late
            seq = total
        else:
            deadline = t0 + int(opts["seconds"] * 1e9)
            while time.monotonic_ns() < deadline:
                for _ in range(100):
                    send(dest, _body(seq, 0))
                    seq += 1
                out["sent"] = seq
                listener.check()
            send(dest, _body(seq, 0), headers={"receipt": "last"})
            seq += 1
        out["publish_rate"] = seq / ((time.monotonic_ns() - t0) / 1e9)
        listener.wait_receipt("last", opts["timeout"])
        out["sent"] = seq
    except Exception as exc:
        out["error"] = describe(exc)
    finally:
        if conn is not None:
            _close(conn)
    ctrl.send(("result", out))


# -- orchestration ---------------------------------------------------------------------------


def run_trial(name: str, broker: str, port: int, rep: int, opts: dict) -> dict[str, Any]:
    kind = "latency" if name == "b" else "bulk"
    queue = f"bench-stomp-{name}-{broker}-{rep}-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    try:
        return run_pair(consumer, (port, queue, opts), producer, (port, queue, kind, opts), opts)
    finally:
        if broker == "rabbitmq":
            delete_queue(opts["rabbit_amqp_port"], queue, opts["timeout"])


def start_polymq(fsync: str) -> Polymq:
    """polymq with only a STOMP listener, on a free port."""
    return Polymq("stomp", fsync, ("amqp", "mqtt", "mqtt-ws", "admin", "http"))


def _check_port(port: int) -> str | None:
    try:
        socket.create_connection((HOST, port), timeout=5).close()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# -- report ----------------------------------------------------------------------------------


def _values(results: list[dict], key: str) -> list[dict]:
    """The per-trial record (rate or latencies, lost, dup) of one table row."""
    return [trial_record(r, key == "b") for r in results]


def print_table(results: dict, brokers: list[str], row_keys: list[str], repeat: int) -> None:
    if "a" in row_keys:
        print_rate_head(34, 115)
        print_rate_rows(
            ROWS["a"],
            34,
            brokers,
            lambda broker: _values(results.get(("a", broker), []), "a"),
            repeat,
        )
    if "b" in row_keys:
        print_latency_head(34, 115)
        print_latency_rows(
            ROWS["b"],
            34,
            brokers,
            lambda broker: _values(results.get(("b", broker), []), "b"),
            repeat,
        )


def _summary(name: str, res: dict) -> str:
    prod = res.get("producer") or {}
    parts = [f"sent {prod.get('sent', 0):,}"]
    if "publish_rate" in prod:
        parts.append(f"published {prod['publish_rate']:,.0f}/s")
    if prod.get("late_sends"):
        parts.append(f"{prod['late_sends']} late sends")
    return finish_summary(parts, res, name == "b")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="publish time per trial")
    ap.add_argument("--repeat", type=int, default=3, help="trials per row and broker")
    ap.add_argument("--rabbit-port", type=int, default=61614, help="RabbitMQ STOMP port")
    ap.add_argument("--rabbit-amqp-port", type=int, default=5673, help="to delete bench queues")
    ap.add_argument("--only", default="a,b", help="comma-separated rows (a,b)")
    ap.add_argument("--brokers", default="polymq,rabbitmq")
    ap.add_argument("--prefetch", type=int, default=500, help="consumer prefetch-count")
    ap.add_argument("--rate", type=float, default=1000.0, help="msg/s for the latency row")
    ap.add_argument("--timeout", type=float, default=30.0, help="give up after N s of silence")
    ap.add_argument("--fsync", default="always", help="polymq --fsync policy")
    args = ap.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    opts = {
        k: getattr(args, k) for k in ("seconds", "prefetch", "rate", "timeout", "rabbit_amqp_port")
    }
    row_keys = [key for key in ROWS if key in only]

    results, notes, polymq, rss, code = compare_with_rabbitmq(
        brokers,
        args.rabbit_port,
        _check_port,
        "RabbitMQ STOMP",
        lambda: start_polymq(args.fsync),
        f"polymq (fsync={args.fsync}) and RabbitMQ STOMP :{args.rabbit_port}; {args.seconds:g} s "
        f"per trial, {args.repeat} trials per row and broker; {BODY_SIZE}-byte bodies; STOMP 1.2, "
        f"ack:client-individual, prefetch-count {args.prefetch}, ACK per message; latency at "
        f"{args.rate:g} msg/s; {os.cpu_count()} CPUs",
        row_keys,
        args.repeat,
        lambda name, broker, port, rep: run_trial(name, broker, port, rep, opts),
        _summary,
    )
    ordered = [b for b in ("polymq", "rabbitmq") if b in brokers]
    print_table(results, ordered, row_keys, args.repeat)
    print()
    print("lost: sent (receipted) but never consumed; dup: consumed more than once.")
    print("spread: half the min..max range over the median. Latency: scheduled send -> on_message.")
    print("goals: throughput polymq/rmq >= 1.0; latency p99 polymq/rmq <= 1.0.")
    print_epilogue(polymq, rss, code, notes)


if __name__ == "__main__":
    main()
