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
import json
import multiprocessing as mp
import os
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import Any

import amqp_raw as raw

BODY_SIZE = 256
HOST = "127.0.0.1"
SEQ_TS = struct.Struct(">QQ")
ROOT = Path(__file__).resolve().parent.parent

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


class Tally:
    """Sequence numbers seen, duplicates, first/last receive time, latencies."""

    def __init__(self) -> None:
        self.seen = bytearray(1 << 20)
        self.unique = 0
        self.dup = 0
        self.first_ns = 0
        self.last_ns = 0
        self.now_ns = 0
        self.latency_ns = array("q")
        self.last_progress = time.monotonic()

    def body(self, seq: int, ts: int) -> None:
        seen = self.seen
        if seq >= len(seen):
            seen.extend(bytes(max(seq + 1 - len(seen), len(seen))))
        if seen[seq]:
            self.dup += 1
        else:
            seen[seq] = 1
            self.unique += 1
        if ts:
            self.latency_ns.append(self.now_ns - ts)

    def result(self, expect: int | None, error: str | None) -> dict[str, Any]:
        received = self.unique + self.dup
        span = (self.last_ns - self.first_ns) / 1e9
        out: dict[str, Any] = {
            "received": received,
            "unique": self.unique,
            "dup": self.dup,
            "lost": None if expect is None else expect - self.unique,
            "rate": (received - 1) / span if received > 1 and span > 0 else 0.0,
            "error": error,
        }
        beyond = sum(self.seen[expect:]) if expect is not None else 0
        if beyond:
            out["error"] = (error + "; " if error else "") + f"{beyond} unknown sequence numbers"
        if self.latency_ns:
            lat = sorted(self.latency_ns)
            out["p50"] = lat[len(lat) // 2] / 1e6
            out["p99"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6
            out["max"] = lat[-1] / 1e6
        return out


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
        error = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            ctrl.send(("error", error))
    finally:
        if conn is not None:
            conn.close()
    _delete_queue(port, queue, opts)
    ctrl.send(("result", tally.result(expect, error)))


def consumer_pika(port: int, queue: str, durable: bool, opts: dict, ctrl: Any) -> None:
    import pika

    tally = Tally()
    error = None
    expect = None
    conn = None
    try:
        conn = pika.BlockingConnection(_pika_params(pika, port, opts))
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
        error = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            ctrl.send(("error", error))
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
    _delete_queue(port, queue, opts)
    ctrl.send(("result", tally.result(expect, error)))


def _delete_queue(port: int, queue: str, opts: dict) -> None:
    with contextlib.suppress(Exception):
        conn = raw.RawConnection(HOST, port, timeout=opts["timeout"])
        try:
            conn.channel_open(1)
            conn.queue_delete(1, queue)
        finally:
            conn.close()


def _pika_params(pika: Any, port: int, opts: dict) -> Any:
    return pika.ConnectionParameters(
        host=HOST,
        port=port,
        credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0,
        connection_attempts=1,
        socket_timeout=opts["timeout"],
        blocked_connection_timeout=opts["timeout"],
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


def _wait_go(ctrl: Any, timeout: float) -> None:
    if not ctrl.poll(timeout) or ctrl.recv()[0] != "go":
        raise raw.Stalled("no go from the bench")


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
        _wait_go(ctrl, opts["timeout"] * 2)

        def drain(timeout: float | None) -> None:
            if conn.recv_some(timeout):
                used, _ = raw.scan(conn.buf, _no_deliver, confirms.ack, confirms.nack)
                del conn.buf[:used]

        if kind.startswith("latency"):
            _latency_publish(conn, block, boff, confirm, confirms, drain, opts, out)
        else:
            _bulk_publish(conn, block, boff, confirm, confirms, drain, opts, out)
        if confirm:  # wait for the last confirms (drain raises Stalled after the timeout)
            while confirms.settled < out["sent"]:
                drain(None)
            out["confirmed"] = confirms.settled
            out["nacked"] = confirms.nacked
            span = (confirms.last_ns - out["t0_ns"]) / 1e9
            out["confirm_rate"] = confirms.settled / span if span > 0 else 0.0
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        if confirms.settled:
            out["confirmed"] = confirms.settled
    finally:
        if conn is not None:
            conn.close()
    ctrl.send(("result", out))


def _bulk_publish(
    conn: raw.RawConnection,
    block: bytes,
    boff: int,
    confirm: bool,
    confirms: Confirms,
    drain: Any,
    opts: dict,
    out: dict,
) -> None:
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


def _latency_publish(
    conn: raw.RawConnection,
    block: bytes,
    boff: int,
    confirm: bool,
    confirms: Confirms,
    drain: Any,
    opts: dict,
    out: dict,
) -> None:
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
        conn = pika.BlockingConnection(_pika_params(pika, port, opts))
        ch = conn.channel()
        props = pika.BasicProperties(delivery_mode=1)
        pad = bytes(BODY_SIZE - SEQ_TS.size)
        pack = SEQ_TS.pack
        publish = ch.basic_publish
        _wait_go(ctrl, opts["timeout"] * 2)
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
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
    ctrl.send(("result", out))


# -- orchestration ---------------------------------------------------------------------------


def _recv(conn: Any, timeout: float, what: str) -> tuple:
    if not conn.poll(timeout):
        return ("error", f"{what}: no answer within {timeout:.0f} s")
    try:
        return conn.recv()
    except EOFError:
        return ("error", f"{what}: process died")


def run_trial(name: str, broker: str, port: int, rep: int, opts: dict) -> dict[str, Any]:
    _, pkind, ckind, persistent = TRIALS[name]
    queue = f"bench-{name}-{broker}-{rep}-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    ctx = mp.get_context("spawn")
    c_here, c_there = ctx.Pipe()
    p_here, p_there = ctx.Pipe()
    cons_fn = consumer_pika if ckind == "pika" else consumer_raw
    prod_fn = producer_pika if pkind == "pika" else producer_raw
    cons = ctx.Process(target=cons_fn, args=(port, queue, persistent, opts, c_there), daemon=True)
    prod = ctx.Process(target=prod_fn, args=(port, queue, pkind, opts, p_there), daemon=True)
    cons.start()
    prod.start()
    t = opts["timeout"]
    result: dict[str, Any] = {"errors": []}
    try:
        msg = _recv(c_here, t + 10, "consumer setup")
        if msg[0] != "ready":
            result["errors"].append(f"consumer: {msg[1]}")
            p_here.send(("stop",))
            return result
        p_here.send(("go",))
        msg = _recv(p_here, opts["seconds"] + 2 * t + 10, "producer")
        prod_out = msg[1] if msg[0] == "result" else {"error": msg[1], "sent": 0}
        if prod_out.get("error"):
            result["errors"].append(f"producer: {prod_out['error']}")
        result["producer"] = prod_out
        c_here.send(("expect", prod_out.get("sent", 0)))
        while True:
            msg = _recv(c_here, 2 * t + 20, "consumer")
            if msg[0] != "error":
                break
            result["errors"].append(f"consumer: {msg[1]}")
            if "no answer" in msg[1] or "died" in msg[1]:
                break
        if msg[0] == "result":
            cons_out = msg[1]
            if cons_out.get("error") and f"consumer: {cons_out['error']}" not in result["errors"]:
                result["errors"].append(f"consumer: {cons_out['error']}")
            result["consumer"] = cons_out
    finally:
        for proc in (prod, cons):
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
    return result


class Polymq:
    """``python -m broker serve`` on a free AMQP port, stderr drained by a thread."""

    def __init__(self, fsync: str) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="polymq-bench-")
        self.port: int | None = None
        self.ready = threading.Event()
        self.notable: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "broker", "serve", "--data-dir", self.data_dir, "--host", HOST]
            + ["--amqp-port", "0", "--fsync", fsync]
            + [f"--{name}-port=off" for name in ("admin", "mqtt", "stomp", "http")],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()
        if not self.ready.wait(30) or self.port is None:
            self.stop()
            raise RuntimeError("polymq did not report its AMQP port: " + " | ".join(self.notable))

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            text = line.decode(errors="replace").rstrip()
            try:
                event = json.loads(text)
            except ValueError:
                self.notable.append(text)
                continue
            if event.get("event") == "listening" and event.get("listener") == "amqp":
                self.port = int(event["port"])
                self.ready.set()
            elif event.get("level") not in ("info", "debug"):
                self.notable.append(text)
        self.ready.set()

    def peak_rss_mb(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.notable.append("did not stop within 15 s of SIGTERM; killed")
                self.proc.kill()
                self.proc.wait(5)
        self.reader.join(5)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return self.proc.returncode


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
        prod, cons = r.get("producer") or {}, r.get("consumer") or {}
        rec: dict[str, Any] = {"lost": cons.get("lost"), "dup": cons.get("dup")}
        if r["errors"]:  # counted in lost/dup, left out of the rates and latencies
            out.append(rec | {"value": None})
            continue
        if key == "c-confirmed":
            rec["value"] = prod.get("confirm_rate")
            rec["lost"] = (prod.get("sent", 0) - prod["confirmed"]) if "confirmed" in prod else None
            rec["dup"] = prod.get("nacked")
        elif key.startswith("d-"):
            rec.update({k: cons.get(k) for k in ("p50", "p99", "max")})
            rec["value"] = cons.get("p99")
        else:
            rec["value"] = cons.get("rate") if cons.get("received") else None
        out.append(rec)
    return out


def _fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _spread(vals: list[float]) -> str:
    if len(vals) < 2:
        return "-"
    med = statistics.median(vals)
    return f"±{(max(vals) - min(vals)) / 2 / med * 100:.0f}%" if med else "-"


def _counts(recs: list[dict], key: str) -> str:
    vals = [r[key] for r in recs]
    if any(v is None for v in vals):
        known = [v for v in vals if v is not None]
        return f"{sum(known)}+?" if known else "?"
    return str(sum(vals))


def print_table(results: dict, brokers: list[str], row_keys: list[str], repeat: int) -> None:
    labels = {k: label for k, _, label in ROWS}
    trial_of = {"a": "a", "b": "b", "c-confirmed": "c", "c-consumed": "c"}
    print()
    print(
        f"{'row':<38} {'broker':<9} {'median':>10} {'best':>10} {'min..max':>19} "
        f"{'spread':>7} {'lost':>5} {'dup':>4} {'polymq/rmq':>10}"
    )
    print(f"{'':<38} {'':<9} {'msgs/s':>10} {'msgs/s':>10}")
    print("-" * 119)
    for key in row_keys:
        if key.startswith("d-"):
            continue
        meds: dict[str, float] = {}
        for broker in brokers:
            recs = _values(results.get((trial_of[key], broker), []), key)
            vals = [r["value"] for r in recs if r.get("value")]
            med = statistics.median(vals) if vals else None
            if med:
                meds[broker] = med
            best = max(vals) if vals else None
            rng = f"{_fmt_rate(min(vals))}..{_fmt_rate(max(vals))}" if vals else "-"
            ratio = ""
            if broker == brokers[-1] and len(meds) == 2:
                ratio = f"{meds['polymq'] / meds['rabbitmq']:.2f}"
            print(
                f"{labels[key]:<38} {broker:<9} {_fmt_rate(med):>10} {_fmt_rate(best):>10} "
                f"{rng:>19} {_spread(vals):>7} {_counts(recs, 'lost'):>5} "
                f"{_counts(recs, 'dup'):>4} {ratio:>10}  ({len(vals)}/{repeat} ok)"
            )
    lat_keys = [k for k in row_keys if k.startswith("d-")]
    if lat_keys:
        print()
        print(
            f"{'row':<38} {'broker':<9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'p99 min..max':>15} {'lost':>5} {'dup':>4} {'p50,p99 polymq/rmq':>19}"
        )
        print("-" * 119)
    for key in lat_keys:
        meds = {}
        for broker in brokers:
            recs = _values(results.get((key, broker), []), key)
            ok = [r for r in recs if r.get("value") is not None]
            cols = {
                k: statistics.median([r[k] for r in ok]) if ok else None
                for k in ("p50", "p99", "max")
            }
            if ok:
                meds[broker] = cols
            p99s = [r["p99"] for r in ok]
            rng = f"{min(p99s):.2f}..{max(p99s):.2f}" if p99s else "-"
            ratio = ""
            if broker == brokers[-1] and len(meds) == 2:
                pm, rm = meds["polymq"], meds["rabbitmq"]
                ratio = f"{pm['p50'] / rm['p50']:.1f}, {pm['p99'] / rm['p99']:.1f}"
            fmt = {k: "-" if v is None else f"{v:.2f}" for k, v in cols.items()}
            print(
                f"{labels[key]:<38} {broker:<9} {fmt['p50']:>8} {fmt['p99']:>8} {fmt['max']:>8} "
                f"{rng:>15} {_counts(recs, 'lost'):>5} {_counts(recs, 'dup'):>4} {ratio:>19}"
                f"  ({len(ok)}/{repeat} ok)"
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

    ports: dict[str, int] = {}
    polymq = None
    notes: list[str] = []
    if "rabbitmq" in brokers:
        problem = _check_rabbit(args.rabbit_port)
        if problem:
            print(f"RabbitMQ on {HOST}:{args.rabbit_port} unreachable ({problem});")
            print("start it with /work/shared/scripts/reference-brokers start")
            brokers.remove("rabbitmq")
        else:
            ports["rabbitmq"] = args.rabbit_port
    if "polymq" in brokers:
        polymq = Polymq(args.fsync)
        ports["polymq"] = polymq.port  # type: ignore[assignment]
    print(
        f"polymq (fsync={args.fsync}) and RabbitMQ :{args.rabbit_port}; {args.seconds:g} s per "
        f"trial, {args.repeat} trials per row and broker; {BODY_SIZE}-byte bodies; prefetch "
        f"{args.prefetch}, ack multiple every {args.ack_every}; confirm window {args.window}; "
        f"latency at {args.rate:g} msg/s; {os.cpu_count()} CPUs"
    )
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for name in trials:
            for rep in range(args.repeat):
                order = brokers if rep % 2 == 0 else brokers[::-1]
                for broker in order:
                    if broker == "polymq" and polymq is not None and polymq.proc.poll() is not None:
                        notes.append(f"{name} #{rep + 1} polymq: broker process exited")
                        continue
                    t0 = time.monotonic()
                    res = run_trial(name, broker, ports[broker], rep, opts)
                    results.setdefault((name, broker), []).append(res)
                    summary = _summary(name, res)
                    print(
                        f"  {name:<13} #{rep + 1} {broker:<9} {summary}"
                        f" [{time.monotonic() - t0:.1f} s]"
                    )
                    for err in res["errors"]:
                        notes.append(f"{name} #{rep + 1} {broker}: {err}")
                    sys.stdout.flush()
    finally:
        rss = polymq.peak_rss_mb() if polymq else None
        code = polymq.stop() if polymq else None
    ordered = [b for b in ("polymq", "rabbitmq") if b in brokers]
    print_table(results, ordered, row_keys, args.repeat)
    print()
    print("lost: sent (or confirmed) but never consumed; dup: consumed more than once; for the")
    print("'confirmed' row, lost = published but never confirmed and dup = nacked.")
    print(
        "spread: half the min..max range over the median. Latency: scheduled send -> consumer read."
    )
    if polymq is not None:
        rss_text = f"{rss:.0f} MB" if rss else "?"
        print(f"polymq: peak RSS {rss_text}, exit code {code} after SIGTERM")
        for line in polymq.notable[:20]:
            notes.append(f"polymq log: {line}")
    if notes:
        print("\nproblems:")
        for n in notes:
            print(f"  {n}")


def _summary(name: str, res: dict) -> str:
    prod, cons = res.get("producer") or {}, res.get("consumer") or {}
    parts = [f"sent {prod.get('sent', 0):,}"]
    if "publish_rate" in prod:
        parts.append(f"published {prod['publish_rate']:,.0f}/s")
    if "confirm_rate" in prod:
        parts.append(f"confirmed {prod['confirm_rate']:,.0f}/s")
    if cons:
        parts.append(f"consumed {cons.get('received', 0):,}")
        if name.startswith("d-") and cons.get("p99") is not None:
            parts.append(f"p50 {cons['p50']:.2f} p99 {cons['p99']:.2f} max {cons['max']:.2f} ms")
        else:
            parts.append(f"{cons.get('rate', 0):,.0f}/s")
        parts.append(f"lost {cons.get('lost')} dup {cons.get('dup')}")
    if res["errors"]:
        parts.append("ERROR")
    return ", ".join(parts)


if __name__ == "__main__":
    main()
