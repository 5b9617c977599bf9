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
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import amqp_raw as raw
from bench_amqp import Tally, _counts, _fmt_rate, _recv, _spread

BODY_SIZE = 256
HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
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
        error = f"{type(exc).__name__}: {exc}"
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
        if not ctrl.poll(opts["timeout"] * 2) or ctrl.recv()[0] != "go":
            raise TimeoutError("no go from the bench")
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
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if conn is not None:
            _close(conn)
    ctrl.send(("result", out))


# -- orchestration ---------------------------------------------------------------------------


def run_trial(name: str, broker: str, port: int, rep: int, opts: dict) -> dict[str, Any]:
    kind = "latency" if name == "b" else "bulk"
    queue = f"bench-stomp-{name}-{broker}-{rep}-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    ctx = mp.get_context("spawn")
    c_here, c_there = ctx.Pipe()
    p_here, p_there = ctx.Pipe()
    cons = ctx.Process(target=consumer, args=(port, queue, opts, c_there), daemon=True)
    prod = ctx.Process(target=producer, args=(port, queue, kind, opts, p_there), daemon=True)
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
        if broker == "rabbitmq":
            _delete_rabbit_queue(opts["rabbit_amqp_port"], queue, t)
    return result


def _delete_rabbit_queue(port: int, queue: str, timeout: float) -> None:
    with contextlib.suppress(Exception):
        conn = raw.RawConnection(HOST, port, timeout=timeout)
        try:
            conn.channel_open(1)
            conn.queue_delete(1, queue)
        finally:
            conn.close()


class Polymq:
    """``python -m broker serve`` with only a STOMP listener, stderr drained by a thread."""

    def __init__(self, fsync: str) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="polymq-bench-")
        self.port: int | None = None
        self.ready = threading.Event()
        self.notable: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "broker", "serve", "--data-dir", self.data_dir, "--host", HOST]
            + ["--stomp-port", "0", "--fsync", fsync]
            + [f"--{name}-port=off" for name in ("amqp", "mqtt", "mqtt-ws", "admin", "http")],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()
        if not self.ready.wait(30) or self.port is None:
            self.stop()
            raise RuntimeError("polymq did not report its STOMP port: " + " | ".join(self.notable))

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            text = line.decode(errors="replace").rstrip()
            try:
                event = json.loads(text)
            except ValueError:
                self.notable.append(text)
                continue
            if event.get("event") == "listening" and event.get("listener") == "stomp":
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


def _check_port(port: int) -> str | None:
    try:
        socket.create_connection((HOST, port), timeout=5).close()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# -- report ----------------------------------------------------------------------------------


def _values(results: list[dict], key: str) -> list[dict]:
    """The per-trial record (rate or latencies, lost, dup) of one table row."""
    out = []
    for r in results:
        cons = r.get("consumer") or {}
        rec: dict[str, Any] = {"lost": cons.get("lost"), "dup": cons.get("dup")}
        if r["errors"]:  # counted in lost/dup, left out of the rates and latencies
            out.append(rec | {"value": None})
            continue
        if key == "b":
            rec.update({k: cons.get(k) for k in ("p50", "p99", "max")})
            rec["value"] = cons.get("p99")
        else:
            rec["value"] = cons.get("rate") if cons.get("received") else None
        out.append(rec)
    return out


