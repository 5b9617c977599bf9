"""AMQP brokers for the interop and conformance suites, as plain synchronous objects.

By default a test gets a real ``polymq serve`` process on free ports: the fixture reads the
process's JSON log lines (one object per line on stderr) until the AMQP listener reports its
port and the node reports ``started``; it never sleeps for readiness. A background thread keeps
draining stderr so the pipe never fills.

With ``POLYMQ_TEST_AMQP_URL`` set (for example ``amqp://guest:guest@127.0.0.1:5673/``, the
reference RabbitMQ of ``scripts/reference-brokers``) the same tests run against that broker
instead. Tests that must kill or restart the broker ask for ``require_polymq()`` and are skipped
there, with the reason, and only there.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
URL_ENV = "POLYMQ_TEST_AMQP_URL"
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0


def unique(prefix: str) -> str:
    """A name no other test (or earlier run against a shared broker) has used."""
    return f"polymq-test.{prefix}.{uuid.uuid4().hex[:10]}"


class PolymqProcess:
    """One ``polymq serve`` process over a data directory that outlives restarts."""

    is_polymq = True

    def __init__(self, data_dir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.host = "127.0.0.1"
        self.amqp_port = 0
        self.admin_port = 0
        self.lines: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._records: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader: threading.Thread | None = None

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._records = queue.Queue()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broker",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--host",
                self.host,
                "--amqp-port",
                "0",
                "--admin-port",
                "0",
                "--mqtt-port",
                "off",
                "--stomp-port",
                "off",
                "--http-port",
                "off",
                "--fsync",
                "always",
                *self.extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        self._reader = threading.Thread(
            target=self._drain, args=(self.proc, self._records), daemon=True
        )
        self._reader.start()
        try:
            amqp = self.wait_event(
                lambda r: r.get("event") == "listening" and r.get("listener") == "amqp",
                what="the amqp listener's port",
            )
            self.amqp_port = int(amqp["port"])
            self.wait_event(lambda r: r.get("event") == "started", what="'started'")
            admin = [r for r in self.lines if r.get("listener") == "admin" and "port" in r]
            self.admin_port = int(admin[-1]["port"]) if admin else 0
        except BaseException:
            self.kill9()
            raise

    def _drain(
        self, proc: subprocess.Popen[bytes], out: queue.Queue[dict[str, Any] | None]
    ) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                record = json.loads(text)
                if not isinstance(record, dict):
                    raise ValueError
            except ValueError:
                record = {"event": None, "raw": text}
            self.lines.append(record)
            out.put(record)
        out.put(None)

    def wait_event(
        self, match: Callable[[dict[str, Any]], bool], what: str, timeout: float = READY_TIMEOUT_S
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"polymq did not log {what} within {timeout} s: {self.lines}")
            try:
                record = self._records.get(timeout=left)
            except queue.Empty:
                continue
            if record is None:
                raise AssertionError(f"polymq exited before logging {what}: {self.lines}")
            if (
                record.get("event") == "listener not available in this version"
                and record.get("listener") == "amqp"
            ):
                raise AssertionError("this polymq build does not serve AMQP yet")
            if match(record):
                return record

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if the process has not exited after STOP_TIMEOUT_S."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        self._join()

    def kill9(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)
        self._join()

    def restart(self) -> None:
        """Start again over the same data directory; the port is read from the new log."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self.start()

    def _join(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    # addresses -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.amqp_port}/"

    def require_polymq(self) -> None:
        pass


class ExternalBroker:
    """A broker someone else runs (``POLYMQ_TEST_AMQP_URL``): it cannot be killed from here."""

    is_polymq = False

    def __init__(self, url: str) -> None:
        self.url = url if url.endswith("/") else url + "/"
        parts = urlsplit(self.url)
        self.host = parts.hostname or "127.0.0.1"
        self.amqp_port = parts.port or 5672
        self.data_dir: Path | None = None
        self.lines: list[dict[str, Any]] = []

    def require_polymq(self) -> None:
        pytest.skip(f"kills and restarts the broker: runs only against polymq, not {URL_ENV}")

    def kill9(self) -> None:
        raise AssertionError("cannot kill an external broker")

    def restart(self) -> None:
        raise AssertionError("cannot restart an external broker")

    def stop(self) -> None:
        pass


AmqpBroker = PolymqProcess | ExternalBroker


def open_broker(tmp: Path) -> AmqpBroker:
    """The broker under test: ``POLYMQ_TEST_AMQP_URL`` if set, else a fresh polymq process."""
    url = os.environ.get(URL_ENV)
    if url:
        return ExternalBroker(url)
    broker = PolymqProcess(tmp / "data")
    broker.start()
    return broker


def own_polymq(tmp: Path) -> PolymqProcess:
    """A polymq process of the test's own, for tests that kill it (skips under the URL)."""
    url = os.environ.get(URL_ENV)
    if url:
        ExternalBroker(url).require_polymq()
    broker = PolymqProcess(tmp / "data")
    broker.start()
    return broker
