"""`polymq serve` as a real process: ports reported in the log, clean shutdown on SIGTERM and
Ctrl-C, and one-line errors that change no data for bad configuration, ports in use, corrupt or
unwritable data directories."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from broker import __version__
from broker.api import Broker
from broker.config import Config
from broker.node import Node

PY = sys.executable
OFF = ["--amqp-port", "off", "--mqtt-port", "off", "--stomp-port", "off", "--http-port", "off"]


class Server:
    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self._buf = b""

    async def next_line(self) -> dict[str, Any] | None:
        assert self.proc.stderr is not None
        while b"\n" not in self._buf:
            chunk = await self.proc.stderr.receive_some(65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        record: dict[str, Any] = json.loads(line)
        self.lines.append(record)
        return record

    async def wait_event(self, event: str, timeout: float = 20.0) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                record = await self.next_line()
                if record is None:
                    raise AssertionError(f"server exited before {event!r}: {self.lines}")
                if record["event"] == event:
                    return record

    async def drain(self) -> None:
        while await self.next_line() is not None:
            pass


@asynccontextmanager
async def server(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Server]:
    proc = await trio.lowlevel.open_process(
        [PY, "-m", "broker", "serve", *args],
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        yield Server(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.fail_after(10):
            await proc.wait()


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(
                f"GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def tree_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "broker", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


async def test_serve_reports_ports_serves_admin_and_stops_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ports = ["--admin-port", "0", "--amqp-port", "0", "--http-port", "0", "--mqtt-port", "off"]
    ports += ["--stomp-port", "off", "--host", "127.0.0.1"]
    async with server("--data-dir", str(data), *ports) as srv:
        # the first log lines name each bound port
        records = [await srv.wait_event("listening") for _ in range(3)]
        listening = {r["listener"]: r["port"] for r in records}
        assert set(listening) == {"admin", "amqp", "http"} and all(listening.values())
        assert all("event" in line and "ts" in line for line in srv.lines)
        await srv.wait_event("started")
        status, _ = await http_get(listening["http"], "/")
        assert status == 200
        admin = listening["admin"]
        status, body = await http_get(admin, "/api/health")
        assert status == 200 and json.loads(body) == {"status": "ok"}
        status, body = await http_get(admin, "/api/queues")
        assert status == 200 and json.loads(body) == []
        status, body = await http_get(admin, "/metrics")
        assert status == 200 and b"polymq_applied_index" in body
        status, _ = await http_get(admin, "/nope")
        assert status == 404
        srv.proc.send_signal(signal.SIGTERM)
        await srv.wait_event("stopped")
        with trio.fail_after(10):
            assert await srv.proc.wait() == 0
    assert (data / "log").is_dir()


async def test_ctrl_c_stops_cleanly_and_env_configures(tmp_path: Path) -> None:
    env = {"POLYMQ_DATA_DIR": str(tmp_path / "d"), "POLYMQ_ADMIN_PORT": "0"}
    env["POLYMQ_FSYNC"] = "never"
    for key in ("AMQP", "MQTT", "STOMP", "HTTP"):
        env[f"POLYMQ_{key}_PORT"] = "off"
    async with server(env=env) as srv:
        await srv.wait_event("started")
        assert sum(1 for line in srv.lines if line["event"] == "listener disabled") == 4
        srv.proc.send_signal(signal.SIGINT)
        await srv.wait_event("stopped")
        with trio.fail_after(10):
            assert await srv.proc.wait() == 0
    assert (tmp_path / "d" / "log").is_dir()


def test_version() -> None:
    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"polymq {__version__}"


def test_unknown_config_key_is_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "polymq.toml"
    cfg.write_text('data_dir = "x"\nfrobnicate = 3\n')
    out = run_cli("serve", "--config", str(cfg))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown config key 'frobnicate'" in lines[0]
    assert not (tmp_path / "x").exists()


def test_bad_values_are_one_line_errors(tmp_path: Path) -> None:
    for args, needle in [
        (["--amqp-port", "70000"], "out of range"),
        (["--admin-port", "abc"], "expected a port number"),
    ]:
        out = run_cli("serve", "--data-dir", str(tmp_path / "d"), *args)
        assert out.returncode == 2, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and needle in out.stderr
    out = run_cli("serve", env={"POLYMQ_NO_SUCH_THING": "1"})
    assert out.returncode == 2 and "unknown config key 'no_such_thing'" in out.stderr


async def make_data(data_dir: Path, n: int = 40) -> None:
    node = Node(Config(data_dir=str(data_dir), segment_bytes_max=2048))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        broker = Broker(node)
        await broker.declare_queue("q", durable=True)
        for i in range(n):
            await broker.publish("", [("q", {"delivery_mode": 2}, b"payload-%03d" % i)])
        node.stop()
        await node.wait_stopped()


async def test_port_in_use_fails_and_changes_no_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await make_data(data)
    before = tree_digest(data)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_cli(
            "serve", "--data-dir", str(data), "--host", "127.0.0.1", "--admin-port", str(port), *OFF
        )
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.startswith("polymq: error")]
    assert len(lines) == 1 and "address already in use" in lines[0] and str(port) in lines[0]
    assert tree_digest(data) == before


async def test_corrupt_log_fails_with_file_and_offset_and_changes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await make_data(data)
    segments = sorted((data / "log").glob("*.log"))
    assert len(segments) >= 2
    victim = segments[0]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    victim.write_bytes(bytes(raw))
    before = tree_digest(data)
    out = run_cli("serve", "--data-dir", str(data), "--admin-port", "0", *OFF)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("polymq: error")]
    assert len(errors) == 1
    assert victim.name in errors[0] and "offset" in errors[0]
    assert tree_digest(data) == before


@pytest.mark.parametrize("kind", ["under-a-file", "proc"])
def test_unwritable_data_dir_is_one_line_error(tmp_path: Path, kind: str) -> None:
    if kind == "under-a-file":
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        target = str(blocker / "data")
    else:
        target = "/proc/polymq-cannot-write-here"
    out = run_cli("serve", "--data-dir", target, "--admin-port", "0", *OFF)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("polymq: error")]
    assert len(errors) == 1 and target in errors[0]
