"""What the benchmark scripts share: the polymq and moto processes they start, the boto3 and
socket set-up, the sequence-number tally, the producer/consumer process pair of a trial, the
rows-by-brokers trial loop and the pieces of the tables they print.

The scripts run as ``python bench/bench_<name>.py``, so this module is imported as ``common``
(``bench/`` is the script's directory, first on ``sys.path``).
"""

from __future__ import annotations

import argparse
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
import urllib.request
from array import array
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
#: the listeners an AWS-only polymq switches off (``--http-port 0`` stays on)
AWS_OFF = ("amqp", "mqtt", "mqtt-ws", "stomp", "admin")
#: codec benchmarks feed their decoders in chunks of this size
CHUNK_BYTES = 64 * 1024
START_TIMEOUT_S = 30.0
#: warning and error lines of polymq's log kept for the report
NOTABLE_LINES_MAX = 200


# -- small helpers -------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on HOST just now."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket with ``timeout`` on every call and no Nagle delay."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def p99(ordered: Sequence[Any]) -> Any:
    """The 99th percentile of an ascending, non-empty sequence (nearest rank below)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def spread(vals: list[float]) -> str:
    """Half the min..max range over the median, in percent."""
    if len(vals) < 2:
        return "-"
    med = statistics.median(vals)
    return f"±{(max(vals) - min(vals)) / 2 / med * 100:.0f}%" if med else "-"


def counts(recs: list[dict], key: str) -> str:
    """The sum of ``key`` over the trials, ``N+?`` where some trials could not count it."""
    vals = [r[key] for r in recs]
    if any(v is None for v in vals):
        known = [v for v in vals if v is not None]
        return f"{sum(known)}+?" if known else "?"
    return str(sum(vals))


def boto3_client(service: str, endpoint: str, region: str = "us-east-1", **config: Any) -> Any:
    """A boto3 client with bench credentials; one attempt per call unless ``retries`` says
    otherwise; ``config`` goes to ``botocore.config.Config``."""
    import boto3
    import botocore.config

    session = boto3.session.Session(
        aws_access_key_id="bench", aws_secret_access_key="bench", region_name=region
    )
    options = {"retries": {"max_attempts": 1, "mode": "standard"}, **config}
    return session.client(service, endpoint_url=endpoint, config=botocore.config.Config(**options))


# -- servers -------------------------------------------------------------------------------


class Polymq:
    """``python -m broker serve`` in a fresh data directory with the ``listener`` on a free
    port (``--<listener>-port 0``) and the listeners in ``off`` switched off; a thread drains
    stderr, reads the bound port from the JSON ``listening`` line and keeps the warnings.

    ``start`` replaces ``python -m broker`` (the words before ``serve``); ``extra`` is added
    to the command line; with ``wait_started`` the process is ready at its ``started`` line
    rather than when the listener is bound."""

    def __init__(
        self,
        listener: str,
        fsync: str,
        off: Iterable[str],
        *,
        prefix: str = "polymq-bench-",
        start: list[str] | None = None,
        extra: Sequence[str] = (),
        wait_started: bool = False,
    ) -> None:
        self.listener = listener
        self.wait_started = wait_started
        self.data_dir = tempfile.mkdtemp(prefix=prefix)
        self.port: int | None = None
        self.ready = threading.Event()
        self.notable: list[str] = []
        self.warnings = 0
        self.proc = subprocess.Popen(
            (start or [sys.executable, "-m", "broker"])
            + ["serve", "--data-dir", self.data_dir, "--host", HOST]
            + [f"--{listener}-port", "0", "--fsync", fsync]
            + [f"--{name}-port=off" for name in off]
            + list(extra),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()
        if not self.ready.wait(START_TIMEOUT_S) or self.port is None:
            self.stop()
            raise RuntimeError(
                f"polymq did not report its {listener.upper()} port: " + " | ".join(self.notable)
            )

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            text = line.decode(errors="replace").rstrip()
            try:
                event = json.loads(text)
            except ValueError:
                self.notable.append(text)
                continue
            if event.get("event") == "listening" and event.get("listener") == self.listener:
                self.port = int(event["port"])
                if not self.wait_started:
                    self.ready.set()
            elif event.get("event") == "started" and self.wait_started:
                self.ready.set()
            elif event.get("level") not in ("info", "debug"):
                self.warnings += 1
                if len(self.notable) < NOTABLE_LINES_MAX:
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
        """SIGTERM, SIGKILL after 15 s; the data directory is removed; the exit code."""
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


def aws_polymq(fsync: str, prefix: str = "polymq-bench-sqs-") -> Polymq:
    """polymq with only the AWS HTTP listener."""
    return Polymq("http", fsync, AWS_OFF, prefix=prefix)


class Moto:
    """``moto_server`` on a free port (account 000000000000, as polymq's)."""

    def __init__(self) -> None:
        exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        if not Path(exe).exists():
            raise FileNotFoundError("moto_server is not installed (pip install 'moto[server]')")
        self.port = free_ports(1)[0]
        env = {**os.environ, "MOTO_ACCOUNT_ID": "000000000000"}
        self.proc = subprocess.Popen(
            [exe, "-H", HOST, "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # moto logs nothing machine-readable: poll its HTTP port, bounded
            try:
                urllib.request.urlopen(f"http://{HOST}:{self.port}/", timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto_server did not answer within 30 s") from None
                time.sleep(0.1)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def each_endpoint(
    only: str | None, fsync: str, run: Callable[[str, str], dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """``run(endpoint, name)`` against a fresh polymq, then moto (``only`` one of them); an
    endpoint that cannot start is skipped with a message."""
    rows: dict[str, dict[str, Any]] = {}
    for name in ("polymq", "moto"):
        if only and only != name:
            continue
        try:
            server: Polymq | Moto = aws_polymq(fsync) if name == "polymq" else Moto()
        except (FileNotFoundError, RuntimeError) as exc:
            print(f"{name}: skipped: {exc}", file=sys.stderr)
            continue
        try:
            print(f"{name}: {server.endpoint} ...", file=sys.stderr)
            rows[name] = run(server.endpoint, name)
        finally:
            server.stop()
    return rows


# -- worker processes ------------------------------------------------------------------------


def wait_until(start: float) -> None:
    """Sleep until the wall-clock ``start`` all workers of a run share."""
    while time.time() < start:
        time.sleep(0.005)


def collect(
    out: Any, expected: int, limit: float, on_result: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """Up to ``expected`` worker results from the queue ``out``, until the wall-clock
    ``limit``; ``on_result`` sees each as it comes."""
    results: list[dict[str, Any]] = []
    while len(results) < expected:
        left = limit - time.time()
        if left <= 0:
            break
        try:
            r = out.get(timeout=left)
        except Exception:
            break
        results.append(r)
        on_result(r)
    return results


def run_workers(
    procs: list[Any], out: Any, limit: float, on_result: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """Start the worker processes, collect their results (see ``collect``), then reap them:
    a worker still alive 5 s later is terminated."""
    for p in procs:
        p.start()
    results = collect(out, len(procs), limit, on_result)
    reap(procs, 5, None)
    return results


def worker_errors(results: list[dict[str, Any]], expected: int) -> list[str]:
    return [r["error"] for r in results if r.get("error")] + (
        [] if len(results) == expected else ["a worker did not report"]
    )


def median_p99(ordered: list[float]) -> dict[str, float | None]:
    """``p50`` and ``p99`` of an ascending list, None for an empty one."""
    return {
        "p50": statistics.median(ordered) if ordered else None,
        "p99": p99(ordered) if ordered else None,
    }


def reap(procs: Iterable[Any], wait_s: float = 10.0, after_kill_s: float | None = 5.0) -> None:
    """Join every process for ``wait_s``; terminate the ones still alive (and join them for
    ``after_kill_s``)."""
    for proc in procs:
        proc.join(wait_s)
        if proc.is_alive():
            proc.terminate()
            if after_kill_s is not None:
                proc.join(timeout=after_kill_s)


def recv(conn: Any, timeout: float, what: str) -> tuple:
    """The next message on a pipe, or ``("error", why)`` after ``timeout`` or its end."""
    if not conn.poll(timeout):
        return ("error", f"{what}: no answer within {timeout:.0f} s")
    try:
        return conn.recv()
    except EOFError:
        return ("error", f"{what}: process died")


def wait_go(ctrl: Any, timeout: float, stalled: type[Exception]) -> None:
    if not ctrl.poll(timeout) or ctrl.recv()[0] != "go":
        raise stalled("no go from the bench")


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
            out["p99"] = p99(lat) / 1e6
            out["max"] = lat[-1] / 1e6
        return out


def run_pair(
    consumer: Callable[..., None],
    consumer_args: tuple,
    producer: Callable[..., None],
    producer_args: tuple,
    opts: dict,
) -> dict[str, Any]:
    """One trial of a producer process and a consumer process, each given a control pipe as
    its last argument: the consumer says ``ready``, the producer gets ``go`` and reports what
    it sent, the consumer is told to ``expect`` that many and reports what it received."""
    ctx = mp.get_context("spawn")
    c_here, c_there = ctx.Pipe()
    p_here, p_there = ctx.Pipe()
    cons = ctx.Process(target=consumer, args=(*consumer_args, c_there), daemon=True)
    prod = ctx.Process(target=producer, args=(*producer_args, p_there), daemon=True)
    cons.start()
    prod.start()
    t = opts["timeout"]
    result: dict[str, Any] = {"errors": []}
    try:
        msg = recv(c_here, t + 10, "consumer setup")
        if msg[0] != "ready":
            result["errors"].append(f"consumer: {msg[1]}")
            p_here.send(("stop",))
            return result
        p_here.send(("go",))
        msg = recv(p_here, opts["seconds"] + 2 * t + 10, "producer")
        prod_out = msg[1] if msg[0] == "result" else {"error": msg[1], "sent": 0}
        if prod_out.get("error"):
            result["errors"].append(f"producer: {prod_out['error']}")
        result["producer"] = prod_out
        c_here.send(("expect", prod_out.get("sent", 0)))
        while True:
            msg = recv(c_here, 2 * t + 20, "consumer")
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
        reap((prod, cons))
    return result


# -- trials over rows and brokers ----------------------------------------------------------


def run_rows(
    rows: Iterable[str],
    repeat: int,
    brokers: list[str],
    polymq: Polymq | None,
    notes: list[str],
    trial: Callable[[str, str, int], dict[str, Any]],
    summary: Callable[[str, dict[str, Any]], str],
    results: dict[tuple[str, str], Any],
    name_width: int = 0,
) -> None:
    """``trial(row, broker, rep)`` ``repeat`` times per row and broker, the broker order
    reversed on every other repeat; each result goes into ``results[(row, broker)]`` and a
    line of ``summary`` is printed; errors go to ``notes``."""
    for name in rows:
        for rep in range(repeat):
            order = brokers if rep % 2 == 0 else brokers[::-1]
            for broker in order:
                if broker == "polymq" and polymq is not None and polymq.proc.poll() is not None:
                    notes.append(f"{name} #{rep + 1} polymq: broker process exited")
                    continue
                t0 = time.monotonic()
                res = trial(name, broker, rep)
                results.setdefault((name, broker), []).append(res)
                print(
                    f"  {name:<{name_width}} #{rep + 1} {broker:<9} {summary(name, res)}"
                    f" [{time.monotonic() - t0:.1f} s]"
                )
                for err in res["errors"]:
                    notes.append(f"{name} #{rep + 1} {broker}: {err}")
                sys.stdout.flush()


def compare_with_rabbitmq(
    brokers: list[str],
    rabbit_port: int,
    check: Callable[[int], str | None],
    rabbit_label: str,
    start: Callable[[], Polymq],
    banner: str,
    rows: Iterable[str],
    repeat: int,
    trial: Callable[[str, str, int, int], dict[str, Any]],
    summary: Callable[[str, dict[str, Any]], str],
    name_width: int = 0,
) -> tuple[dict[tuple[str, str], Any], list[str], Polymq | None, float | None, int | None]:
    """The trials of ``rows`` on polymq and RabbitMQ (see ``open_brokers`` and ``run_rows``;
    ``trial(row, broker, port, rep)``), ``banner`` printed once the brokers are known; polymq
    is stopped at the end. The results, the notes, polymq, its peak RSS and exit code."""
    notes: list[str] = []
    ports, polymq = open_brokers(brokers, rabbit_port, check, rabbit_label, start)
    print(banner)
    results: dict[tuple[str, str], Any] = {}

    def run() -> None:
        run_rows(
            rows,
            repeat,
            brokers,
            polymq,
            notes,
            lambda name, broker, rep: trial(name, broker, ports[broker], rep),
            summary,
            results,
            name_width,
        )

    rss, code = run_and_stop(polymq, run)
    return results, notes, polymq, rss, code


def open_brokers(
    brokers: list[str],
    rabbit_port: int,
    check: Callable[[int], str | None],
    rabbit_label: str,
    start: Callable[[], Polymq],
) -> tuple[dict[str, int], Polymq | None]:
    """The ports of the brokers to compare: RabbitMQ's if ``check`` finds it reachable (else
    it is left out of ``brokers``, with a message), and a fresh polymq's from ``start``."""
    ports: dict[str, int] = {}
    polymq = None
    if "rabbitmq" in brokers:
        problem = check(rabbit_port)
        if problem:
            print(f"{rabbit_label} on {HOST}:{rabbit_port} unreachable ({problem});")
            print("start it with /work/shared/scripts/reference-brokers start")
            brokers.remove("rabbitmq")
        else:
            ports["rabbitmq"] = rabbit_port
    if "polymq" in brokers:
        polymq = start()
        assert polymq.port is not None
        ports["polymq"] = polymq.port
    return ports, polymq


def run_and_stop(polymq: Polymq | None, run: Callable[[], None]) -> tuple[float | None, int | None]:
    """``run()``, then stop polymq whatever happened: its peak RSS (MB) and exit code."""
    try:
        run()
    finally:
        rss = polymq.peak_rss_mb() if polymq else None
        code = polymq.stop() if polymq else None
    return rss, code


def print_epilogue(
    polymq: Polymq | None,
    rss: float | None,
    code: int | None,
    notes: list[str],
    warnings: bool = False,
) -> None:
    """A line on polymq's peak RSS (with ``warnings`` also its count of warning lines) and
    exit code, then the problems: ``notes`` and the first 20 warning lines of its log."""
    if polymq is not None:
        rss_text = f"{rss:.0f} MB" if rss else "?"
        said = f"{polymq.warnings} warning/error log lines, " if warnings else ""
        print(f"polymq: peak RSS {rss_text}, {said}exit code {code} after SIGTERM")
        for line in polymq.notable[:20]:
            notes.append(f"polymq log: {line}")
    if notes:
        print("\nproblems:")
        for n in notes:
            print(f"  {n}")


def trial_record(result: dict[str, Any], latency: bool) -> dict[str, Any]:
    """The consumer's figures of one trial for a table row: its rate (or with ``latency``
    its p99, with p50 and max), lost and dup; a trial with errors counts only in lost/dup."""
    cons = result.get("consumer") or {}
    rec: dict[str, Any] = {"lost": cons.get("lost"), "dup": cons.get("dup")}
    if result["errors"]:
        return rec | {"value": None}
    if latency:
        rec.update({k: cons.get(k) for k in ("p50", "p99", "max")})
        rec["value"] = cons.get("p99")
    else:
        rec["value"] = cons.get("rate") if cons.get("received") else None
    return rec


def finish_summary(parts: list[str], res: dict[str, Any], latency: bool) -> str:
    """The consumer's part of a trial's one-line summary after the producer's ``parts``."""
    cons = res.get("consumer") or {}
    if cons:
        parts.append(f"consumed {cons.get('received', 0):,}")
        if latency and cons.get("p99") is not None:
            parts.append(f"p50 {cons['p50']:.2f} p99 {cons['p99']:.2f} max {cons['max']:.2f} ms")
        else:
            parts.append(f"{cons.get('rate', 0):,.0f}/s")
        parts.append(f"lost {cons.get('lost')} dup {cons.get('dup')}")
    if res["errors"]:
        parts.append("ERROR")
    return ", ".join(parts)


def print_rate_head(width: int, rule: int) -> None:
    print()
    print(
        f"{'row':<{width}} {'broker':<9} {'median':>10} {'best':>10} {'min..max':>19} "
        f"{'spread':>7} {'lost':>5} {'dup':>4} {'polymq/rmq':>10}"
    )
    print(f"{'':<{width}} {'':<9} {'msgs/s':>10} {'msgs/s':>10}")
    print("-" * rule)


def print_rate_rows(
    label: str,
    width: int,
    brokers: list[str],
    records: Callable[[str], list[dict]],
    repeat: int,
) -> None:
    """One line per broker: median, best, range and spread of the trials' rates, lost and
    dup summed, and after the last broker polymq/RabbitMQ of the medians."""
    meds: dict[str, float] = {}
    for broker in brokers:
        recs = records(broker)
        vals = [r["value"] for r in recs if r.get("value")]
        med = statistics.median(vals) if vals else None
        if med:
            meds[broker] = med
        best = max(vals) if vals else None
        rng = f"{fmt_rate(min(vals))}..{fmt_rate(max(vals))}" if vals else "-"
        ratio = ""
        if broker == brokers[-1] and len(meds) == 2:
            ratio = f"{meds['polymq'] / meds['rabbitmq']:.2f}"
        print(
            f"{label:<{width}} {broker:<9} {fmt_rate(med):>10} {fmt_rate(best):>10} "
            f"{rng:>19} {spread(vals):>7} {counts(recs, 'lost'):>5} "
            f"{counts(recs, 'dup'):>4} {ratio:>10}  ({len(vals)}/{repeat} ok)"
        )


def print_latency_head(width: int, rule: int) -> None:
    print()
    print(
        f"{'row':<{width}} {'broker':<9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'p99 min..max':>15} {'lost':>5} {'dup':>4} {'p50,p99 polymq/rmq':>19}"
    )
    print("-" * rule)


def print_latency_rows(
    label: str,
    width: int,
    brokers: list[str],
    records: Callable[[str], list[dict]],
    repeat: int,
) -> None:
    """One line per broker: the medians of the trials' p50, p99 and max, the range of p99,
    lost and dup summed, and after the last broker polymq/RabbitMQ of p50 and p99."""
    meds: dict[str, dict] = {}
    for broker in brokers:
        recs = records(broker)
        ok = [r for r in recs if r.get("value") is not None]
        cols = {
            k: statistics.median([r[k] for r in ok]) if ok else None for k in ("p50", "p99", "max")
        }
        if ok:
            meds[broker] = cols
        p99s = [r["p99"] for r in ok]
        rng = f"{min(p99s):.2f}..{max(p99s):.2f}" if p99s else "-"
        ratio = ""
        if broker == brokers[-1] and len(meds) == 2:
            pm, rm = meds["polymq"], meds["rabbitmq"]
            ratio = f"{pm['p50'] / rm['p50']:.1f}, {pm['p99'] / rm['p99']:.1f}"
        text = {k: "-" if v is None else f"{v:.2f}" for k, v in cols.items()}
        print(
            f"{label:<{width}} {broker:<9} {text['p50']:>8} {text['p99']:>8} {text['max']:>8} "
            f"{rng:>15} {counts(recs, 'lost'):>5} {counts(recs, 'dup'):>4} {ratio:>19}"
            f"  ({len(ok)}/{repeat} ok)"
        )


# -- codec benchmarks ----------------------------------------------------------------------


def codec_options(doc: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    return parser.parse_args()


def chunks(stream: bytes) -> list[bytes]:
    return [stream[i : i + CHUNK_BYTES] for i in range(0, len(stream), CHUNK_BYTES)]


def feed_all(dec: Any, pieces: list[bytes], expect: int) -> float:
    """Seconds for ``dec`` to take every piece and produce its events; ``expect`` of them."""
    got = 0
    start = time.perf_counter()
    for piece in pieces:
        dec.feed(piece)
        got += len(dec.events())
    elapsed = time.perf_counter() - start
    assert got == expect, (got, expect)
    return elapsed


def best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def print_per_message(rows: list[tuple[str, float]], n: int) -> None:
    width = max(len(name) for name, _ in rows)
    for name, secs in rows:
        print(f"{name:<{width}}  {secs / n * 1e6:6.3f} µs/msg")
