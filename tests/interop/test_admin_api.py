"""The management HTTP API against a real ``polymq serve``, driven by real clients (pika, paho,
stomp.py, plain HTTP): RabbitMQ's paths and field names, per-queue message stats, the
connection registry across protocols, publish/get for debugging, and RabbitMQ's errors."""

from __future__ import annotations

import base64
import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pika
import pytest

from tests.interop.mqtt_helpers import Client as MqttClient
from tests.interop.stomp_helpers import Client as StompClient
from tests.polymq_process import PolymqProcess, unique

# Sent with every request: the admin port may ask for a management user.
AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()
HTTP_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolymqProcess]:
    proc = PolymqProcess(
        tmp_path_factory.mktemp("admin"), listeners=("amqp", "mqtt", "stomp", "http")
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def call(broker: PolymqProcess, method: str, path: str, body: Any = None) -> tuple[int, str, Any]:
    conn = http.client.HTTPConnection(broker.host, broker.admin_port, timeout=HTTP_TIMEOUT_S)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"authorization": AUTH}
        if payload is not None:
            headers["content-type"] = "application/json"
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        ctype = resp.getheader("content-type") or ""
        value = json.loads(raw) if raw and ctype.startswith("application/json") else raw
        return resp.status, ctype, value
    finally:
        conn.close()


def get(broker: PolymqProcess, path: str) -> Any:
    status, _, value = call(broker, "GET", path)
    assert status == 200, (path, status, value)
    return value


@pytest.fixture
def amqp(broker: PolymqProcess) -> Iterator[pika.BlockingConnection]:
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        yield conn
    finally:
        if conn.is_open:
            conn.close()


def q_path(name: str) -> str:
    return "/api/queues/%2F/" + quote(name, safe="")


def test_queue_depth_and_message_stats(broker: PolymqProcess, amqp: Any) -> None:
    name = unique("stats")
    ch = amqp.channel()
    ch.queue_declare(name, durable=True)
    ch.confirm_delivery()
    for i in range(5):
        ch.basic_publish("", name, b"m%d" % i, pika.BasicProperties(delivery_mode=2))
    for _ in range(2):
        method, _, _ = ch.basic_get(name)
        assert method is not None
        ch.basic_ack(method.delivery_tag)
    held, _, _ = ch.basic_get(name)  # one delivered, not acknowledged
    assert held is not None

    q = get(broker, q_path(name))
    assert q["name"] == name and q["vhost"] == "/" and q["durable"] is True
    assert (q["messages"], q["messages_ready"], q["messages_unacknowledged"]) == (3, 2, 1)
    assert q["consumers"] == 0
    stats = q["message_stats"]
    assert (stats["publish"], stats["deliver_get"], stats["get"], stats["ack"]) == (5, 3, 3, 2)
    for key in ("publish", "deliver_get", "ack"):
        assert isinstance(stats[f"{key}_details"]["rate"], float)

    listed = {row["name"]: row for row in get(broker, "/api/queues")}
    assert listed[name]["messages_ready"] == 2
    assert name in {row["name"] for row in get(broker, "/api/queues/%2F")}
    ch.basic_ack(held.delivery_tag)


def test_consumer_deliveries_and_rejects_are_counted(broker: PolymqProcess, amqp: Any) -> None:
    name = unique("consume")
    ch = amqp.channel()
    ch.queue_declare(name)
    ch.confirm_delivery()
    for i in range(4):
        ch.basic_publish("", name, b"c%d" % i)
    tags = []
    for method, _, _ in ch.consume(name, inactivity_timeout=HTTP_TIMEOUT_S):
        assert method is not None, "no delivery within the timeout"
        tags.append(method.delivery_tag)
        if len(tags) == 4:
            break
    ch.basic_ack(tags[1], multiple=True)
    ch.basic_reject(tags[2], requeue=False)
    ch.basic_ack(tags[3])
    ch.cancel()
    ch.queue_declare(name, passive=True)  # a round trip: the settles above have been applied
    stats = get(broker, q_path(name))["message_stats"]
    assert (stats["publish"], stats["deliver"], stats["deliver_get"], stats["ack"]) == (4, 4, 4, 3)


def test_overview(broker: PolymqProcess, amqp: Any) -> None:
    amqp.channel().queue_declare(unique("overview"))
    ov = get(broker, "/api/overview")
    assert ov["product_name"] == "polymq" and ov["cluster_name"] == "polymq"
    assert ov["node"] == "polymq@localhost"
    assert {"publish", "deliver_get", "ack", "publish_details"} <= set(ov["message_stats"])
    assert {"messages", "messages_ready", "messages_unacknowledged"} <= set(ov["queue_totals"])
    totals = ov["object_totals"]
    assert totals["queues"] >= 1 and totals["connections"] >= 1 and totals["exchanges"] >= 7
    ports = {(ls["protocol"], ls["port"]) for ls in ov["listeners"]}
    assert ("amqp", broker.amqp_port) in ports and ("mqtt", broker.mqtt_port) in ports
    assert ("stomp", broker.stomp_port) in ports and ("http", broker.admin_port) in ports


