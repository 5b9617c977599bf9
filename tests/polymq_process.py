"""Brokers for the interop and conformance suites, as plain synchronous objects.

By default a test gets a real ``polymq serve`` process on free ports: the fixture reads the
process's JSON log lines (one object per line on stderr) until every listener it asked for
(``listeners=("amqp",)`` by default; ``("mqtt",)`` or ``("amqp", "mqtt")`` for the MQTT suites)
reports its port and the node reports ``started``; it never sleeps for readiness. A background
thread keeps draining stderr so the pipe never fills.

With ``POLYMQ_TEST_AMQP_URL`` set (for example ``amqp://guest:guest@127.0.0.1:5673/``, the
reference RabbitMQ of ``scripts/reference-brokers``) the AMQP tests run against that broker
instead; with ``POLYMQ_TEST_MQTT_URL`` set (for example ``mqtt://127.0.0.1:1885``, the reference
Mosquitto) the MQTT tests do; with ``POLYMQ_TEST_SQS_URL`` set (for example
``http://127.0.0.1:5000``, a ``moto_server``) the SQS tests do. Tests that must kill or restart
the broker ask for ``require_polymq()`` and are skipped there, with the reason, and only there.
Tests that need a feature a reference lacks ask for ``require(feature)``: polymq has every
feature, so that never skips in the default run.
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
MQTT_URL_ENV = "POLYMQ_TEST_MQTT_URL"
STOMP_URL_ENV = "POLYMQ_TEST_STOMP_URL"
SQS_URL_ENV = "POLYMQ_TEST_SQS_URL"
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0


def unique(prefix: str) -> str:
    """A name no other test (or earlier run against a shared broker) has used."""
    return f"polymq-test.{prefix}.{uuid.uuid4().hex[:10]}"


def server_env() -> dict[str, str]:
    """The environment for a polymq child: without the suites' own ``POLYMQ_TEST_*`` variables,
    which polymq would read as (unknown) configuration keys and refuse to start."""
    return {k: v for k, v in os.environ.items() if not k.startswith("POLYMQ_TEST_")}


class PolymqProcess:
    """One ``polymq serve`` process over a data directory that outlives restarts."""

    is_polymq = True

    def __init__(
        self,
        data_dir: Path,
        extra_args: tuple[str, ...] = (),
        listeners: tuple[str, ...] = ("amqp",),
    ) -> None:
        assert listeners and set(listeners) <= {"amqp", "mqtt", "stomp", "http"}, listeners
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.listeners = listeners
        self.host = "127.0.0.1"
        self.amqp_port = 0
        self.mqtt_port = 0
        self.stomp_port = 0
        self.http_port = 0
        self.admin_port = 0
        self.lines: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._records: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader: threading.Thread | None = None

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._records = queue.Queue()
        first = len(self.lines)  # records of earlier runs (before a restart) do not count
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
                "0" if "amqp" in self.listeners else "off",
                "--admin-port",
                "0",
                "--mqtt-port",
                "0" if "mqtt" in self.listeners else "off",
                # MQTT over WebSocket follows "mqtt" with a fixed default port; off unless a
                # test asks for it in extra_args (the last flag wins)
                *(("--mqtt-ws-port", "off") if "mqtt" in self.listeners else ()),
                "--stomp-port",
                "0" if "stomp" in self.listeners else "off",
                # likewise STOMP over WebSocket follows "stomp"
                *(("--stomp-ws-port", "off") if "stomp" in self.listeners else ()),
                "--http-port",
                "0" if "http" in self.listeners else "off",
                "--fsync",
                "always",
                *self.extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=server_env(),
        )
        self._reader = threading.Thread(
            target=self._drain, args=(self.proc, self._records), daemon=True
        )
        self._reader.start()
        try:
            for name in self.listeners:
                record = self._listening(name, first)
                setattr(self, f"{name}_port", int(record["port"]))
            self.wait_event(lambda r: r.get("event") == "started", what="'started'")
            admin = [r for r in self.lines if r.get("listener") == "admin" and "port" in r]
            self.admin_port = int(admin[-1]["port"]) if admin else 0
        except BaseException:
            self.kill9()
            raise

    def _listening(self, name: str, first: int) -> dict[str, Any]:
        for record in self.lines[first:]:  # already read while waiting for another listener
            if record.get("event") == "listening" and record.get("listener") == name:
                return record
        return self.wait_event(
            lambda r: r.get("event") == "listening" and r.get("listener") == name,
            what=f"the {name} listener's port",
        )

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
                and record.get("listener") in self.listeners
            ):
                raise AssertionError(
                    f"this polymq build does not serve {record['listener'].upper()} yet"
                )
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

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{self.host}:{self.mqtt_port}"

    @property
    def http_url(self) -> str:
        """The AWS-compatible HTTP endpoint (SQS, SNS, EventBridge), with ``"http"`` listening."""
        return f"http://{self.host}:{self.http_port}"

    def require_polymq(self) -> None:
        pass

    def require(self, feature: str) -> None:
        """polymq has every feature the suites test."""

    def rss_bytes(self) -> int:
        """Resident set size of the server process, from /proc (Linux)."""
        assert self.proc is not None and self.proc.poll() is None
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")


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


class ExternalMqttBroker:
    """An MQTT broker someone else runs (``POLYMQ_TEST_MQTT_URL``, ``mqtt://host:port``).

    ``features`` names what it was found to support (the MQTT fixtures probe it once: "v5",
    "qos2", "shared", ...); ``require`` skips a test that needs anything else, naming it.
    """

    is_polymq = False

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.scheme in ("mqtt", "tcp", ""), f"{MQTT_URL_ENV} must be mqtt://host:port"
        self.mqtt_url = url
        self.host = parts.hostname or "127.0.0.1"
        self.mqtt_port = parts.port or 1883
        self.features: set[str] | None = None
        self.data_dir: Path | None = None
        self.lines: list[dict[str, Any]] = []

    def require_polymq(self) -> None:
        pytest.skip(f"kills and restarts the broker: runs only against polymq, not {MQTT_URL_ENV}")

    def require(self, feature: str) -> None:
        assert self.features is not None, "features not probed yet"
        if feature not in self.features:
            pytest.skip(f"the broker at {MQTT_URL_ENV}={self.mqtt_url} lacks {feature!r}")

    def kill9(self) -> None:
        raise AssertionError("cannot kill an external broker")

    def restart(self) -> None:
        raise AssertionError("cannot restart an external broker")

    def stop(self) -> None:
        pass


class ExternalPair:
    """One external broker serving both AMQP and MQTT (RabbitMQ with its MQTT plugin), named
    by ``POLYMQ_TEST_AMQP_URL`` and ``POLYMQ_TEST_MQTT_URL`` together."""

    is_polymq = False

    def __init__(self, amqp_url: str, mqtt_url: str) -> None:
        amqp = ExternalBroker(amqp_url)
        mqtt = ExternalMqttBroker(mqtt_url)
        self.url = amqp.url
        self.host = mqtt.host
        self.amqp_port = amqp.amqp_port
        self.mqtt_port = mqtt.mqtt_port
        self.mqtt_url = mqtt.mqtt_url
        self.features: set[str] | None = None

    def require_polymq(self) -> None:
        pytest.skip(f"runs only against polymq, not {URL_ENV} + {MQTT_URL_ENV}")

    def require(self, feature: str) -> None:
        assert self.features is not None, "features not probed yet"
        if feature not in self.features:
            pytest.skip(f"the broker at {MQTT_URL_ENV}={self.mqtt_url} lacks {feature!r}")

    def stop(self) -> None:
        pass


AmqpBroker = PolymqProcess | ExternalBroker
MqttBroker = PolymqProcess | ExternalMqttBroker
CrossBroker = PolymqProcess | ExternalPair


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


def open_mqtt_broker(tmp: Path) -> MqttBroker:
    """The MQTT broker under test: ``POLYMQ_TEST_MQTT_URL`` if set, else a fresh polymq process
    serving MQTT."""
    url = os.environ.get(MQTT_URL_ENV)
    if url:
        return ExternalMqttBroker(url)
    broker = PolymqProcess(tmp / "data", listeners=("mqtt",))
    broker.start()
    return broker


def own_mqtt_polymq(tmp: Path, extra_args: tuple[str, ...] = ()) -> PolymqProcess:
    """A polymq MQTT process of the test's own, for tests that kill it (skips under the URL)."""
    url = os.environ.get(MQTT_URL_ENV)
    if url:
        ExternalMqttBroker(url).require_polymq()
    broker = PolymqProcess(tmp / "data", extra_args=extra_args, listeners=("mqtt",))
    broker.start()
    return broker


def open_cross_broker(tmp: Path) -> CrossBroker:
    """AMQP and MQTT on one broker: both URLs set (RabbitMQ and its MQTT plugin), or a polymq
    process serving both. With only one of the two set the test is skipped: a lone reference
    cannot answer for the other protocol."""
    amqp_url, mqtt_url = os.environ.get(URL_ENV), os.environ.get(MQTT_URL_ENV)
    if amqp_url and mqtt_url:
        return ExternalPair(amqp_url, mqtt_url)
    if amqp_url or mqtt_url:
        pytest.skip(
            f"cross-protocol tests need both {URL_ENV} and {MQTT_URL_ENV} (one broker serving "
            "both), or neither (polymq)"
        )
    broker = PolymqProcess(tmp / "data", listeners=("amqp", "mqtt"))
    broker.start()
    return broker


# --- STOMP ------------------------------------------------------------------------------------


class ExternalStompBroker:
    """A STOMP broker someone else runs (``POLYMQ_TEST_STOMP_URL``, ``stomp://host:port``; the
    reference is RabbitMQ's STOMP plugin, guest/guest, vhost ``/``).

    With ``POLYMQ_TEST_AMQP_URL`` also set (the same RabbitMQ's AMQP port) the cross-protocol
    tests use it as ``url``; with ``POLYMQ_TEST_MQTT_URL`` set too (RabbitMQ's MQTT plugin) the
    STOMP <-> MQTT tests do. ``require("amqp")`` / ``require("mqtt")`` skip without them, and
    ``require("frame-limit")`` skips always: RabbitMQ 3.10's STOMP has no frame size limit.
    """

    is_polymq = False

    def __init__(self, url: str, amqp_url: str | None = None, mqtt_url: str | None = None) -> None:
        parts = urlsplit(url)
        assert parts.scheme in ("stomp", "tcp", ""), f"{STOMP_URL_ENV} must be stomp://host:port"
        self.stomp_url = url
        self.host = parts.hostname or "127.0.0.1"
        self.stomp_port = parts.port or 61613
        self.url = (amqp_url if amqp_url.endswith("/") else amqp_url + "/") if amqp_url else ""
        self.mqtt_url = mqtt_url or ""
        mqtt = urlsplit(self.mqtt_url)
        self.mqtt_port = mqtt.port or 1883
        self.features = {"amqp"} if amqp_url else set()
        if mqtt_url:
            self.features.add("mqtt")
        self.data_dir: Path | None = None
        self.lines: list[dict[str, Any]] = []

    def require_polymq(self) -> None:
        pytest.skip(f"kills and restarts the broker: runs only against polymq, not {STOMP_URL_ENV}")

    def require(self, feature: str) -> None:
        if feature not in self.features:
            why = {
                "amqp": f"needs {URL_ENV} (the same broker's AMQP port) as well",
                "mqtt": f"needs {MQTT_URL_ENV} (the same broker's MQTT port) as well",
                "frame-limit": "RabbitMQ's STOMP (3.10) has no frame size limit",
            }.get(feature, f"lacks {feature!r}")
            pytest.skip(f"the broker at {STOMP_URL_ENV}={self.stomp_url}: {why}")

    def kill9(self) -> None:
        raise AssertionError("cannot kill an external broker")

    def restart(self) -> None:
        raise AssertionError("cannot restart an external broker")

    def stop(self) -> None:
        pass


StompBroker = PolymqProcess | ExternalStompBroker
STOMP_LISTENERS = ("amqp", "stomp")


def open_stomp_broker(tmp: Path, listeners: tuple[str, ...] = STOMP_LISTENERS) -> StompBroker:
    """The STOMP broker under test: ``POLYMQ_TEST_STOMP_URL`` if set (with the AMQP and MQTT
    URLs of the same broker when those are set), else a fresh polymq process serving STOMP and
    AMQP (and MQTT when ``listeners`` asks for it)."""
    url = os.environ.get(STOMP_URL_ENV)
    if url:
        return ExternalStompBroker(url, os.environ.get(URL_ENV), os.environ.get(MQTT_URL_ENV))
    broker = PolymqProcess(tmp / "data", listeners=listeners)
    broker.start()
    return broker


def own_stomp_polymq(tmp: Path, listeners: tuple[str, ...] = STOMP_LISTENERS) -> PolymqProcess:
    """A polymq STOMP process of the test's own, for tests that kill it (skips under the URL)."""
    url = os.environ.get(STOMP_URL_ENV)
    if url:
        ExternalStompBroker(url).require_polymq()
    broker = PolymqProcess(tmp / "data", listeners=listeners)
    broker.start()
    return broker


# --- SQS (the AWS-compatible HTTP endpoint) ----------------------------------------------------


class ExternalSqsEndpoint:
    """An SQS endpoint someone else runs (``POLYMQ_TEST_SQS_URL``, ``http://host:port``; the
    reference is ``moto_server``). It has no AMQP side and cannot be killed from here:
    ``require_polymq()`` skips the tests that need either, naming the variable."""

    is_polymq = False

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https"), f"{SQS_URL_ENV} must be http://host:port"
        self.http_url = url.rstrip("/")
        self.host = parts.hostname or "127.0.0.1"
        self.http_port = parts.port or (443 if parts.scheme == "https" else 80)
        self.url = ""
        self.data_dir: Path | None = None
        self.lines: list[dict[str, Any]] = []

    def require_polymq(self) -> None:
        pytest.skip(f"runs only against polymq (AMQP side, kill/restart, flags), not {SQS_URL_ENV}")

    def require(self, feature: str) -> None:
        pytest.skip(f"the endpoint at {SQS_URL_ENV}={self.http_url} lacks {feature!r}")

    def kill9(self) -> None:
        raise AssertionError("cannot kill an external endpoint")

    def restart(self) -> None:
        raise AssertionError("cannot restart an external endpoint")

    def stop(self) -> None:
        pass


SqsBroker = PolymqProcess | ExternalSqsEndpoint
SQS_LISTENERS = ("http", "amqp")


def open_sqs_broker(tmp: Path) -> SqsBroker:
    """The SQS endpoint under test: ``POLYMQ_TEST_SQS_URL`` if set, else a fresh polymq process
    serving the AWS APIs and AMQP (so cross-protocol tests can use pika on the same queues)."""
    url = os.environ.get(SQS_URL_ENV)
    if url:
        return ExternalSqsEndpoint(url)
    broker = PolymqProcess(tmp / "data", listeners=SQS_LISTENERS)
    broker.start()
    return broker


def own_sqs_polymq(tmp: Path, extra_args: tuple[str, ...] = ()) -> PolymqProcess:
    """A polymq process serving the AWS APIs and AMQP of the test's own, for tests that kill it
    or start it with flags (skips under ``POLYMQ_TEST_SQS_URL``)."""
    url = os.environ.get(SQS_URL_ENV)
    if url:
        ExternalSqsEndpoint(url).require_polymq()
    broker = PolymqProcess(tmp / "data", extra_args=extra_args, listeners=SQS_LISTENERS)
    broker.start()
    return broker
