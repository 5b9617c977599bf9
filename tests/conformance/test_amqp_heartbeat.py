"""AMQP 0-9-1 heartbeats (4.2.7): a peer that hears nothing for about two heartbeat intervals
considers the connection dead; a peer that keeps sending heartbeats stays connected."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.conformance.amqp_wire import (
    CHANNEL_OPEN_OK,
    FRAME_HEARTBEAT,
    Closed,
    RawClient,
    channel_open,
    heartbeat,
)

Raw = Callable[..., RawClient]


def test_4_2_7_silent_client_is_dropped_after_missed_heartbeats(raw: Raw) -> None:
    client = raw(timeout=10)
    agreed = client.open(heartbeat_s=1)
    assert agreed.heartbeat == 1
    started = time.monotonic()
    kinds: list[int] = []
    try:
        while True:
            kinds.append(client.read_frame(timeout=10, skip_heartbeats=False).kind)
    except Closed:
        pass
    elapsed = time.monotonic() - started
    # RabbitMQ drops the socket (no connection.close) after about 3 s of silence at 1 s
    assert 1.5 <= elapsed <= 5, elapsed
    # the broker kept sending its own heartbeats meanwhile, and nothing else
    assert kinds and set(kinds) == {FRAME_HEARTBEAT}


def test_4_2_7_client_sending_heartbeats_stays_connected(raw: Raw) -> None:
    client = raw(timeout=10)
    client.open(heartbeat_s=1)
    heard = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        client.send(heartbeat())
        try:
            got = client.read_frame(timeout=0.5, skip_heartbeats=False)
            assert got.kind == FRAME_HEARTBEAT and got.channel == 0, got
            heard += 1
        except TimeoutError:
            pass
    assert heard >= 3  # the broker heartbeats too, at least once per interval
    client.send(channel_open(1))
    client.expect(CHANNEL_OPEN_OK)


def test_4_2_7_any_traffic_counts_as_a_heartbeat(raw: Raw) -> None:
    client = raw(timeout=10)
    client.open(heartbeat_s=1)
    deadline = time.monotonic() + 4
    channel = 0
    while time.monotonic() < deadline:
        channel += 1
        client.send(channel_open(channel))
        while client.read_frame(timeout=5).ids != CHANNEL_OPEN_OK:
            pass
        time.sleep(0.4)
    client.send(channel_open(channel + 1))
    client.expect(CHANNEL_OPEN_OK)


def test_4_2_7_heartbeat_zero_means_no_heartbeats(raw: Raw) -> None:
    client = raw(timeout=10)
    client.open(heartbeat_s=0)
    try:
        got = client.read_frame(timeout=3, skip_heartbeats=False)
    except TimeoutError:
        pass
    else:
        raise AssertionError(f"unexpected frame with heartbeats off: {got}")
    client.send(channel_open(1))
    client.expect(CHANNEL_OPEN_OK)
