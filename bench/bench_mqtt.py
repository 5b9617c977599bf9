"""MQTT throughput and memory: polymq, Mosquitto and RabbitMQ (MQTT plugin) side by side.

Every throughput trial uses a fresh topic and 256-byte payloads that start with a sequence
number; the subscribers count lost and duplicated messages. Publisher and subscribers run in
separate processes. Clients speak MQTT 3.1.1 with clean sessions.

Rows:
  a  QoS 0, raw: a struct-built CONNECT, then pre-encoded QoS 0 PUBLISH packets sent in large
     sendall() chunks (``--batch`` per chunk) -> 1 raw subscriber parsing PUBLISH with struct;
     msgs/s received, first to last message. QoS 0 may drop under overload: lost is reported,
     not treated as a failure.
  b  QoS 1, paho: a paho publisher (publish qos=1, at most ``--window`` unacknowledged, waited
     for in half-window batches) -> 1 paho subscriber (qos=1); msgs/s received. lost must be 0.
  e  QoS 1, raw: pre-encoded QoS 1 PUBLISH packets, at most ``--window`` unacknowledged, sent
     in blocks of up to ``--batch`` as the window frees, PUBACKs read as they come -> 1 raw
     subscriber (qos=1) answering each received chunk's PUBLISH packets with one send of
     PUBACKs; msgs/s received, first to last message. The broker's own QoS 1 rate, without
     paho's per-message cost. lost must be 0 (Mosquitto's default limits drop QoS 1 messages
     beyond 1,000 queued for a client: reported as lost).
  c  fan-out, raw QoS 0: 1 publisher -> ``--fanout`` subscribers on the same topic (spread over
     ``--fanout-procs`` processes); deliveries/s summed over the subscribers, lost and dup per
     subscriber.
  d  memory per idle connection: ``--connections`` raw connections (CONNECT with keepalive
     ``--conn-keepalive``, CONNACK, one QoS 0 SUBSCRIBE to a topic of its own, SUBACK, then
     idle) to each broker, opened by other processes; (broker RSS with them - RSS before) /
     connections still open, in KiB. RSS is VmRSS of the broker process (polymq: a fresh
     subprocess per trial, so memory freed by earlier rows does not hide the cost;
     ``mosquitto``; RabbitMQ's ``beam.smp``). polymq also gets a second fresh process under
     tracemalloc: its traced Python heap with the connections less before, after a gc, per
     connection, with the allocating lines and program areas that grew (``--trace-top``). A
     broker whose open-files limit leaves no room for all of them gets only as many as fit
     (less ``--fd-reserve``; RabbitMQ breaks on emfile), and every broker that stops accepting
     is reported with the count it reached.

Each row runs ``--repeat`` times per broker, the broker order reversed on every other repeat;
the table prints the median, the best and the spread, the ratios of polymq to the others and
the goal of the row. polymq runs as a subprocess (``python -m broker serve --fsync always``,
fresh data directory); Mosquitto and RabbitMQ are expected on ``--mosquitto-port`` and
``--rabbit-port`` (``/work/shared/scripts/reference-brokers start``). Every wait is bounded by
``--timeout``: a broker that stops reading or delivering is reported, not waited for.

    python bench/bench_mqtt.py [--seconds 5] [--repeat 3] [--only a,b,e,c,d]
                               [--brokers polymq,mosquitto,rabbitmq]
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import multiprocessing as mp
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import mqtt_raw as raw
from common import (
    HOST,
    ROOT,
    Polymq,
    Tally,
    counts,
    describe,
    fmt_rate,
    print_epilogue,
    reap,
    recv,
    run_and_stop,
    run_rows,
    spread,
    wait_go,
)

BODY_SIZE = 256
SEQ = struct.Struct(">Q")
ALL_BROKERS = ("polymq", "mosquitto", "rabbitmq")

# row -> (label, publisher kind, subscriber kind, QoS)
ROWS = {
    "a": ("(a) QoS 0, raw -> raw", "raw", "raw", 0),
    "b": ("(b) QoS 1, paho -> paho", "paho", "paho", 1),
    "e": ("(e) QoS 1, raw -> raw", "raw", "raw", 1),
    "c": ("(c) fan-out 1 -> N, raw QoS 0", "raw", "raw", 0),
    "d": ("(d) memory per idle connection", "", "", 0),
}
# row -> (reference broker, minimum ratio polymq/reference) for the throughput rows
GOALS = {
    "a": ("mosquitto", 0.5),
    "b": ("rabbitmq", 2.0),
    "c": ("mosquitto", 0.5),
    "e": ("rabbitmq", 2.0),
}
QOS1_ROWS = ("b", "e")  # rows whose goal also needs 0 lost
GOAL_KIB_PER_CONN = 8.0


# -- subscriber processes --------------------------------------------------------------------


def _client_id(kind: str, k: int = 0) -> str:
    return f"bm{kind}{os.getpid() % 100000}-{k}"


def _raw_client(bcfg: dict, client_id: str, timeout: float) -> raw.RawClient:
    """A raw MQTT connection to the broker of ``bcfg``, CONNACK received."""
    return raw.RawClient(
        HOST, bcfg["port"], client_id, bcfg["user"], bcfg["password"], timeout=timeout
    )


def subscribers_raw(bcfg: dict, topic: str, count: int, opts: dict, ctrl: Any) -> None:
    """``count`` raw subscribers on one topic (QoS ``opts["qos"]``), one select loop; at QoS 1
    each received chunk's PUBACKs leave as one send."""
    tallies = [Tally() for _ in range(count)]
    clients: list[raw.RawClient] = []
    error = None
    expect = None
    try:
        for k in range(count):
            client = _raw_client(bcfg, _client_id("s", k), opts["timeout"])
            clients.append(client)
            client.subscribe(topic, opts["qos"])
        ctrl.send(("ready",))
        expect, error = _receive_raw(ctrl, clients, tallies, opts)
    except Exception as exc:  # reported in the table
        error = describe(exc)
    finally:
        for client in clients:
            client.close()
    ctrl.send(("result", [_tally_result(t, expect, error) for t in tallies]))


def _tally_result(tally: Tally, expect: int | None, error: str | None) -> dict[str, Any]:
    out = tally.result(expect, error)
    out["first_ns"], out["last_ns"] = tally.first_ns, tally.last_ns
    if out["lost"]:
        out["lost_ranges"] = _missing_ranges(tally.seen, expect or 0)
    if expect and not out["received"] and not out["error"]:
        out["error"] = f"nothing delivered of {expect:,} published"
    return out


def _missing_ranges(seen: bytearray, expect: int, limit: int = 4) -> list[str]:
    """The first ``limit`` runs of sequence numbers below ``expect`` never received."""
    out: list[str] = []
    view = bytes(seen[:expect]).ljust(expect, b"\x00")
    i = view.find(0)
    while i != -1 and len(out) < limit:
        j = view.find(1, i)
        end = expect if j == -1 else j
        out.append(f"{i}..{end - 1}")
        i = -1 if j == -1 else view.find(0, j)
    return out


