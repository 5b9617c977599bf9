"""STOMP destinations with stomp.py, the way RabbitMQ's STOMP plugin maps them onto queues and
exchanges (DESIGN.md section 3): ``/queue/<name>`` a shared queue, ``/topic/<key>`` a queue of
each subscriber's own bound to ``amq.topic``, ``/exchange/<name>/<pattern>``,
``/amq/queue/<name>`` (an existing queue), ``/temp-queue/<name>`` with reply-to rewriting, and
durable topic subscriptions.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.interop.stomp_helpers import VERSIONS, Client, bodies, unique_name

NewClient = Callable[..., Client]


def connected(make: NewClient, version: str = "1.2") -> Client:
    client = make(version)
    client.connect()
    return client


def test_queue_competing_consumers_split_messages(stomp_client: NewClient) -> None:
    """Two subscribers of one ``/queue/``: each message goes to exactly one of them, and both
    get some (RabbitMQ round-robins)."""
    a, b, sender = (connected(stomp_client) for _ in range(3))
    queue = f"/queue/{unique_name('shared')}"
    a.subscribe(queue, ack="client-individual", **{"prefetch-count": "1"})
    b.subscribe(queue, ack="client-individual", **{"prefetch-count": "1"})
    sent = [f"m{i}".encode() for i in range(10)]
    for body in sent:
        sender.send(queue, body)
    got: dict[str, list[bytes]] = {"a": [], "b": []}
    while len(got["a"]) + len(got["b"]) < len(sent):
        for name, client in (("a", a), ("b", b)):
            if len(client.rec.messages) > client.seen:
                (msg,) = client.expect()
                got[name].append(msg.body)
                client.ack(msg)
        if len(got["a"]) + len(got["b"]) < len(sent):
            a.rec.wait_for(
                lambda: len(a.rec.messages) > a.seen or len(b.rec.messages) > b.seen,
                "the next message on either subscriber",
            )
    assert sorted(got["a"] + got["b"]) == sorted(sent)
    assert got["a"] and got["b"], got


@pytest.mark.parametrize("version", VERSIONS)
def test_topic_fans_out_to_every_subscriber(stomp_client: NewClient, version: str) -> None:
    a, b = connected(stomp_client, version), connected(stomp_client, version)
    topic = f"/topic/{unique_name('fan')}"
    a.subscribe(topic)
    b.subscribe(topic)
    a.send(topic, b"to-all")
    assert bodies(a.expect()) == [b"to-all"]
    assert bodies(b.expect()) == [b"to-all"]


def test_topic_wildcards_are_amqp_topic_patterns(stomp_client: NewClient) -> None:
    """``*`` matches one word of the routing key and ``#`` any number."""
    star, hash_, sender = (connected(stomp_client) for _ in range(3))
    word = unique_name("wild")
    star.subscribe(f"/topic/{word}.*")
    hash_.subscribe(f"/topic/{word}.#")
    for key in (f"{word}.a", f"{word}.a.b", f"{word}x.a"):
        sender.send(f"/topic/{key}", key.encode())
    sender.send(f"/topic/{word}.end", b"end")
    assert bodies(star.expect(2)) == [f"{word}.a".encode(), b"end"]
    assert bodies(hash_.expect(3)) == [f"{word}.a".encode(), f"{word}.a.b".encode(), b"end"]


def test_topic_message_before_subscribe_is_not_kept(stomp_client: NewClient) -> None:
    """A topic has no queue until someone subscribes: earlier messages are dropped."""
    client = connected(stomp_client)
    topic = f"/topic/{unique_name('late')}"
    client.send(topic, b"nobody-listening")
    client.subscribe(topic)
    client.send(topic, b"after")
    assert bodies(client.expect()) == [b"after"]
    client.expect_none(0.2)


def test_exchange_destination_with_pattern(stomp_client: NewClient) -> None:
    """``/exchange/amq.topic/<pattern>`` subscribes with a binding pattern; SEND to
    ``/exchange/amq.topic/<key>`` publishes with that routing key; ``/topic/`` shares the
    exchange. ``/exchange/amq.direct/<key>`` matches exactly."""
    sub, sender = connected(stomp_client), connected(stomp_client)
    word = unique_name("exch")
    sub.subscribe(f"/exchange/amq.topic/{word}.*")
    sender.send(f"/exchange/amq.topic/{word}.one", b"via-exchange")
    sender.send(f"/topic/{word}.two", b"via-topic")
    sender.send(f"/exchange/amq.topic/{word}.no.match", b"nope")
    sender.send(f"/exchange/amq.topic/{word}.three", b"last")
    assert bodies(sub.expect(3)) == [b"via-exchange", b"via-topic", b"last"]

    sub.subscribe(f"/exchange/amq.direct/{word}")
    sender.send(f"/exchange/amq.direct/{word}x", b"other-key")
    sender.send(f"/exchange/amq.direct/{word}", b"direct")
    assert bodies(sub.expect()) == [b"direct"]