def print_table(results: dict, brokers: list[str], row_keys: list[str], repeat: int) -> None:
    if "a" in row_keys:
        print()
        print(
            f"{'row':<34} {'broker':<9} {'median':>10} {'best':>10} {'min..max':>19} "
            f"{'spread':>7} {'lost':>5} {'dup':>4} {'polymq/rmq':>10}"
        )
        print(f"{'':<34} {'':<9} {'msgs/s':>10} {'msgs/s':>10}")
        print("-" * 115)
        meds: dict[str, float] = {}
        for broker in brokers:
            recs = _values(results.get(("a", broker), []), "a")
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
                f"{ROWS['a']:<34} {broker:<9} {_fmt_rate(med):>10} {_fmt_rate(best):>10} "
                f"{rng:>19} {_spread(vals):>7} {_counts(recs, 'lost'):>5} "
                f"{_counts(recs, 'dup'):>4} {ratio:>10}  ({len(vals)}/{repeat} ok)"
            )
    if "b" in row_keys:
        print()
        print(
            f"{'row':<34} {'broker':<9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'p99 min..max':>15} {'lost':>5} {'dup':>4} {'p50,p99 polymq/rmq':>19}"
        )
        print("-" * 115)
        lat: dict[str, dict] = {}
        for broker in brokers:
            recs = _values(results.get(("b", broker), []), "b")
            ok = [r for r in recs if r.get("value") is not None]
            cols = {
                k: statistics.median([r[k] for r in ok]) if ok else None
                for k in ("p50", "p99", "max")
            }
            if ok:
                lat[broker] = cols
            p99s = [r["p99"] for r in ok]
            rng = f"{min(p99s):.2f}..{max(p99s):.2f}" if p99s else "-"
            ratio = ""
            if broker == brokers[-1] and len(lat) == 2:
                pm, rm = lat["polymq"], lat["rabbitmq"]
                ratio = f"{pm['p50'] / rm['p50']:.1f}, {pm['p99'] / rm['p99']:.1f}"
            fmt = {k: "-" if v is None else f"{v:.2f}" for k, v in cols.items()}
            print(
                f"{ROWS['b']:<34} {broker:<9} {fmt['p50']:>8} {fmt['p99']:>8} {fmt['max']:>8} "
                f"{rng:>15} {_counts(recs, 'lost'):>5} {_counts(recs, 'dup'):>4} {ratio:>19}"
                f"  ({len(ok)}/{repeat} ok)"
            )


def _summary(name: str, res: dict) -> str:
    prod, cons = res.get("producer") or {}, res.get("consumer") or {}
    parts = [f"sent {prod.get('sent', 0):,}"]
    if "publish_rate" in prod:
        parts.append(f"published {prod['publish_rate']:,.0f}/s")
    if prod.get("late_sends"):
        parts.append(f"{prod['late_sends']} late sends")
    if cons:
        parts.append(f"consumed {cons.get('received', 0):,}")
        if name == "b" and cons.get("p99") is not None:
            parts.append(f"p50 {cons['p50']:.2f} p99 {cons['p99']:.2f} max {cons['max']:.2f} ms")
        else:
            parts.append(f"{cons.get('rate', 0):,.0f}/s")
        parts.append(f"lost {cons.get('lost')} dup {cons.get('dup')}")
    if res["errors"]:
        parts.append("ERROR")
    return ", ".join(parts)


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

    ports: dict[str, int] = {}
    polymq = None
    notes: list[str] = []
    if "rabbitmq" in brokers:
        problem = _check_port(args.rabbit_port)
        if problem:
            print(f"RabbitMQ STOMP on {HOST}:{args.rabbit_port} unreachable ({problem});")
            print("start it with /work/shared/scripts/reference-brokers start")
            brokers.remove("rabbitmq")
        else:
            ports["rabbitmq"] = args.rabbit_port
    if "polymq" in brokers:
        polymq = Polymq(args.fsync)
        ports["polymq"] = polymq.port  # type: ignore[assignment]
    print(
        f"polymq (fsync={args.fsync}) and RabbitMQ STOMP :{args.rabbit_port}; {args.seconds:g} s "
        f"per trial, {args.repeat} trials per row and broker; {BODY_SIZE}-byte bodies; STOMP 1.2, "
        f"ack:client-individual, prefetch-count {args.prefetch}, ACK per message; latency at "
        f"{args.rate:g} msg/s; {os.cpu_count()} CPUs"
    )
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for name in row_keys:
            for rep in range(args.repeat):
                order = brokers if rep % 2 == 0 else brokers[::-1]
                for broker in order:
                    if broker == "polymq" and polymq is not None and polymq.proc.poll() is not None:
                        notes.append(f"{name} #{rep + 1} polymq: broker process exited")
                        continue
                    t0 = time.monotonic()
                    res = run_trial(name, broker, ports[broker], rep, opts)
                    results.setdefault((name, broker), []).append(res)
                    print(
                        f"  {name} #{rep + 1} {broker:<9} {_summary(name, res)}"
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
    print("lost: sent (receipted) but never consumed; dup: consumed more than once.")
    print("spread: half the min..max range over the median. Latency: scheduled send -> on_message.")
    print("goals: throughput polymq/rmq >= 1.0; latency p99 polymq/rmq <= 1.0.")
    if polymq is not None:
        rss_text = f"{rss:.0f} MB" if rss else "?"
        print(f"polymq: peak RSS {rss_text}, exit code {code} after SIGTERM")
        for line in polymq.notable[:20]:
            notes.append(f"polymq log: {line}")
    if notes:
        print("\nproblems:")
        for n in notes:
            print(f"  {n}")


if __name__ == "__main__":
    main()
