"""Acknowledgement, flow control and transactions with stomp.py: ack modes auto, client
(cumulative) and client-individual, NACK, SUBSCRIBE's prefetch-count, BEGIN / COMMIT / ABORT.

Unacked messages go back to the queue when their session ends and are then delivered again
with ``redelivered:true``; each test ends a session and lets a second one see what is left,
closing with a marker message so that "nothing else is left" is checked without waiting.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.interop.stomp_helpers import Client, bodies, unique_name

NewClient = Callable[..., Client]


def connected(make: NewClient, version: str = "1.2") -> Client:
    client = make(version)
    client.connect()
    return client


def fill(client: Client, queue: str, count: int) -> list[bytes]:
    sent = [f"m{i}".encode() for i in range(count)]
    for body in sent:
        client.send(queue, body)
    return sent


def left_over(make: NewClient, queue: str) -> list[tuple[bytes, str]]:
    """What a new session finds on ``queue`` before a freshly sent marker."""
    client = connected(make)
    client.subscribe(queue)
    client.send(queue, b"marker")
    found: list[tuple[bytes, str]] = []
    while True:
        (msg,) = client.expect()
        if msg.body == b"marker":
            return found
        found.append((msg.body, msg.headers["redelivered"]))


def test_auto_ack_settles_on_delivery(stomp_client: NewClient) -> None:
    client = connected(stomp_client)
    queue = f"/queue/{unique_name('auto')}"
    client.subscribe(queue)
    fill(client, queue, 3)
    assert bodies(client.expect(3)) == [b"m0", b"m1", b"m2"]
    client.disconnect()
    assert left_over(stomp_client, queue) == []


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_client_ack_is_cumulative(stomp_client: NewClient, version: str) -> None:
    """``ack:client``: acking m1 acks m0 too; m2, not acked, comes back redelivered."""
    client = connected(stomp_client, version)
    queue = f"/queue/{unique_name('client')}"
    client.subscribe(queue, ack="client")
    fill(client, queue, 3)
    got = client.expect(3)
    client.ack(got[1])
    client.disconnect()
    assert left_over(stomp_client, queue) == [(b"m2", "true")]


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_client_individual_ack_settles_one(stomp_client: NewClient, version: str) -> None:
    """``ack:client-individual``: acking m1 settles only m1."""
    client = connected(stomp_client, version)
    queue = f"/queue/{unique_name('indiv')}"
    client.subscribe(queue, ack="client-individual")
    fill(client, queue, 3)
    got = client.expect(3)
    client.ack(got[1])
    client.disconnect()
    assert left_over(stomp_client, queue) == [(b"m0", "true"), (b"m2", "true")]


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_nack_requeues_and_redelivers(stomp_client: NewClient, version: str) -> None:
    """NACK puts the message back (RabbitMQ's default, ``requeue:true``): it is delivered again
    with ``redelivered:true``."""
    client = connected(stomp_client, version)
    queue = f"/queue/{unique_name('nack')}"
    client.subscribe(queue, ack="client-individual")
    client.send(queue, b"try-again")
    (first,) = client.expect()
    assert first.headers["redelivered"] == "false"
    client.nack(first)
    (second,) = client.expect()
    assert second.body == b"try-again"
    assert second.headers["redelivered"] == "true"
    client.ack(second)
    client.disconnect()
    assert left_over(stomp_client, queue) == []


def test_nack_with_requeue_false_discards(stomp_client: NewClient) -> None:
    """NACK with ``requeue:false`` drops the message (or dead-letters it) instead."""
    client = connected(stomp_client)
    queue = f"/queue/{unique_name('nackdrop')}"
    client.subscribe(queue, ack="client-individual")
    client.send(queue, b"drop-me")
    client.send(queue, b"keep-me")
    drop, keep = client.expect(2)
    client.nack(drop, requeue="false")
    client.disconnect()
    assert left_over(stomp_client, queue) == [(b"keep-me", "true")]


def test_prefetch_count_limits_unacked_deliveries(stomp_client: NewClient) -> None:
    client = connected(stomp_client)
    queue = f"/queue/{unique_name('prefetch')}"
    client.subscribe(queue, ack="client-individual", **{"prefetch-count": "2"})
    fill(client, queue, 5)
    first = client.expect(2)
    assert bodies(first) == [b"m0", b"m1"]
    client.expect_none(0.5)
    client.ack(first[0])
    assert bodies(client.expect()) == [b"m2"]
    client.expect_none(0.3)


def test_transaction_holds_sends_until_commit(stomp_client: NewClient) -> None:
    sender, receiver = connected(stomp_client), connected(stomp_client)
    queue = f"/queue/{unique_name('txsend')}"
    receiver.subscribe(queue)
    tx = sender.begin()
    sender.send(queue, b"tx-0", receipt=False, transaction=tx)
    sender.send(queue, b"tx-1", receipt=False, transaction=tx)
    sender.send(queue, b"outside")
    assert bodies(receiver.expect()) == [b"outside"]
    receiver.expect_none(0.3)
    sender.commit(tx)
    assert bodies(receiver.expect(2)) == [b"tx-0", b"tx-1"]


def test_abort_drops_transactional_sends(stomp_client: NewClient) -> None:
    sender, receiver = connected(stomp_client), connected(stomp_client)
    queue = f"/queue/{unique_name('txabort')}"
    receiver.subscribe(queue)
    tx = sender.begin()
    sender.send(queue, b"aborted", receipt=False, transaction=tx)
    sender.abort(tx)
    sender.send(queue, b"after")
    assert bodies(receiver.expect()) == [b"after"]
    receiver.expect_none(0.3)


def test_transactional_send_receipt_waits_for_commit(stomp_client: NewClient) -> None:
    """A SEND inside a transaction is held with its receipt: RabbitMQ sends that RECEIPT only
    when the transaction commits (right after COMMIT's own), and never after ABORT."""
    client = connected(stomp_client)
    queue = f"/queue/{unique_name('txreceipt')}"
    client.subscribe(queue)
    tx = client.begin()
    client.conn.send(queue, b"held", headers={"transaction": tx, "receipt": "held-send"})
    client.send(queue, b"outside")  # its RECEIPT comes; the held one has not
    assert bodies(client.expect()) == [b"outside"]
    assert "held-send" not in client.rec.receipts
    client.commit(tx)
    client.wait_receipt("held-send")
    assert bodies(client.expect()) == [b"held"]

    tx = client.begin()
    client.conn.send(queue, b"dropped", headers={"transaction": tx, "receipt": "dropped-send"})
    client.abort(tx)
    client.send(queue, b"after-abort")
    assert bodies(client.expect()) == [b"after-abort"]
    assert "dropped-send" not in client.rec.receipts


@pytest.mark.parametrize("outcome", ["commit", "abort"])
def test_transactional_ack(stomp_client: NewClient, outcome: str) -> None:
    """An ACK inside a transaction settles at COMMIT; ABORT forgets it, so the message is still
    unacked and comes back when the session ends."""
    client = connected(stomp_client)
    queue = f"/queue/{unique_name('txack')}"
    client.subscribe(queue, ack="client-individual")
    client.send(queue, b"acked-in-tx")
    (msg,) = client.expect()
    tx = client.begin()
    client.ack(msg, transaction=tx)
    if outcome == "commit":
        client.commit(tx)
    else:
        client.abort(tx)
    client.disconnect()
    expected = [] if outcome == "commit" else [(b"acked-in-tx", "true")]
    assert left_over(stomp_client, queue) == expected