def _receive_raw(
    ctrl: Any, clients: list[raw.RawClient], tallies: list[Tally], opts: dict
) -> tuple[int | None, str | None]:
    """Until every subscriber has every message, or nothing arrived for ``--settle`` s after the
    publisher finished (QoS 0: the rest is lost, not an error)."""
    by_fd: dict[int, tuple[raw.RawClient, Tally, Any]] = {}
    unpack = SEQ.unpack_from
    acks = bytearray() if opts["qos"] else None
    for client, tally in zip(clients, tallies, strict=True):
        body = tally.body

        def on_publish(buf: bytearray, off: int, body: Any = body) -> None:
            body(unpack(buf, off)[0], 0)

        by_fd[client.sock.fileno()] = (client, tally, on_publish)

    def pump(fd: int) -> bool:
        client, tally, on_publish = by_fd[fd]
        data = client.sock.recv(1 << 18)
        if not data:
            raise raw.BrokerClosed("socket closed by the broker")
        now = time.monotonic_ns()
        buf = client.buf
        buf.extend(data)
        before = tally.unique + tally.dup
        used = raw.scan(buf, on_publish, acks)
        del buf[:used]
        if acks:
            client.sock.sendall(acks)
            acks.clear()
        if tally.unique + tally.dup != before:
            if not tally.first_ns:
                tally.first_ns = now
            tally.last_ns = now
            return True
        return False

    expect: int | None = None
    last_progress = time.monotonic()
    fds = list(by_fd)
    while expect is None or any(t.unique < expect for t in tallies):
        ready, _, _ = select.select([*fds, ctrl], [], [], 0.2)
        for fd in ready:
            if fd is ctrl:
                msg = ctrl.recv()
                if msg[0] != "expect":
                    return expect, "stopped"
                expect = msg[1]
                last_progress = time.monotonic()
            elif pump(fd):
                last_progress = time.monotonic()
        if expect is not None and time.monotonic() - last_progress > opts["settle"]:
            return expect, None
    end = time.monotonic() + 0.3  # late duplicates
    while time.monotonic() < end:
        for fd in select.select(fds, [], [], 0.05)[0]:
            pump(fd)
    return expect, None


def _paho_client(bcfg: dict, client_id: str) -> Any:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    if bcfg["user"] is not None:
        client.username_pw_set(bcfg["user"], bcfg["password"])
    return client


def subscriber_paho(bcfg: dict, topic: str, count: int, opts: dict, ctrl: Any) -> None:
    """One paho QoS 1 subscriber driven by this process's own select loop."""
    tally = Tally()
    error = None
    expect = None
    client = _paho_client(bcfg, _client_id("p"))
    state: dict[str, Any] = {"connack": None, "suback": None, "gone": None}
    unpack = SEQ.unpack_from
    body = tally.body

    def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        state["connack"] = reason

    def on_subscribe(_c: Any, _u: Any, _mid: int, reasons: Any, _props: Any) -> None:
        state["suback"] = reasons

    def on_disconnect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        state["gone"] = f"disconnected: {reason}"

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        now = time.monotonic_ns()
        if not tally.first_ns:
            tally.first_ns = now
        tally.last_ns = now
        body(unpack(msg.payload, 0)[0], 0)

    client.on_connect, client.on_subscribe = on_connect, on_subscribe
    client.on_disconnect, client.on_message = on_disconnect, on_message

    def step(timeout: float) -> bool:
        """One select + read/write round; True if messages arrived."""
        sock = client.socket()
        if sock is None or state["gone"]:
            raise raw.BrokerClosed(state["gone"] or "paho: not connected")
        wlist = [sock] if client.want_write() else []
        readable, writable, _ = select.select([sock], wlist, [], timeout)
        before = tally.unique + tally.dup
        if readable:
            for _ in range(2000):  # paho reads one packet per loop_read()
                seen = tally.unique + tally.dup
                rc = client.loop_read()
                if rc or tally.unique + tally.dup == seen:
                    break
            if rc:
                raise raw.BrokerClosed(f"paho loop_read: {rc}")
        if writable or client.want_write():
            client.loop_write()
        client.loop_misc()
        return tally.unique + tally.dup != before

    try:
        client.connect(HOST, bcfg["port"], keepalive=60)
        deadline = time.monotonic() + opts["timeout"]
        while state["connack"] is None and time.monotonic() < deadline:
            step(0.1)
        if state["connack"] is None or state["connack"].is_failure:
            raise raw.BrokerClosed(f"CONNACK: {state['connack'] or 'none within timeout'}")
        client.subscribe(topic, qos=1)
        while state["suback"] is None and time.monotonic() < deadline:
            step(0.1)
        if not state["suback"] or state["suback"][0].is_failure:
            raise raw.BrokerClosed(f"SUBACK: {state['suback'] or 'none within timeout'}")
        ctrl.send(("ready",))
        last_progress = time.monotonic()
        while expect is None or tally.unique < expect:
            if step(0.1):
                last_progress = time.monotonic()
            while ctrl.poll():
                msg = ctrl.recv()
                if msg[0] != "expect":
                    raise raw.Stalled("stopped by the bench")
                expect = msg[1]
                last_progress = time.monotonic()
            if expect is not None and time.monotonic() - last_progress > opts["timeout"]:
                error = f"stalled: no delivery for {opts['timeout']:.0f} s"
                break
        end = time.monotonic() + 0.3  # late duplicates, and the last PUBACKs out
        while error is None and time.monotonic() < end:
            step(0.05)
    except Exception as exc:
        error = describe(exc)
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
    ctrl.send(("result", [_tally_result(tally, expect, error)]))


# -- publisher processes ---------------------------------------------------------------------


def publisher_raw(bcfg: dict, topic: str, opts: dict, ctrl: Any) -> None:
    out: dict[str, Any] = {"sent": 0, "error": None}
    client = None
    try:
        client = _raw_client(bcfg, _client_id("P"), opts["timeout"])
        pkt, off = raw.publish_packet(topic, bytes(BODY_SIZE))
        per_send = opts["batch"]
        batch = bytearray(pkt * per_send)
        offsets = [k * len(pkt) + off for k in range(per_send)]
        pack = SEQ.pack_into
        wait_go(ctrl, opts["timeout"] * 2, raw.Stalled)
        seq = 0
        t0 = time.monotonic_ns()
        deadline = t0 + int(opts["seconds"] * 1e9)
        while time.monotonic_ns() < deadline:
            for k, o in enumerate(offsets):
                pack(batch, o, seq + k)
            client.send(batch)
            seq += per_send
            out["sent"] = seq
        out["publish_rate"] = seq / ((time.monotonic_ns() - t0) / 1e9)
        client.ping()  # every PUBLISH before it was read by the broker
        out["ingest_rate"] = seq / ((time.monotonic_ns() - t0) / 1e9)
    except Exception as exc:
        out["error"] = describe(exc)
    finally:
        if client is not None:
            client.close()
    ctrl.send(("result", out))


