"""Bounded waits for pika BlockingConnection tests: nothing here blocks without a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel


@dataclass
class Got:
    method: Any
    properties: pika.BasicProperties
    body: bytes

    @property
    def tag(self) -> int:
        return int(self.method.delivery_tag)

    @property
    def redelivered(self) -> bool:
        return bool(self.method.redelivered)


def get_one(ch: BlockingChannel, queue: str, timeout: float = 5.0, auto_ack: bool = False) -> Got:
    """``basic.get`` until a message arrives; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=auto_ack)
        if method is not None:
            assert props is not None and body is not None
            return Got(method, props, body)
        if time.monotonic() > deadline:
            raise AssertionError(f"no message on {queue!r} within {timeout} s")
        ch.connection.process_data_events(time_limit=0.05)


def get_n(ch: BlockingChannel, queue: str, n: int, timeout: float = 10.0) -> list[Got]:
    deadline = time.monotonic() + timeout
    return [get_one(ch, queue, max(0.1, deadline - time.monotonic())) for _ in range(n)]


def assert_empty(ch: BlockingChannel, queue: str) -> None:
    method, _props, _body = ch.basic_get(queue, auto_ack=False)
    assert method is None, f"{queue!r} still holds a message"


def ready_count(ch: BlockingChannel, queue: str) -> int:
    return int(ch.queue_declare(queue, passive=True).method.message_count)


def wait_until(
    conn: pika.BlockingConnection, done: Callable[[], bool], timeout: float = 10.0, what: str = ""
) -> None:
    """Run the connection's I/O until ``done()`` holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or done}")
        conn.process_data_events(time_limit=0.05)


def settle_window(conn: pika.BlockingConnection, seconds: float = 0.5) -> None:
    """Let the broker deliver whatever it is going to deliver (for 'no more than N' checks)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        conn.process_data_events(time_limit=left)


def persistent(**kw: Any) -> pika.BasicProperties:
    return pika.BasicProperties(delivery_mode=2, **kw)
