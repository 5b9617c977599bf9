"""Fixtures for the interop suites: the broker under test (see ``tests/polymq_process.py``),
pika connections that are always closed, and for MQTT paho clients that are always
disconnected (see ``tests/interop/mqtt_helpers.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.interop.mqtt_helpers import V5, probe_features
from tests.interop.mqtt_helpers import Client as MqttClient
from tests.interop.stomp_helpers import Client as StompClient
from tests.polymq_process import (
    AmqpBroker,
    CrossBroker,
    ExternalMqttBroker,
    ExternalPair,
    MqttBroker,
    PolymqProcess,
    StompBroker,
    open_broker,
    open_cross_broker,
    open_mqtt_broker,
    open_stomp_broker,
    own_mqtt_polymq,
    own_polymq,
    own_stomp_polymq,
)


@pytest.fixture(scope="module")
def amqp_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AmqpBroker]:
    """Shared by a module's tests; every test uses its own uniquely named queues/exchanges."""
    broker = open_broker(tmp_path_factory.mktemp("polymq"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def polymq(tmp_path: Path) -> Iterator[PolymqProcess]:
    """A polymq process of the test's own, to kill and restart (skipped under the URL)."""
    broker = own_polymq(tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def connect(amqp_broker: AmqpBroker) -> Iterator[Callable[..., pika.BlockingConnection]]:
    """``connect()`` opens a pika BlockingConnection to the broker under test."""
    opened: list[pika.BlockingConnection] = []

    def open_one(url: str | None = None, **params: object) -> pika.BlockingConnection:
        parameters = pika.URLParameters(url or amqp_broker.url)
        parameters.socket_timeout = 10
        parameters.blocked_connection_timeout = 30
        for key, value in params.items():
            setattr(parameters, key, value)
        conn = pika.BlockingConnection(parameters)
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        if conn.is_open:
            try:
                conn.close()
            except Exception:
                pass


# --- MQTT -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MqttBroker]:
    """The MQTT broker under test, shared by a module's tests (unique topics and client ids)."""
    broker = open_mqtt_broker(tmp_path_factory.mktemp("polymq-mqtt"))
    if isinstance(broker, ExternalMqttBroker):
        broker.features = probe_features(broker)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mqtt_polymq(tmp_path: Path) -> Iterator[PolymqProcess]:
    """A polymq MQTT process of the test's own, to kill and restart (skipped under the URL)."""
    broker = own_mqtt_polymq(tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def cross_broker(tmp_path: Path) -> Iterator[CrossBroker]:
    """One broker serving AMQP and MQTT (see ``open_cross_broker``)."""
    broker = open_cross_broker(tmp_path)
    if isinstance(broker, ExternalPair):
        broker.features = probe_features(broker)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mqtt_client(mqtt_broker: MqttBroker) -> Iterator[Callable[..., MqttClient]]:
    """``mqtt_client(client_id, version, clean=...)``: a paho client (not yet connected) that is
    disconnected at teardown; persistent sessions it left behind are cleaned away."""
    with mqtt_clients(mqtt_broker) as make:
        yield make


@contextmanager
def mqtt_clients(broker: Any) -> Iterator[Callable[..., MqttClient]]:
    opened: list[MqttClient] = []

    def make(client_id: str = "", version: int = V5, **kwargs: Any) -> MqttClient:
        if version == V5 and not broker.is_polymq:
            broker.require("v5")  # skips against a reference without MQTT 5
        client = MqttClient(broker, client_id, version, **kwargs)
        opened.append(client)
        return client

    yield make
    leftover = {(c.client_id, c.version) for c in opened if not c.clean and c.client_id}
    for client in opened:
        try:
            client.disconnect()
        except Exception:
            pass
    for client_id, version in leftover:
        sweeper = MqttClient(broker, client_id, version, clean=True)
        try:
            sweeper.connect(session_expiry=0 if version == V5 else None)
            sweeper.disconnect()
        except Exception:
            sweeper.stop()


# --- STOMP ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stomp_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StompBroker]:
    """The STOMP broker under test (``POLYMQ_TEST_STOMP_URL`` or a polymq process serving STOMP
    and AMQP), shared by a module's tests; every test uses its own destinations."""
    broker = open_stomp_broker(tmp_path_factory.mktemp("polymq-stomp"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def stomp_polymq(tmp_path: Path) -> Iterator[PolymqProcess]:
    """A polymq STOMP + AMQP process of the test's own, to kill and restart (skipped under
    ``POLYMQ_TEST_STOMP_URL``)."""
    broker = own_stomp_polymq(tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def stomp_client(stomp_broker: StompBroker) -> Iterator[Callable[..., StompClient]]:
    """``stomp_client(version="1.2", heartbeats=(0, 0))``: a stomp.py client (not yet
    connected) that is disconnected at teardown."""
    with stomp_clients(stomp_broker) as make:
        yield make


@contextmanager
def stomp_clients(broker: Any) -> Iterator[Callable[..., StompClient]]:
    opened: list[StompClient] = []

    def make(version: str = "1.2", **kwargs: Any) -> StompClient:
        client = StompClient(broker, version, **kwargs)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.disconnect()