def publisher_raw_qos1(bcfg: dict, topic: str, opts: dict, ctrl: Any) -> None:
    """Pre-encoded QoS 1 PUBLISH packets, at most ``--window`` unacknowledged: a block of up to
    ``--batch`` leaves in one send whenever that much of the window is free; PUBACKs are read
    as they come. Ends with every publish acknowledged."""
    out: dict[str, Any] = {"sent": 0, "acked": 0, "error": None}
    client = None
    try:
        client = _raw_client(bcfg, _client_id("R"), opts["timeout"])
        window = min(opts["window"], 65535)
        per_send = max(1, min(opts["batch"], window))
        pkt, id_off, pay_off = raw.publish_packet_qos1(topic, bytes(BODY_SIZE))
        size = len(pkt)
        block = bytearray(pkt * per_send)
        view = memoryview(block)
        pack_seq = SEQ.pack_into
        pack_id = struct.Struct(">H").pack_into
        unacked = bytearray(65536)  # packet id -> 1 while in flight
        count = {"inflight": 0, "acked": 0, "stray": 0}
        sock = client.sock
        buf = client.buf
        timeout = opts["timeout"]

        def on_puback(pid: int) -> None:
            if unacked[pid]:
                unacked[pid] = 0
                count["inflight"] -= 1
                count["acked"] += 1
            else:
                count["stray"] += 1

        def read_acks(wait_s: float) -> None:
            if not select.select([sock], [], [], wait_s)[0]:
                if wait_s:
                    raise raw.Stalled(f"no PUBACK within {wait_s:.0f} s")
                return
            data = sock.recv(1 << 16)
            if not data:
                raise raw.BrokerClosed("socket closed by the broker")
            buf.extend(data)
            del buf[: raw.scan(buf, None, None, on_puback)]

        wait_go(ctrl, timeout * 2, raw.Stalled)
        seq = 0
        pid = 0
        t0 = time.monotonic_ns()
        deadline = t0 + int(opts["seconds"] * 1e9)
        refill = max(1, min(per_send, window // 2))
        while time.monotonic_ns() < deadline:
            room = window - count["inflight"]
            if room >= refill:
                k = 0
                while k < min(room, per_send) and not unacked[pid % 65535 + 1]:
                    pid = pid % 65535 + 1
                    unacked[pid] = 1
                    pack_id(block, k * size + id_off, pid)
                    pack_seq(block, k * size + pay_off, seq)
                    seq += 1
                    k += 1
                if k:
                    sock.sendall(view[: k * size])
                    count["inflight"] += k
                    out["sent"] = seq
            read_acks(0 if window - count["inflight"] >= refill else timeout)
        out["publish_rate"] = seq / ((time.monotonic_ns() - t0) / 1e9)
        while count["inflight"]:
            read_acks(timeout)
        out["acked"] = count["acked"]
        out["ack_rate"] = count["acked"] / ((time.monotonic_ns() - t0) / 1e9)
        if count["stray"]:
            out["error"] = f"{count['stray']} PUBACKs for packet ids not in flight"
    except Exception as exc:
        out["error"] = describe(exc)
    finally:
        if client is not None:
            client.close()
    ctrl.send(("result", out))


def publisher_paho(bcfg: dict, topic: str, opts: dict, ctrl: Any) -> None:
    out: dict[str, Any] = {"sent": 0, "acked": 0, "error": None}
    client = _paho_client(bcfg, _client_id("Q"))
    window = opts["window"]
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    state: dict[str, Any] = {"connack": None, "gone": None}

    def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        state["connack"] = reason
        connected.set()

    def on_disconnect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        state["gone"] = state["gone"] or f"disconnected by the broker: {reason}"

    client.on_connect, client.on_disconnect = on_connect, on_disconnect
    timeout = opts["timeout"]
    started = False
    try:
        client.connect(HOST, bcfg["port"], keepalive=60)
        client.loop_start()
        started = True
        if not connected.wait(timeout) or state["connack"].is_failure:
            raise raw.BrokerClosed(f"CONNACK: {state['connack'] or 'none within timeout'}")
        payload = bytearray(BODY_SIZE)
        pack = SEQ.pack_into
        publish = client.publish
        chunk = max(1, window // 2)
        batches: deque[list[Any]] = deque()

        def settle(infos: list[Any]) -> None:
            infos[-1].wait_for_publish(timeout)
            if state["gone"]:
                raise raw.BrokerClosed(state["gone"])
            unacked = sum(1 for info in infos if not info.is_published())
            if unacked:  # acks may come out of order: give the rest the same bound once more
                first = next(info for info in infos if not info.is_published())
                first.wait_for_publish(timeout)
                unacked = sum(1 for info in infos if not info.is_published())
            out["acked"] += len(infos) - unacked
            out["last_ack_ns"] = time.monotonic_ns()
            if unacked:
                raise raw.Stalled(f"{unacked} QoS 1 publishes not acknowledged within {timeout} s")

        wait_go(ctrl, timeout * 2, raw.Stalled)
        seq = 0
        t0 = time.monotonic_ns()
        deadline = t0 + int(opts["seconds"] * 1e9)
        while time.monotonic_ns() < deadline:
            if len(batches) >= 2:  # at most `window` unacknowledged
                settle(batches.popleft())
            infos = []
            for _ in range(chunk):
                pack(payload, 0, seq)
                infos.append(publish(topic, bytes(payload), qos=1))
                seq += 1
            batches.append(infos)
            out["sent"] = seq
            if state["gone"]:
                raise raw.BrokerClosed(state["gone"])
        out["publish_rate"] = seq / ((time.monotonic_ns() - t0) / 1e9)
        while batches:
            settle(batches.popleft())
        out["ack_rate"] = out["acked"] / ((out["last_ack_ns"] - t0) / 1e9)
    except Exception as exc:
        out["error"] = describe(exc)
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
        if started:
            client.loop_stop()
    ctrl.send(("result", out))


# -- idle connections (row d) ----------------------------------------------------------------


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_holder(bcfg: dict, n: int, worker: int, opts: dict, ctrl: Any) -> None:
    """Open ``n`` MQTT connections (non-blocking, ``--conn-parallel`` handshakes at a time),
    report, hold them idle until told, check how many are still open, close them."""
    raise_nofile()
    failures: Counter[str] = Counter()
    held: list[socket.socket] = []
    ep = select.epoll()
    pending: dict[int, list[Any]] = {}  # fd -> [sock, stage, deadline, buf]
    hs_timeout = min(opts["timeout"], 15.0)
    phase_end = time.monotonic() + opts["conn_timeout"]
    started = 0
    streak = 0  # failures since the last success
    gave_up = ""

    def fail(fd: int, why: str) -> None:
        nonlocal streak
        sock = pending.pop(fd)[0]
        with contextlib.suppress(OSError):
            ep.unregister(fd)
        sock.close()
        failures[why] += 1
        streak += 1

    try:
        while started < n or pending:
            now = time.monotonic()
            if not gave_up and now > phase_end:
                gave_up = f"stopped opening after {opts['conn_timeout']:.0f} s"
            if not gave_up and streak >= opts["conn_parallel"]:
                gave_up = f"stopped opening after {opts['conn_parallel']} failures in a row"
            while not gave_up and started < n and len(pending) < opts["conn_parallel"]:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                started += 1
                err = sock.connect_ex((HOST, bcfg["port"]))
                if err not in (0, errno.EINPROGRESS):
                    sock.close()
                    failures[f"connect: {errno.errorcode.get(err, err)}"] += 1
                    streak += 1
                    continue
                cid = f"bmi{worker}-{os.getpid() % 100000}-{started}"
                pkt = raw.connect_packet(
                    cid, opts["conn_keepalive"], True, bcfg["user"], bcfg["password"]
                )
                sub = raw.subscribe_packet(1, f"bench/idle/{cid}", 0)
                pending[sock.fileno()] = [sock, pkt, now + hs_timeout, bytearray(), sub]
                ep.register(sock.fileno(), select.EPOLLOUT)
            if gave_up and not pending:
                break
            for fd, _events in ep.poll(0.1):
                entry = pending.get(fd)
                if entry is None:
                    continue
                sock = entry[0]
                if isinstance(entry[1], bytes):  # connecting: send CONNECT
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        fail(fd, f"connect: {errno.errorcode.get(err, err)}")
                        continue
                    try:
                        sock.send(entry[1])
                    except OSError as exc:
                        fail(fd, f"send CONNECT: {exc.strerror or exc}")
                        continue
                    entry[1] = None
                    ep.modify(fd, select.EPOLLIN)
                    continue
                try:
                    data = sock.recv(64)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    fail(fd, f"recv: {exc.strerror or exc}")
                    continue
                if not data:
                    fail(fd, "closed by the broker before CONNACK")
                    continue
                entry[3].extend(data)
                if entry[4] is not None:  # waiting for CONNACK, then SUBSCRIBE
                    if len(entry[3]) < 4:
                        continue
                    problem = raw.connack_error(entry[3])
                    if problem:
                        fail(fd, problem)
                        continue
                    del entry[3][:4]
                    try:
                        sock.send(entry[4])
                    except OSError as exc:
                        fail(fd, f"send SUBSCRIBE: {exc.strerror or exc}")
                        continue
                    entry[4] = None
                if len(entry[3]) < 5:
                    continue
                if entry[3][0] != raw.SUBACK << 4 or entry[3][4] == 0x80:
                    fail(fd, f"SUBACK expected, got {bytes(entry[3][:8]).hex()}")
                    continue
                ep.unregister(fd)
                del pending[fd]
                held.append(sock)
                streak = 0
            now = time.monotonic()
            for fd in [fd for fd, e in pending.items() if e[2] < now]:
                entry = pending[fd]
                stage = (
                    "TCP connect"
                    if isinstance(entry[1], bytes)
                    else ("CONNACK" if entry[4] is not None else "SUBACK")
                )
                fail(fd, f"no {stage} within {hs_timeout:.0f} s")
        ctrl.send(("opened", {"held": len(held), "failures": dict(failures), "note": gave_up}))
        msg = ctrl.recv() if ctrl.poll(opts["conn_timeout"] + 600) else ("close",)
        alive = 0
        if msg[0] == "check":
            alive = sum(1 for s in held if _still_open(s))
            ctrl.send(("alive", alive))
            msg = ctrl.recv() if ctrl.poll(600) else ("close",)
    except Exception as exc:
        with contextlib.suppress(Exception):
            ctrl.send(("error", describe(exc)))
    finally:
        for entry in pending.values():
            entry[0].close()
        for sock in held:
            with contextlib.suppress(OSError):
                sock.send(raw.DISCONNECT_PACKET)
            sock.close()
        ep.close()
    with contextlib.suppress(Exception):
        ctrl.send(("closed", len(held)))


def _still_open(sock: socket.socket) -> bool:
    try:
        data = sock.recv(64, socket.MSG_PEEK)
    except BlockingIOError:
        return True  # nothing to read: open and idle
    except OSError:
        return False
    return bool(data)  # b"" is EOF; data is unexpected but the socket is open


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def nofile_limit(pid: int) -> tuple[int, int] | None:
    """(soft, hard) RLIMIT_NOFILE of a process; unlimited counts as 2**31."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft, hard = (1 << 31 if v == "unlimited" else int(v) for v in line.split()[3:5])
                return soft, hard
    except (OSError, ValueError):
        pass
    return None


def fmt_limit(limit: tuple[int, int] | None) -> str:
    if limit is None:
        return "?"
    return str(limit[0]) if limit[0] == limit[1] else f"{limit[0]} (hard {limit[1]})"


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def run_memory_trial(
    broker: str, bcfg: dict, opts: dict, traced: TracedHeap | None = None
) -> dict[str, Any]:
    """Open the idle connections, read the broker's RSS (and with ``traced``, its traced Python
    heap) before and with them."""
    result: dict[str, Any] = {"errors": [], "notes": []}
    pid = bcfg.get("pid")
    n = opts["connections"]
    if not pid:
        result["errors"].append("broker process not found: cannot read its RSS")
        return result
    # A broker that runs out of file descriptors may break in ways that outlast the trial
    # (RabbitMQ's memory monitor crashes on emfile, and queue creation with it): open no more
    # than its open-files limit leaves room for, and report the cap.
    limit, used = nofile_limit(pid), open_fds(pid)
    if limit is not None and used is not None:
        room = limit[0] - used - opts["fd_reserve"]
        if room < n:
            n = max(0, room)
            result["notes"].append(
                f"capped at {n:,}: the broker's open-files limit is {limit[0]}, {used} in use, "
                f"{opts['fd_reserve']} left spare"
            )
    if n <= 0:
        result["errors"].append("no room for connections under the broker's open-files limit")
        return result
    traced_before = traced.read() if traced is not None else None
    before = rss_kib(pid)
    cap = max(64, raise_nofile() - 200)
    workers = max(opts["conn_workers"] or 2, math.ceil(n / cap))
    shares = [n // workers + (1 if k < n % workers else 0) for k in range(workers)]
    ctx = mp.get_context("spawn")
    procs, pipes = [], []
    for k, share in enumerate(shares):
        here, there = ctx.Pipe()
        proc = ctx.Process(
            target=connection_holder, args=(bcfg, share, k, opts, there), daemon=True
        )
        proc.start()
        procs.append(proc)
        pipes.append(here)
    t0 = time.monotonic()
    held = 0
    failures: Counter[str] = Counter()
    try:
        for pipe in pipes:
            msg = recv(pipe, opts["conn_timeout"] + 60, "connection worker")
            if msg[0] == "opened":
                held += msg[1]["held"]
                failures.update(msg[1]["failures"])
                note = msg[1]["note"]
                if note and note not in result["notes"]:
                    result["notes"].append(note)
            else:
                result["errors"].append(f"worker: {msg[1]}")
        result["open_s"] = time.monotonic() - t0
        time.sleep(opts["conn_settle"])
        after = rss_kib(pid)
        traced_after = traced.read() if traced is not None else None
        alive = 0
        for pipe in pipes:
            with contextlib.suppress(Exception):
                pipe.send(("check",))
        for pipe in pipes:
            msg = recv(pipe, 120, "connection worker")
            if msg[0] == "alive":
                alive += msg[1]
        result.update(
            {"target": n, "held": held, "alive": alive, "before_kib": before, "after_kib": after}
        )
        result["failures"] = dict(failures)
        if before is not None and after is not None and alive:
            result["kib_per_conn"] = (after - before) / alive
        if traced_before is not None and traced_after is not None and alive:
            result["traced_kib_per_conn"] = (traced_after["traced"] - traced_before["traced"]) / (
                alive * 1024
            )
            result["traced_top"] = [
                (where, size / alive, count / alive)
                for where, size, count in traced_after.get("top", [])
            ]
            areas: Counter[str] = Counter()
            for name, (size, _count) in traced_after.get("files", {}).items():
                areas[_heap_area(name)] += size
            result["traced_areas"] = {k: v / alive for k, v in areas.most_common()}
        if alive < held:
            result["notes"].append(f"{held - alive} of {held} connections closed by the broker")
    finally:
        for pipe in pipes:
            with contextlib.suppress(Exception):
                pipe.send(("close",))
        for pipe in pipes:
            recv(pipe, 120, "connection worker")
        reap(procs, 30)
    result["after_close_kib"] = rss_kib(pid)
    return result


def memory_trial(broker: str, bcfg: dict, fsync: str, opts: dict, notes: list[str]) -> dict:
    """Row d on one broker; polymq is a fresh process per trial, so that memory freed by the
    earlier rows or trials does not hide what the connections take."""
    if broker != "polymq":
        pid = bcfg.get("pid")
        res = run_memory_trial(broker, bcfg, opts)
        res["limit"] = fmt_limit(nofile_limit(pid)) if pid else "?"
        return res
    fresh = start_polymq(fsync)
    try:
        cfg = dict(bcfg, port=fresh.port, pid=fresh.proc.pid)
        time.sleep(1.0)  # let start-up settle before the RSS baseline
        res = run_memory_trial(broker, cfg, opts)
        res["limit"] = fmt_limit(nofile_limit(fresh.proc.pid))
    finally:
        code = fresh.stop()
    if code != 0:
        res["errors"].append(f"fresh polymq exit code {code} after SIGTERM")
    notes.extend(f"polymq (row d) log: {line}" for line in fresh.notable[:20])
    if not opts["trace"]:
        return res
    # The same again in a second fresh process with tracemalloc on (its own bookkeeping would
    # inflate the RSS figure): the Python heap the connections hold, by allocating line.
    heap_file = os.path.join(tempfile.mkdtemp(prefix="polymq-bench-heap-"), "heap.json")
    fresh = start_polymq(fsync, heap_file=heap_file)
    try:
        cfg = dict(bcfg, port=fresh.port, pid=fresh.proc.pid)
        time.sleep(1.0)
        traced = run_memory_trial(broker, cfg, opts, TracedHeap(fresh.proc.pid, heap_file))
    finally:
        code = fresh.stop()
        shutil.rmtree(os.path.dirname(heap_file), ignore_errors=True)
    for key in ("traced_kib_per_conn", "traced_top", "traced_areas"):
        if key in traced:
            res[key] = traced[key]
    res["errors"] += [f"traced run: {e}" for e in traced["errors"]]
    if code != 0:
        res["errors"].append(f"traced polymq exit code {code} after SIGTERM")
    return res


# Run in the broker process by ``Polymq(heap_file=...)``: tracemalloc from the start, and on
# SIGUSR1 the traced heap (after a gc) written to the file as JSON. The first reading keeps
# the per-line totals as a baseline (the dict it keeps is counted into that reading); later
# ones add the lines that grew most since.
TRACED_SERVE = """exec(compile(r'''
import gc, json, os, signal, sys, tracemalloc
heap_file, top_lines = sys.argv[1], 200
base = {}
def read_heap(_signum, _frame):
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0]
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<heap>")]
    )
    stats = snapshot.statistics("lineno")
    del snapshot
    sizes = {str(s.traceback[0]): (s.size, s.count) for s in stats}
    del stats
    out = {"traced": traced}
    if not base:
        base.update(sizes)
        del sizes
        out["traced"] = tracemalloc.get_traced_memory()[0]
    else:
        grown = [
            (where, size - base.get(where, (0, 0))[0], count - base.get(where, (0, 0))[1])
            for where, (size, count) in sizes.items()
        ]
        grown.sort(key=lambda g: -g[1])
        out["top"] = grown[:top_lines]
        out["files"] = {}
        for where, size, count in grown:
            name = where.rsplit(":", 1)[0]
            size0, count0 = out["files"].get(name, (0, 0))
            out["files"][name] = (size0 + size, count0 + count)
    with open(heap_file + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(heap_file + ".tmp", heap_file)
signal.signal(signal.SIGUSR1, read_heap)
tracemalloc.start()
from broker.cli import main
sys.exit(main(sys.argv[2:]))
''', "<heap>", "exec"))
"""


def _heap_area(filename: str) -> str:
    """The part of the program a traced allocation belongs to, for the row d breakdown."""
    path = filename.replace(os.sep, "/")
    if "/site-packages/" in path:
        return path.split("/site-packages/")[1].split("/")[0]
    if str(ROOT) in filename:
        rel = os.path.relpath(filename, ROOT).replace(os.sep, "/")
        parts = rel.split("/")
        return "/".join(parts[:2]) if len(parts) > 2 else rel
    if "trio." in path:  # attrs-generated methods of trio classes
        return "trio"
    return "other (stdlib, generated code)"


class TracedHeap:
    """Reads the traced heap of a broker started with ``TRACED_SERVE``."""

    def __init__(self, pid: int, heap_file: str) -> None:
        self.pid = pid
        self.heap_file = heap_file

    def read(self, timeout_s: float = 120.0) -> dict[str, Any] | None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.heap_file)
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError):
                return dict(json.loads(Path(self.heap_file).read_text()))
            time.sleep(0.1)
        return None


# -- orchestration ---------------------------------------------------------------------------


def run_trial(row: str, broker: str, bcfg: dict, rep: int, opts: dict) -> dict[str, Any]:
    _, pkind, skind, qos = ROWS[row]
    opts = dict(opts, qos=qos)
    topic = f"bench/{row}/{broker}/{rep}/{os.getpid()}-{time.monotonic_ns() % 10**9}"
    subs = opts["fanout"] if row == "c" else 1
    nprocs = min(subs, opts["fanout_procs"]) if row == "c" else 1
    shares = [subs // nprocs + (1 if k < subs % nprocs else 0) for k in range(nprocs)]
    ctx = mp.get_context("spawn")
    sub_fn = subscriber_paho if skind == "paho" else subscribers_raw
    pub_fn = publisher_paho if pkind == "paho" else publisher_raw_qos1 if qos else publisher_raw
    sub_pipes, procs = [], []
    for share in shares:
        here, there = ctx.Pipe()
        procs.append(
            ctx.Process(target=sub_fn, args=(bcfg, topic, share, opts, there), daemon=True)
        )
        sub_pipes.append(here)
    p_here, p_there = ctx.Pipe()
    pub = ctx.Process(target=pub_fn, args=(bcfg, topic, opts, p_there), daemon=True)
    procs.append(pub)
    for proc in procs:
        proc.start()
    t = opts["timeout"]
    result: dict[str, Any] = {"errors": [], "subscribers": []}
    try:
        failed = False
        for pipe in sub_pipes:
            msg = recv(pipe, t + 20, "subscriber setup")
            if msg[0] == "result":
                result["errors"] += [f"subscriber: {r['error']}" for r in msg[1] if r["error"]]
                failed = True
            elif msg[0] != "ready":
                result["errors"].append(f"subscriber: {msg[1]}")
                failed = True
        if failed:
            p_here.send(("stop",))
            for pipe in sub_pipes:
                with contextlib.suppress(Exception):
                    pipe.send(("stop",))
            return result
        p_here.send(("go",))
        msg = recv(p_here, opts["seconds"] + 3 * t + 20, "publisher")
        pub_out = msg[1] if msg[0] == "result" else {"error": msg[1], "sent": 0}
        if pub_out.get("error"):
            result["errors"].append(f"publisher: {pub_out['error']}")
        result["publisher"] = pub_out
        for pipe in sub_pipes:
            with contextlib.suppress(Exception):
                pipe.send(("expect", pub_out.get("sent", 0)))
        for pipe in sub_pipes:
            msg = recv(pipe, 2 * t + opts["settle"] + 30, "subscriber")
            if msg[0] != "result":
                result["errors"].append(f"subscriber: {msg[1]}")
                continue
            for sub in msg[1]:
                result["subscribers"].append(sub)
                if sub["error"]:
                    result["errors"].append(f"subscriber: {sub['error']}")
    finally:
        reap(procs)
    return result


def _other_listeners() -> list[str]:
    """polymq's listeners besides MQTT over TCP, to switch off (mqtt-ws only where it exists)."""
    names = ["amqp", "admin", "stomp", "http"]
    usage = subprocess.run(
        [sys.executable, "-m", "broker", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return names + (["mqtt-ws"] if "--mqtt-ws-port" in usage else [])


def start_polymq(fsync: str, heap_file: str | None = None) -> Polymq:
    """polymq on a free MQTT port, the other listeners off; with ``heap_file``, under
    ``TRACED_SERVE``."""
    start = None if heap_file is None else [sys.executable, "-c", TRACED_SERVE, heap_file]
    return Polymq("mqtt", fsync, _other_listeners(), start=start)


def listener_pid(port: int, names: tuple[str, ...]) -> int | None:
    """The process listening on 127.0.0.1:``port`` (via /proc/net/tcp socket inodes), else
    the only process named one of ``names`` (pgrep -x)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if inodes:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                for fd in (proc / "fd").iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd) in inodes:
                            return int(proc.name)
    for name in names:
        found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
        pids = found.split()
        if len(pids) == 1:
            return int(pids[0])
    return None


def _check_broker(bcfg: dict) -> str | None:
    try:
        _raw_client(bcfg, _client_id("c"), 5).close()
    except Exception as exc:
        return describe(exc)
    return None


# -- report ----------------------------------------------------------------------------------


def _record(row: str, res: dict) -> dict[str, Any]:
    """Per-trial value (msgs/s), lost and dup summed over subscribers."""
    subs = res.get("subscribers") or []
    rec: dict[str, Any] = {
        "lost": sum(s["lost"] for s in subs)
        if subs and all(s["lost"] is not None for s in subs)
        else None,
        "dup": sum(s["dup"] for s in subs) if subs else None,
        "value": None,
    }
    if res["errors"] or not subs:
        return rec
    received = sum(s["received"] for s in subs)
    if row == "c":
        firsts = [s["first_ns"] for s in subs if s["first_ns"]]
        lasts = [s["last_ns"] for s in subs if s["last_ns"]]
        span = (max(lasts) - min(firsts)) / 1e9 if firsts else 0
        rec["value"] = received / span if span > 0 else None
    else:
        rec["value"] = subs[0]["rate"] if received else None
    return rec


def _goal_text(row: str, meds: dict[str, float], lost_polymq: str) -> str:
    ref, need = GOALS[row]
    if "polymq" not in meds or ref not in meds:
        return f"goal: polymq >= {need:g}x {ref}: not measured"
    ratio = meds["polymq"] / meds[ref]
    met = ratio >= need
    extra = ""
    if row in QOS1_ROWS:
        met = met and lost_polymq == "0"
        extra = f" with 0 lost (polymq lost {lost_polymq})"
    verdict = "met" if met else "NOT met"
    return f"goal: polymq >= {need:g}x {ref}{extra}: {ratio:.2f}x -> {verdict}"


def print_table(results: dict, brokers: list[str], rows: list[str], opts: dict) -> None:
    repeat = opts["repeat"]
    others = [b for b in brokers if b != "polymq"]
    ratio_heads = "".join(f"{'pmq/' + b[:4]:>10}" for b in others) if "polymq" in brokers else ""
    tput = [r for r in rows if r != "d"]
    if tput:
        print()
        print(
            f"{'row':<34} {'broker':<10} {'median':>10} {'best':>10} {'min..max':>19} "
            f"{'spread':>7} {'lost':>9} {'dup':>5}{ratio_heads}"
        )
        print(f"{'':<34} {'':<10} {'msgs/s':>10} {'msgs/s':>10}")
        print("-" * (100 + len(ratio_heads)))
    for row in tput:
        label = ROWS[row][0] if row != "c" else f"(c) fan-out 1 -> {opts['fanout']}, raw QoS 0"
        meds: dict[str, float] = {}
        lost_of: dict[str, str] = {}
        for i, broker in enumerate(brokers):
            recs = [_record(row, r) for r in results.get((row, broker), [])]
            vals = [r["value"] for r in recs if r["value"]]
            med = statistics.median(vals) if vals else None
            if med:
                meds[broker] = med
            lost_of[broker] = counts(recs, "lost") if recs else "?"
            rng = f"{fmt_rate(min(vals))}..{fmt_rate(max(vals))}" if vals else "-"
            ratios = ""
            if broker == "polymq":
                ratios = f"{'':>10}" * len(others)
            elif "polymq" in brokers:
                ratios = "".join(
                    f"{'':>10}"
                    if other != broker
                    else (
                        f"{meds['polymq'] / med:>10.2f}"
                        if med and "polymq" in meds
                        else f"{'-':>10}"
                    )
                    for other in others
                )
            print(
                f"{label if i == 0 else '':<34} {broker:<10} {fmt_rate(med):>10} "
                f"{fmt_rate(max(vals) if vals else None):>10} {rng:>19} {spread(vals):>7} "
                f"{lost_of[broker]:>9} {counts(recs, 'dup') if recs else '?':>5}{ratios}"
                f"  ({len(vals)}/{repeat} ok)"
            )
        if "polymq" in brokers:
            print(f"{'':<34} {_goal_text(row, meds, lost_of.get('polymq', '?'))}")
    if "d" in rows:
        print()
        print(
            f"{'(d) memory per idle connection':<34} {'broker':<10} {'KiB/conn':>9} "
            f"{'1st trial':>9} {'min..max':>13} {'reached':>15} {'RSS before -> with':>20} "
            f"{'fd limit':>17} {'heap KiB':>9}"
        )
        print(
            f"{'':<34} {'':<10} {'RSS':>9} {'':>9} {'':>13} {'':>15} {'':>20} {'':>17} "
            f"{'traced':>9}"
        )
        print("-" * 146)
        for broker in brokers:
            recs = results.get(("d", broker), [])
            vals = [r["kib_per_conn"] for r in recs if r.get("kib_per_conn") is not None]
            med = statistics.median(vals) if vals else None
            first = recs[0].get("kib_per_conn") if recs else None
            reached = [r.get("alive", 0) for r in recs]
            reach = f"{min(reached):,}/{opts['connections']:,}" if reached else "-"
            if reached and max(reached) != min(reached):
                reach = f"{min(reached):,}..{max(reached):,}/{opts['connections']:,}"
            rss = "-"
            with_rss = [r for r in recs if r.get("after_kib")]
            if with_rss:
                one = with_rss[0]
                rss = f"{one['before_kib'] / 1024:.0f} -> {one['after_kib'] / 1024:.0f} MB"
            rng = f"{min(vals):.2f}..{max(vals):.2f}" if vals else "-"
            heap = [r["traced_kib_per_conn"] for r in recs if "traced_kib_per_conn" in r]
            heap_text = _fmt_kib(statistics.median(heap)) if heap else "-"
            print(
                f"{'':<34} {broker:<10} {_fmt_kib(med):>9} {_fmt_kib(first):>9} {rng:>13} "
                f"{reach:>15} {rss:>20} {results.get(('d-limit', broker), '?'):>17} "
                f"{heap_text:>9}  ({len(vals)}/{repeat} ok)"
            )
        if "polymq" in brokers:
            recs = results.get(("d", "polymq"), [])
            reached = min((r.get("alive", 0) for r in recs), default=0)
            full = reached >= opts["connections"]
            why = "" if full else f" (only {reached:,} connections reached)"
            for key, what in (("traced_kib_per_conn", "traced heap"), ("kib_per_conn", "RSS")):
                vals = [r[key] for r in recs if r.get(key) is not None]
                if not vals:
                    print(f"{'':<34} goal: polymq <= {GOAL_KIB_PER_CONN:g} KiB ({what}): -")
                    continue
                med = statistics.median(vals)
                verdict = "met" if med <= GOAL_KIB_PER_CONN and full else "NOT met"
                print(
                    f"{'':<34} goal: polymq <= {GOAL_KIB_PER_CONN:g} KiB per idle connection "
                    f"({what}): {med:.2f} KiB -> {verdict}{why}"
                )
            areas = [r["traced_areas"] for r in recs if r.get("traced_areas")]
            if areas:
                print(f"{'':<34} polymq traced heap per connection by area (last trial):")
                for area, size in areas[-1].items():
                    if abs(size) >= 1:
                        print(f"{'':<36} {size:>8.0f} B  {area}")
            tops = [r["traced_top"] for r in recs if r.get("traced_top")]
            if tops and opts["trace_top"]:
                print(f"{'':<34} polymq traced heap per connection by line (last trial):")
                for where, size, count in tops[-1][: opts["trace_top"]]:
                    print(f"{'':<36} {size:>8.0f} B {count:>6.2f} blocks  {where}")


def _fmt_kib(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _summary(row: str, res: dict) -> str:
    if row == "d":
        if "held" not in res:
            return "ERROR"
        parts = [f"held {res['alive']:,}/{res['target']:,} in {res.get('open_s', 0):.1f} s"]
        if res.get("before_kib") and res.get("after_kib"):
            parts.append(f"RSS {res['before_kib'] / 1024:.1f} -> {res['after_kib'] / 1024:.1f} MB")
            if res.get("after_close_kib"):
                parts[-1] += f" (after close {res['after_close_kib'] / 1024:.1f} MB)"
        if res.get("kib_per_conn") is not None:
            parts.append(f"{res['kib_per_conn']:.2f} KiB/conn RSS")
        if res.get("traced_kib_per_conn") is not None:
            parts.append(f"{res['traced_kib_per_conn']:.2f} KiB/conn traced heap")
        if res.get("failures"):
            parts.append("failures: " + ", ".join(f"{v}x {k}" for k, v in res["failures"].items()))
        parts += res["notes"]
        if res["errors"]:
            parts.append("ERROR")
        return ", ".join(parts)
    pub = res.get("publisher") or {}
    subs = res.get("subscribers") or []
    parts = [f"sent {pub.get('sent', 0):,}"]
    if "publish_rate" in pub:
        parts.append(f"published {pub['publish_rate']:,.0f}/s")
    if "ingest_rate" in pub:
        parts.append(f"read by broker {pub['ingest_rate']:,.0f}/s")
    if "ack_rate" in pub:
        parts.append(f"acked {pub['ack_rate']:,.0f}/s")
    if subs:
        rec = _record(row, res)
        received = sum(s["received"] for s in subs)
        parts.append(f"received {received:,}")
        if rec["value"]:
            parts.append(f"{rec['value']:,.0f}/s")
        if len(subs) > 1:
            parts.append(f"lost/sub {[s['lost'] for s in subs]} dup/sub {[s['dup'] for s in subs]}")
        else:
            parts.append(f"lost {subs[0]['lost']} dup {subs[0]['dup']}")
        ranges = [r for sub in subs for r in sub.get("lost_ranges", [])][:4]
        if ranges:
            parts.append(f"missing seq {' '.join(ranges)}")
    if res["errors"]:
        parts.append("ERROR")
    return ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="publish time per trial")
    ap.add_argument("--repeat", type=int, default=3, help="trials per row and broker")
    ap.add_argument("--only", default="a,b,e,c,d", help="comma-separated rows (a,b,c,d,e)")
    ap.add_argument("--brokers", default=",".join(ALL_BROKERS))
    ap.add_argument("--mosquitto-port", type=int, default=1885)
    ap.add_argument("--rabbit-port", type=int, default=1884)
    ap.add_argument("--rabbit-user", default="guest")
    ap.add_argument("--rabbit-password", default="guest")
    ap.add_argument("--batch", type=int, default=200, help="raw PUBLISH packets per sendall")
    ap.add_argument("--window", type=int, default=1000, help="paho QoS 1 in-flight window (b)")
    ap.add_argument("--fanout", type=int, default=10, help="subscribers in row c")
    ap.add_argument(
        "--fanout-procs", type=int, default=os.cpu_count() or 2, help="processes for them"
    )
    ap.add_argument("--connections", type=int, default=10_000, help="idle connections (d)")
    ap.add_argument("--conn-workers", type=int, default=0, help="processes opening them (0: auto)")
    ap.add_argument("--conn-parallel", type=int, default=200, help="handshakes at a time")
    ap.add_argument("--conn-timeout", type=float, default=120.0, help="bound on opening them")
    ap.add_argument(
        "--fd-reserve", type=int, default=200, help="broker fds left spare when capping (d)"
    )
    ap.add_argument("--conn-settle", type=float, default=3.0, help="wait before reading RSS (d)")
    ap.add_argument(
        "--conn-keepalive", type=int, default=600, help="keep alive of the idle connections, s (d)"
    )
    ap.add_argument(
        "--trace-top", type=int, default=12, help="row d: polymq heap lines to print (0: none)"
    )
    ap.add_argument(
        "--no-trace",
        dest="trace",
        action="store_false",
        help="row d: skip the second polymq run under tracemalloc",
    )
    ap.add_argument("--settle", type=float, default=3.0, help="QoS 0: quiet time that ends a trial")
    ap.add_argument("--timeout", type=float, default=30.0, help="give up after N s of silence")
    ap.add_argument("--fsync", default="always", help="polymq --fsync policy")
    args = ap.parse_args()
    rows = [r for r in ROWS if r in {s.strip() for s in args.only.split(",")}]
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = [b for b in brokers if b not in ALL_BROKERS]
    if unknown or not rows:
        ap.error(f"unknown brokers {unknown}" if unknown else "no rows selected")
    opts = {
        k: getattr(args, k)
        for k in (
            "seconds",
            "repeat",
            "batch",
            "window",
            "fanout",
            "fanout_procs",
            "connections",
            "conn_workers",
            "conn_parallel",
            "conn_timeout",
            "conn_settle",
            "conn_keepalive",
            "trace",
            "trace_top",
            "fd_reserve",
            "settle",
            "timeout",
        )
    }
    raise_nofile()  # for the holders and for polymq, which inherits it
    cfgs: dict[str, dict[str, Any]] = {
        "mosquitto": {"port": args.mosquitto_port, "user": None, "password": None},
        "rabbitmq": {
            "port": args.rabbit_port,
            "user": args.rabbit_user,
            "password": args.rabbit_password,
        },
    }
    polymq = None
    notes: list[str] = []
    for broker in [b for b in brokers if b != "polymq"]:
        problem = _check_broker(cfgs[broker])
        if problem:
            print(f"{broker} on {HOST}:{cfgs[broker]['port']} unusable ({problem}); start it with")
            print("/work/shared/scripts/reference-brokers start")
            brokers.remove(broker)
            continue
        cfgs[broker]["pid"] = listener_pid(
            cfgs[broker]["port"], ("mosquitto",) if broker == "mosquitto" else ("beam.smp",)
        )
    cfgs["polymq"] = {"port": 0, "user": None, "password": None}
    if "polymq" in brokers and rows != ["d"]:
        polymq = start_polymq(args.fsync)
        cfgs["polymq"].update(port=polymq.port, pid=polymq.proc.pid)
    brokers = [b for b in ALL_BROKERS if b in brokers]
    ports = ", ".join(f"{b} :{cfgs[b]['port'] or 'fresh'}" for b in brokers)
    print(
        f"MQTT 3.1.1: {ports}; polymq --fsync {args.fsync}; {args.seconds:g} s per trial, "
        f"{args.repeat} trials per row and broker; {BODY_SIZE}-byte payloads; raw batches of "
        f"{args.batch}; paho window {args.window}; fan-out {args.fanout} subscribers in "
        f"{min(args.fanout, args.fanout_procs)} processes; {args.connections:,} idle "
        f"connections; {os.cpu_count()} CPUs"
    )
    results: dict[tuple[str, str], Any] = {}

    def trial(row: str, broker: str, rep: int) -> dict[str, Any]:
        if row != "d":
            return run_trial(row, broker, cfgs[broker], rep, opts)
        res = memory_trial(broker, cfgs[broker], args.fsync, opts, notes)
        results[("d-limit", broker)] = res.pop("limit", "?")
        return res

    rss, code = run_and_stop(
        polymq,
        lambda: run_rows(rows, args.repeat, brokers, polymq, notes, trial, _summary, results),
    )
    print_table(results, brokers, rows, opts)
    print()
    print("lost: published but never received (summed over subscribers); dup: received more than")
    print("once. QoS 0 rows may lose messages under overload. msgs/s: first to last message at the")
    print("subscriber (row c: all deliveries over the first-to-last span of all subscribers).")
    print("spread: half the min..max range over the median. pmq/x: polymq median / x median.")
    if "d" in rows:
        print(
            f"d: each connection is CONNECT (keep alive {args.conn_keepalive} s) and one QoS 0 "
            "SUBSCRIBE, then idle;"
        )
        print("RSS: (VmRSS holding the connections - VmRSS before) / connections still open after")
        print(f"{args.conn_settle:g} s idle; 'reached' is the smallest count over the trials.")
        print("traced: polymq only, a second fresh process under tracemalloc: (traced Python heap")
        print("with the connections - before) / connections, after a gc.")
    print_epilogue(polymq, rss, code, notes, warnings=True)


if __name__ == "__main__":
    main()