def test_nodes_of_a_single_node(broker: PolymqProcess) -> None:
    (node,) = get(broker, "/api/nodes")
    assert node["name"] == "polymq@localhost" and node["running"] is True
    assert node["role"] == "single" and node["leader"] is True and node["lag"] == 0
    assert node["commit_index"] >= 1 and node["term"] == 1
    assert get(broker, "/api/nodes/polymq@localhost")["name"] == "polymq@localhost"
    assert call(broker, "GET", "/api/nodes/nobody")[0] == 404


def local_port(sock: socket.socket | None) -> int:
    assert sock is not None
    port: int = sock.getsockname()[1]
    return port


def test_connections_of_every_protocol(broker: PolymqProcess, amqp: Any) -> None:
    amqp.channel()
    amqp.channel()
    mqtt = MqttClient(broker, client_id=unique("mqtt").replace(".", "-"))
    mqtt.connect()
    stomp = StompClient(broker)
    stomp.connect()
    aws = http.client.HTTPConnection(broker.host, broker.http_port, timeout=HTTP_TIMEOUT_S)
    try:
        aws.request("GET", "/")
        aws.getresponse().read()
        aws_port = local_port(aws.sock)
        mqtt_port = local_port(mqtt.paho.socket())  # type: ignore[arg-type]

        rows = get(broker, "/api/connections")
        by_protocol: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_protocol.setdefault(row["protocol"], []).append(row)
        assert {"amqp", "mqtt", "stomp", "http"} <= set(by_protocol)
        for row in rows:
            assert row["peer_host"] == "127.0.0.1" and row["node"] == "polymq@localhost"
            assert isinstance(row["connected_at"], int) and row["state"] == "running"
            assert row["name"] == f"127.0.0.1:{row['peer_port']} -> 127.0.0.1:{row['port']}"
        amqp_rows = [r for r in by_protocol["amqp"] if r["channels"] == 2]
        assert amqp_rows and amqp_rows[0]["user"] == "guest" and amqp_rows[0]["vhost"] == "/"
        assert amqp_rows[0]["port"] == broker.amqp_port
        (mqtt_row,) = [r for r in by_protocol["mqtt"] if r["peer_port"] == mqtt_port]
        assert mqtt_row["client_id"] == mqtt.client_id and mqtt_row["channels"] == 1
        assert (mqtt_row["user"], mqtt_row["vhost"]) == ("guest", "/")
        assert by_protocol["stomp"][0]["port"] == broker.stomp_port
        assert (by_protocol["stomp"][0]["user"], by_protocol["stomp"][0]["vhost"]) == ("guest", "/")
        (aws_row,) = [r for r in by_protocol["http"] if r["peer_port"] == aws_port]
        assert aws_row["port"] == broker.http_port

        one = get(broker, "/api/connections/" + quote(aws_row["name"], safe=""))
        assert one["peer_port"] == aws_port and one["protocol"] == "http"
        ov = get(broker, "/api/overview")
        assert ov["connection_totals"]["mqtt"] >= 1 and ov["object_totals"]["channels"] >= 2
    finally:
        aws.close()
        mqtt.disconnect()
        stomp.disconnect()


def test_delete_closes_a_connection(broker: PolymqProcess) -> None:
    with socket.create_connection((broker.host, broker.stomp_port), timeout=HTTP_TIMEOUT_S) as s:
        s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\x00")
        assert s.recv(4096).startswith(b"CONNECTED")
        name = f"127.0.0.1:{s.getsockname()[1]} -> 127.0.0.1:{broker.stomp_port}"
        path = "/api/connections/" + quote(name, safe="")
        assert get(broker, path)["protocol"] == "stomp"
        status, _, _ = call(broker, "DELETE", path)
        assert status == 204
        assert s.recv(4096) == b""  # closed by the broker (the timeout bounds the wait)
    assert call(broker, "GET", path)[0] == 404
    assert call(broker, "DELETE", path)[0] == 404