def test_missing_exchange_is_not_found(stomp_client: NewClient) -> None:
    client = connected(stomp_client)
    client.subscribe(f"/exchange/{unique_name('noexch')}/key", receipt=False)
    error = client.expect_error()
    assert error.headers["message"] == "not_found", error.headers


def test_amq_queue_uses_an_existing_queue(stomp_client: NewClient) -> None:
    """``/queue/<name>`` declares the queue named ``<name>``; ``/amq/queue/<name>`` then reaches
    the same queue without declaring it, for SEND and SUBSCRIBE alike."""
    client = connected(stomp_client)
    name = unique_name("amqq")
    sub = client.subscribe(f"/queue/{name}")
    client.unsubscribe(sub)
    client.send(f"/amq/queue/{name}", b"via-amq")
    client.send(f"/queue/{name}", b"via-queue")
    client.subscribe(f"/amq/queue/{name}")
    assert bodies(client.expect(2)) == [b"via-amq", b"via-queue"]


def test_temp_queue_reply_to_is_rewritten_and_reply_reaches_sender(
    stomp_client: NewClient,
) -> None:
    """SEND with ``reply-to:/temp-queue/<x>``: the broker makes a reply queue the sender is
    subscribed to and rewrites reply-to to name it (RabbitMQ: ``/reply-queue/amq.gen-...``). A
    reply sent there reaches the sender with ``subscription:/temp-queue/<x>``."""
    requester, server = connected(stomp_client), connected(stomp_client)
    service = f"/queue/{unique_name('rpc')}"
    server.subscribe(service)
    requester.send(service, b"question", **{"reply-to": "/temp-queue/answers"})
    (request,) = server.expect()
    reply_to = request.headers["reply-to"]
    assert reply_to != "/temp-queue/answers"
    assert reply_to.startswith("/reply-queue/"), reply_to
    server.send(reply_to, b"answer", **{"correlation-id": "c-1"})
    (reply,) = requester.expect()
    assert reply.body == b"answer"
    assert reply.headers["subscription"] == "/temp-queue/answers", reply.headers
    assert reply.headers["correlation-id"] == "c-1"

    # The same temp queue serves the next request: still one reply queue per name.
    requester.send(service, b"again", **{"reply-to": "/temp-queue/answers"})
    (second,) = server.expect()
    assert second.headers["reply-to"] == reply_to


def test_durable_topic_subscription_keeps_messages_while_away(stomp_client: NewClient) -> None:
    """SUBSCRIBE ``/topic/<key>`` with ``persistent:true``, ``auto-delete:false`` and an id
    (RabbitMQ 3.10 needs both headers): after DISCONNECT, messages sent meanwhile arrive on
    resubscribing with the same id. UNSUBSCRIBE with ``persistent:true`` removes it."""
    topic = f"/topic/{unique_name('durable')}"
    sub_id = unique_name("dsub")
    durable = {"persistent": "true", "auto-delete": "false"}
    first = connected(stomp_client)
    first.subscribe(topic, sub_id=sub_id, **durable)
    first.send(topic, b"while-here")
    assert bodies(first.expect()) == [b"while-here"]
    first.disconnect()

    sender = connected(stomp_client)
    for body in (b"away-0", b"away-1"):
        sender.send(topic, body, persistent="true")

    again = connected(stomp_client)
    again.subscribe(topic, sub_id=sub_id, **durable)
    got = again.expect(2)
    assert bodies(got) == [b"away-0", b"away-1"]
    assert all(m.headers["subscription"] == sub_id for m in got)
    again.unsubscribe(sub_id, persistent="true")
    again.disconnect()

    sender.send(topic, b"after-unsubscribe")
    last = connected(stomp_client)
    last.subscribe(topic, sub_id=sub_id, **durable)
    sender.send(topic, b"fresh")
    assert bodies(last.expect()) == [b"fresh"]
    last.unsubscribe(sub_id, persistent="true")


def test_non_durable_topic_subscription_forgets(stomp_client: NewClient) -> None:
    topic = f"/topic/{unique_name('transient')}"
    first = connected(stomp_client)
    first.subscribe(topic, sub_id="same-id")
    first.disconnect()
    sender = connected(stomp_client)
    sender.send(topic, b"lost")
    again = connected(stomp_client)
    again.subscribe(topic, sub_id="same-id")
    sender.send(topic, b"kept")
    assert bodies(again.expect()) == [b"kept"]


@pytest.mark.parametrize("version", VERSIONS)
def test_custom_headers_round_trip(stomp_client: NewClient, version: str) -> None:
    client = connected(stomp_client, version)
    queue = f"/queue/{unique_name('hdr')}"
    client.subscribe(queue)
    body = bytes(range(256)) if version != "1.0" else b"text body"
    client.send(queue, body, **{"x-app": "polymq", "x-number": "42", "content-type": "app/bin"})
    (msg,) = client.expect()
    assert msg.body == body
    assert msg.headers["x-app"] == "polymq"
    assert msg.headers["x-number"] == "42"
    assert msg.headers["content-type"] == "app/bin"
