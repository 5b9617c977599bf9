"""Users, vhosts and permissions over MQTT (paho, 3.1.1 and 5.0) and STOMP (stomp.py), against
a real polymq process, as RabbitMQ's MQTT and STOMP plugins apply them.

MQTT: ``vhost:user`` as the user name names the vhost; a bad password is CONNACK 4 (3.1.1) /
0x86 (5.0); a vhost the user may not use (or that does not exist) CONNACK 5 / 0x87; a refused
SUBSCRIBE gets 0x80 (3.1.1) / 0x87 (5.0) in its SUBACK; a refused PUBLISH gets PUBACK 0x87 in
5.0 and ends a 3.1.1 connection. STOMP: a refused CONNECT or operation is an ERROR frame and
the connection ends; the ``host`` header names the vhost. After each refusal a witness finds
its stored messages intact, and other clients still publish and receive.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pika
import pytest
import stomp

from broker.cli_users import AdminClient
from tests.conformance import mqtt_wire
from tests.interop.mqtt_helpers import (
    RC_BAD_USER_NAME_OR_PASSWORD,
    RC_NOT_AUTHORIZED,
    V5,
    V311,
)
from tests.interop.mqtt_helpers import Client as MqttClient
from tests.interop.stomp_helpers import Recorder
from tests.polymq_process import PolymqProcess

WITNESS_BODIES = [b"witness-0", b"witness-1"]
WAIT_S = 10.0


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolymqProcess]:
    broker = PolymqProcess(
        tmp_path_factory.mktemp("polymq-users-mqtt") / "data",
        listeners=("amqp", "mqtt", "stomp"),
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def admin(node: PolymqProcess) -> AdminClient:
    return AdminClient(f"http://127.0.0.1:{node.admin_port}", "guest", "guest")


def amqp(node: PolymqProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(node.url))


@pytest.fixture(autouse=True)
def witness(node: PolymqProcess) -> Iterator[None]:
    queue = name("witness")
    conn = amqp(node)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(queue, durable=True)
    for body in WITNESS_BODIES:
        ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    conn.close()
    yield
    conn = amqp(node)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("", queue, b"after", pika.BasicProperties(delivery_mode=2))
        got = [ch.basic_get(queue, auto_ack=True)[2] for _ in range(len(WITNESS_BODIES) + 1)]
        assert got == [*WITNESS_BODIES, b"after"]
        ch.queue_delete(queue)
    finally:
        conn.close()


@pytest.fixture
def mqtt(node: PolymqProcess) -> Iterator[list[MqttClient]]:
    clients: list[MqttClient] = []
    yield clients
    for c in clients:
        if c.is_connected:
            c.disconnect()
        else:
            c.stop()


def add_user(admin: AdminClient, user: str, password: str, vhost: str = "/") -> None:
    admin.call("PUT", f"/api/users/{user}", {"password": password, "tags": ""})
    admin.call(
        "PUT",
        f"/api/permissions/{vhost.replace('/', '%2F')}/{user}",
        {"configure": ".*", "write": ".*", "read": ".*"},
    )


def new_client(
    node: PolymqProcess,
    clients: list[MqttClient],
    version: int,
    username: str | None = None,
    password: str | None = None,
) -> MqttClient:
    c = MqttClient(node, name("mq"), version=version, username=username, password=password)
    clients.append(c)
    return c


def check_mqtt_witness(node: PolymqProcess, clients: list[MqttClient]) -> None:
    """Another MQTT client (the default user) still publishes and receives."""
    topic = f"witness/{uuid.uuid4().hex[:8]}"
    c = new_client(node, clients, V5, "guest", "guest")
    c.connect()
    c.subscribe(topic)
    c.publish(topic, b"still-here")
    assert c.expect_topic(topic)[0].payload == b"still-here"


# -- MQTT -------------------------------------------------------------------------------------


def raw_connack_311(node: PolymqProcess, username: str, password: str) -> int:
    """The CONNACK return code on the wire (paho reports 3.1.1 codes as their 5.0 values);
    the server closes the connection after a refusal."""
    raw = mqtt_wire.RawClient(node.host, node.mqtt_port)
    try:
        connack = raw.handshake(
            mqtt_wire.V311, client_id=name("raw"), username=username, password=password.encode()
        )
        assert raw.read_until_closed() == []
        return connack.code
    finally:
        raw.close()


def test_mqtt_bad_password_connack(
    node: PolymqProcess, admin: AdminClient, mqtt: list[MqttClient]
) -> None:
    user = name("mu")
    add_user(admin, user, "pw")
    assert raw_connack_311(node, user, "wrong") == 4  # bad user name or password
    assert raw_connack_311(node, name("nobody"), "pw") == 4
    c = new_client(node, mqtt, V5, user, "wrong")
    assert c.connect(expect_success=False).reason_code == RC_BAD_USER_NAME_OR_PASSWORD
    c.wait_disconnected()
    check_mqtt_witness(node, mqtt)


def test_mqtt_vhost_refused_or_unknown_connack_not_authorized(
    node: PolymqProcess, admin: AdminClient, mqtt: list[MqttClient]
) -> None:
    user, vhost = name("mu"), name("mvh")
    add_user(admin, user, "pw")
    admin.call("PUT", f"/api/vhosts/{vhost}")
    for username in (f"{vhost}:{user}", f"no-such-vhost:{user}"):
        assert raw_connack_311(node, username, "pw") == 5, username  # not authorized
        c = new_client(node, mqtt, V5, username, "pw")
        assert c.connect(expect_success=False).reason_code == RC_NOT_AUTHORIZED, username
        c.wait_disconnected()
    check_mqtt_witness(node, mqtt)


def test_mqtt_vhost_user_name_selects_the_vhost(
    node: PolymqProcess, admin: AdminClient, mqtt: list[MqttClient]
) -> None:
    user, vhost = name("mu"), name("mvh")
    admin.call("PUT", f"/api/vhosts/{vhost}")
    add_user(admin, user, "pw", vhost)
    topic = f"t/{uuid.uuid4().hex[:8]}"
    in_vhost = new_client(node, mqtt, V5, f"{vhost}:{user}", "pw")
    in_vhost.connect()
    in_vhost.subscribe(topic)
    in_root = new_client(node, mqtt, V5, "guest", "guest")
    in_root.connect()
    in_root.subscribe(topic)
    in_root.publish(topic, b"root")
    in_vhost.publish(topic, b"vhost")
    assert [m.payload for m in in_vhost.expect_topic(topic)] == [b"vhost"]
    assert [m.payload for m in in_root.expect_topic(topic)] == [b"root"]
    in_root.quiet(0.3, lambda m: m.payload == b"vhost")


@pytest.mark.parametrize(
    ("version", "code"), [(V311, 0x80), (V5, RC_NOT_AUTHORIZED)], ids=["3.1.1", "5"]
)
def test_mqtt_subscribe_refused_by_topic_permission(
    node: PolymqProcess, admin: AdminClient, mqtt: list[MqttClient], version: int, code: int
) -> None:
    user = name("mu")
    add_user(admin, user, "pw")
    admin.call(
        "PUT",
        f"/api/topic-permissions/%2F/{user}",
        {"exchange": "amq.topic", "write": ".*", "read": "^public\\."},
    )
    c = new_client(node, mqtt, version, user, "pw")
    c.connect()
    assert c.subscribe([("public/news", 1), ("private/x", 1)]) == [1, code]
    assert c.is_connected
    c.publish("public/news", b"ok")
    assert c.expect_topic("public/news")[0].payload == b"ok"
    check_mqtt_witness(node, mqtt)


def test_mqtt_client_id_variable_in_topic_permissions(
    node: PolymqProcess, admin: AdminClient, mqtt: list[MqttClient]
) -> None:
    user = name("mu")
    add_user(admin, user, "pw")
    admin.call(
        "PUT",
        f"/api/topic-permissions/%2F/{user}",
        {"exchange": "amq.topic", "write": "^{client_id}\\.", "read": "^{client_id}\\."},
    )
    c = new_client(node, mqtt, V5, user, "pw")
    c.connect()
    own = f"{c.client_id}/status"
    assert c.subscribe([(own, 1), ("someone-else/status", 1)]) == [1, RC_NOT_AUTHORIZED]
    assert c.publish(own, b"mine") == 0
    assert c.expect_topic(own)[0].payload == b"mine"


def test_mqtt5_publish_refused_is_puback_0x87(
    node: PolymqProcess, admin: AdminClient, mqtt: list[MqttClient]
) -> None:
    user = name("mu")
    add_user(admin, user, "pw")
    admin.call(
        "PUT",
        f"/api/topic-permissions/%2F/{user}",
        {"exchange": "amq.topic", "write": "^allowed\\.", "read": ".*"},
    )
    watcher = new_client(node, mqtt, V5, "guest", "guest")
    watcher.connect()
    watcher.subscribe("#")
    c = new_client(node, mqtt, V5, user, "pw")
    c.connect()
    assert c.publish("forbidden/x", b"no", qos=1) == RC_NOT_AUTHORIZED
    assert c.publish("allowed/x", b"yes", qos=1) == 0
    assert c.is_connected
    assert [m.payload for m in watcher.expect_topic("allowed/x")] == [b"yes"]
    watcher.quiet(0.3, lambda m: m.topic == "forbidden/x")


def test_mqtt311_publish_refused_closes_the_connection(
    node: PolymqProcess, admin: AdminClient, mqtt: list[MqttClient]
) -> None:
    user = name("mu")
    add_user(admin, user, "pw")
    admin.call(
        "PUT", f"/api/permissions/%2F/{user}", {"configure": ".*", "write": "", "read": ".*"}
    )
    watcher = new_client(node, mqtt, V5, "guest", "guest")
    watcher.connect()
    watcher.subscribe("closed/#")
    c = new_client(node, mqtt, V311, user, "pw")
    c.connect()
    c.publish("closed/x", b"no", qos=1, wait=False)
    assert c.wait_disconnected().by_server
    watcher.quiet(0.3, lambda m: m.topic == "closed/x")
    check_mqtt_witness(node, mqtt)


# -- STOMP ------------------------------------------------------------------------------------


class Stomp:
    def __init__(self, node: PolymqProcess, vhost: str = "/") -> None:
        self.conn = stomp.Connection12(
            [(node.host, node.stomp_port)], vhost=vhost, auto_decode=False, reconnect_attempts_max=1
        )
        self.rec = Recorder()
        self.conn.set_listener("rec", self.rec)

    def connect(self, login: str, passcode: str) -> None:
        self.conn.connect(login, passcode, wait=False)

    def wait_error(self) -> tuple[dict[str, str], bytes]:
        self.rec.wait_for(lambda: bool(self.rec.errors), "ERROR", WAIT_S)
        self.rec.wait_for(lambda: self.rec.disconnected, "the connection to close", WAIT_S)
        e = self.rec.errors[0]
        return e.headers, e.body

    def wait_connected(self) -> None:
        self.rec.wait_for(lambda: self.rec.connected is not None, "CONNECTED", WAIT_S)

    def close(self) -> None:
        try:
            if self.conn.is_connected():
                self.conn.disconnect()
        finally:
            self.conn.transport.stop()


@pytest.fixture
def stomps() -> Iterator[list[Stomp]]:
    opened: list[Stomp] = []
    yield opened
    for s in opened:
        s.close()


def test_stomp_bad_login_is_error_frame(
    node: PolymqProcess, admin: AdminClient, stomps: list[Stomp]
) -> None:
    user = name("su")
    add_user(admin, user, "pw")
    s = Stomp(node)
    stomps.append(s)
    s.connect(user, "wrong")
    headers, body = s.wait_error()
    assert headers["message"] == "Bad CONNECT"
    assert body == f"Access refused for user '{user}'\n".encode()


def test_stomp_host_header_names_the_vhost(
    node: PolymqProcess, admin: AdminClient, stomps: list[Stomp]
) -> None:
    user, vhost = name("su"), name("svh")
    add_user(admin, user, "pw")
    admin.call("PUT", f"/api/vhosts/{vhost}")
    s = Stomp(node, vhost)
    stomps.append(s)
    s.connect(user, "pw")
    headers, body = s.wait_error()
    assert headers["message"] == "Bad CONNECT"
    assert body == f"Virtual host '{vhost}' access denied".encode()
    admin.call(
        "PUT", f"/api/permissions/{vhost}/{user}", {"configure": ".*", "write": ".*", "read": ".*"}
    )
    ok = Stomp(node, vhost)
    stomps.append(ok)
    ok.connect(user, "pw")
    ok.wait_connected()
    queue = name("sq")
    ok.conn.subscribe(f"/queue/{queue}", id="1", headers={"receipt": "r1"})
    ok.rec.wait_for(lambda: "r1" in ok.rec.receipts, "RECEIPT", WAIT_S)
    ok.conn.send(f"/queue/{queue}", b"in-vhost")
    ok.rec.wait_for(lambda: bool(ok.rec.messages), "MESSAGE", WAIT_S)
    assert ok.rec.messages[0].body == b"in-vhost"
    # the queue lives in the vhost, not in "/"
    conn = amqp(node)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.queue_declare(queue, passive=True)
    conn.close()


@pytest.mark.parametrize(
    ("destination", "kind", "resource"),
    [
        ("/queue/{q}", "queue", "{q}"),
        ("/amq/queue/{q}", "queue", "{q}"),
        ("/exchange/amq.fanout", "exchange", "amq.fanout"),
    ],
)
def test_stomp_subscribe_without_read_is_access_refused(
    node: PolymqProcess,
    admin: AdminClient,
    stomps: list[Stomp],
    destination: str,
    kind: str,
    resource: str,
) -> None:
    user, queue = name("su"), name("theirs")
    add_user(admin, user, "pw")
    admin.call(
        "PUT",
        f"/api/permissions/%2F/{user}",
        {"configure": "^stomp-subscription-", "write": "^stomp-subscription-", "read": "^stomp-"},
    )
    conn = amqp(node)
    conn.channel().queue_declare(queue, durable=True)
    s = Stomp(node)
    stomps.append(s)
    s.connect(user, "pw")
    s.wait_connected()
    s.conn.subscribe(destination.format(q=queue), id="1")
    headers, body = s.wait_error()
    assert headers["message"] == "access_refused"
    expected_kind = "queue" if destination.startswith("/queue/") else kind
    assert body.decode() == (
        f"ACCESS_REFUSED - access to {expected_kind} '{resource.format(q=queue)}' in vhost '/'"
        f" refused for user '{user}'"
    )
    conn.channel().queue_delete(queue)
    conn.close()


def test_stomp_send_needs_write_and_topic_write(
    node: PolymqProcess, admin: AdminClient, stomps: list[Stomp]
) -> None:
    user = name("su")
    add_user(admin, user, "pw")
    admin.call(
        "PUT",
        f"/api/topic-permissions/%2F/{user}",
        {"exchange": "amq.topic", "write": "^news\\.", "read": ".*"},
    )
    s = Stomp(node)
    stomps.append(s)
    s.connect(user, "pw")
    s.wait_connected()
    s.conn.send("/topic/news.today", b"fine", headers={"receipt": "r1"})
    s.rec.wait_for(lambda: "r1" in s.rec.receipts, "RECEIPT", WAIT_S)
    s.conn.send("/topic/gossip.today", b"refused")
    headers, body = s.wait_error()
    assert headers["message"] == "access_refused"
    assert body.decode() == (
        "ACCESS_REFUSED - access to topic 'gossip.today' in exchange 'amq.topic' in vhost '/'"
        f" refused for user '{user}'"
    )