def test_publish_and_get(broker: PolymqProcess, amqp: Any) -> None:
    name = unique("debug")
    amqp.channel().queue_declare(name)
    publish = "/api/exchanges/%2F/amq.default/publish"
    body = {
        "properties": {"content_type": "text/plain", "headers": {"k": "v"}, "delivery_mode": 1},
        "routing_key": name,
        "payload": "hello",
        "payload_encoding": "string",
    }
    assert call(broker, "POST", publish, body)[2] == {"routed": True}
    raw = {**body, "properties": {}, "payload": base64.b64encode(b"\xff\x00").decode()}
    raw["payload_encoding"] = "base64"
    assert call(broker, "POST", publish, raw)[2] == {"routed": True}
    lost = {**body, "routing_key": unique("nowhere")}
    assert call(broker, "POST", publish, lost)[2] == {"routed": False}

    path = q_path(name) + "/get"
    status, _, got = call(
        broker, "POST", path, {"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"}
    )
    assert status == 200 and len(got) == 2
    first, second = got
    assert first["payload"] == "hello" and first["payload_encoding"] == "string"
    assert first["properties"]["content_type"] == "text/plain"
    assert first["properties"]["headers"] == {"k": "v"}
    assert first["routing_key"] == name and first["exchange"] == "" and first["message_count"] == 1
    assert second["payload_encoding"] == "base64" and second["payload"] == "/wA="
    assert first["redelivered"] is False
    # requeued: still there, now redelivered; then taken for good
    status, _, again = call(
        broker,
        "POST",
        path,
        {"count": 1, "ackmode": "ack_requeue_false", "encoding": "base64", "truncate": 2},
    )
    assert again[0]["redelivered"] is True and again[0]["payload_bytes"] == 5
    assert base64.b64decode(again[0]["payload"]) == b"he"
    assert get(broker, q_path(name))["messages"] == 1
    call(broker, "POST", path, {"count": 1, "ackmode": "reject_requeue_false", "encoding": "auto"})
    assert get(broker, q_path(name))["messages"] == 0
    assert (
        call(
            broker, "POST", path, {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}
        )[2]
        == []
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/queues/%2F/no-such-queue", None, 404),
        ("GET", "/api/queues/no-such-vhost", None, 404),
        ("GET", "/api/exchanges/%2F/no-such-exchange", None, 404),
        ("GET", "/api/nope", None, 404),
        ("POST", "/api/exchanges/%2F/no-such-exchange/publish", {}, 404),
        ("POST", "/api/exchanges/%2F/amq.default/publish", {"routing_key": "x"}, 400),
        (
            "POST",
            "/api/exchanges/%2F/amq.default/publish",
            {"properties": {}, "routing_key": "x", "payload": "!", "payload_encoding": "base64"},
            400,
        ),
        (
            "POST",
            "/api/exchanges/%2F/amq.default/publish",
            {
                "properties": {"bogus": 1},
                "routing_key": "x",
                "payload": "",
                "payload_encoding": "string",
            },
            400,
        ),
        (
            "POST",
            "/api/exchanges/%2F/amq.default/publish",
            {
                "properties": {"delivery_mode": 7},
                "routing_key": "x",
                "payload": "",
                "payload_encoding": "string",
            },
            400,
        ),
        ("POST", "/api/queues/%2F/no-such-queue/get", {"count": 1}, 404),
        ("DELETE", "/api/queues", None, 405),
        ("POST", "/api/overview", {}, 405),
    ],
)
def test_errors(broker: PolymqProcess, method: str, path: str, body: Any, status: int) -> None:
    got, ctype, value = call(broker, method, path, body)
    assert got == status, value
    assert ctype.startswith("application/json") and "error" in value and "reason" in value


def test_get_needs_its_fields(broker: PolymqProcess, amqp: Any) -> None:
    name = unique("getfields")
    amqp.channel().queue_declare(name)
    path = q_path(name) + "/get"
    for body in (
        {"ackmode": "ack_requeue_true", "encoding": "auto"},
        {"count": 0, "ackmode": "ack_requeue_true", "encoding": "auto"},
        {"count": 1, "ackmode": "maybe", "encoding": "auto"},
        {"count": 1, "ackmode": "ack_requeue_true", "encoding": "utf-16"},
    ):
        status, _, value = call(broker, "POST", path, body)
        assert status == 400 and value["error"] == "bad_request", body
    status, _, value = call(broker, "POST", path, b"not json".decode())
    assert status == 400


def test_exchanges_bindings_and_health(broker: PolymqProcess, amqp: Any) -> None:
    ch = amqp.channel()
    x, q = unique("x"), unique("bq")
    ch.exchange_declare(x, "topic")
    ch.queue_declare(q)
    ch.queue_bind(q, x, "a.#")
    assert get(broker, "/api/exchanges/%2F/" + quote(x, safe=""))["type"] == "topic"
    assert get(broker, "/api/exchanges/%2F/amq.default")["name"] == ""
    assert x in {e["name"] for e in get(broker, "/api/exchanges")}
    assert {"source": x, "destination": q, "routing_key": "a.#"}.items() <= next(
        b for b in get(broker, "/api/bindings/%2F") if b["source"] == x
    ).items()
    assert get(broker, "/api/health") == {"status": "ok"}
    assert get(broker, "/api/health/checks/alarms") == {"status": "ok"}
    assert get(broker, "/api/cluster")["role"] == "single"


def test_page_and_static_files(broker: PolymqProcess) -> None:
    status, ctype, page = call(broker, "GET", "/")
    assert status == 200 and ctype.startswith("text/html")
    assert b'src="/static/app.js"' in page
    status, ctype, js = call(broker, "GET", "/static/app.js")
    assert status == 200 and "javascript" in ctype and b"/api/overview" in js
    assert call(broker, "GET", "/static/app.css")[0] == 200
    assert call(broker, "GET", "/static/missing.js")[0] == 404
