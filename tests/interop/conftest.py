"""Fixtures for the AMQP interop suite: the broker under test (see ``tests/polymq_process.py``)
and pika connections that are always closed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest

from tests.polymq_process import AmqpBroker, PolymqProcess, open_broker, own_polymq


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
