"""Users, vhosts and permissions over AMQP 0-9-1 with pika, against a real polymq process.

Each refusal is RabbitMQ's: a failed login is connection.close 403 ACCESS_REFUSED, an unknown
or forbidden vhost 530 NOT_ALLOWED on connection.open, an operation without the permission
channel.close 403 with "access to <kind> '<name>' in vhost '<vhost>' refused for user '<user>'".
Every test runs between a witness storing messages as the default user and the witness finding
them intact and still publishing and consuming afterwards. Users, vhosts and permissions are
set through the admin API (the client ``polymq users`` uses); the CLI itself, persistence over
kill -9 and restarts are tested at the end.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

from broker.cli_users import AdminClient, AdminError
from tests.polymq_process import ROOT, PolymqProcess, server_env

WITNESS_BODIES = [b"witness-0", b"witness-1", b"witness-2"]
CLI_TIMEOUT_S = 30


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolymqProcess]:
    broker = PolymqProcess(tmp_path_factory.mktemp("polymq-users") / "data")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def admin(node: PolymqProcess) -> AdminClient:
    return AdminClient(f"http://127.0.0.1:{node.admin_port}", "guest", "guest")


def connect(
    node: PolymqProcess, user: str = "guest", password: str = "guest", vhost: str = "/"
) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        node.host, node.amqp_port, vhost, pika.PlainCredentials(user, password)
    )
    params.socket_timeout = 10
    params.blocked_connection_timeout = 30
    return pika.BlockingConnection(params)


@pytest.fixture
def conns(node: PolymqProcess) -> Iterator[Callable[..., pika.BlockingConnection]]:
    opened: list[pika.BlockingConnection] = []

    def open_one(*args: str) -> pika.BlockingConnection:
        conn = connect(node, *args)
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        if conn.is_open:
            conn.close()


@pytest.fixture(autouse=True)
def witness(node: PolymqProcess) -> Iterator[None]:
    """The default user's durable queue and messages survive whatever the test was refused,
    and another connection still publishes and consumes."""
    queue = name("witness")
    conn = connect(node)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(queue, durable=True)
    for body in WITNESS_BODIES:
        ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    conn.close()
    yield
    conn = connect(node)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("", queue, b"published-after", pika.BasicProperties(delivery_mode=2))
        got = []
        for _ in range(len(WITNESS_BODIES) + 1):
            method, _props, body = ch.basic_get(queue, auto_ack=True)
            assert method is not None, f"witness found only {got}"
            got.append(body)
        assert got == [*WITNESS_BODIES, b"published-after"]
        ch.queue_delete(queue)
    finally:
        conn.close()


def add_user(
    admin: AdminClient,
    user: str,
    password: str,
    *,
    vhost: str = "/",
    perms: tuple[str, str, str] | None = (".*", ".*", ".*"),
    tags: list[str] | None = None,
) -> None:
    admin.call("PUT", f"/api/users/{user}", {"password": password, "tags": tags or []})
    if perms is not None:
        body = dict(zip(("configure", "write", "read"), perms, strict=True))
        admin.call("PUT", f"/api/permissions/{vhost.replace('/', '%2F')}/{user}", body)


def refused(user: str, kind: str, resource: str, vhost: str = "/") -> str:
    return (
        f"ACCESS_REFUSED - access to {kind} '{resource}' in vhost '{vhost}' refused for user"
        f" '{user}'"
    )


# -- login and vhosts ------------------------------------------------------------------------


def test_login_with_wrong_password_is_403_access_refused(
    node: PolymqProcess, admin: AdminClient
) -> None:
    user = name("u")
    add_user(admin, user, "right")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        connect(node, user, "wrong")
    assert "(403) 'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN." in (
        str(info.value)
    )
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(node, name("nobody"), "x")
    connect(node, user, "right").close()


def test_unknown_vhost_is_530_not_found(node: PolymqProcess, admin: AdminClient) -> None:
    user = name("u")
    add_user(admin, user, "pw")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect(node, user, "pw", "no-such-vhost")
    assert "(530) 'NOT_ALLOWED - vhost no-such-vhost not found'" in str(info.value)


def test_vhost_without_permissions_is_530_access_refused(
    node: PolymqProcess, admin: AdminClient
) -> None:
    user, vhost = name("u"), name("vh")
    add_user(admin, user, "pw")
    admin.call("PUT", f"/api/vhosts/{vhost}")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect(node, user, "pw", vhost)
    assert f"NOT_ALLOWED - access to vhost '{vhost}' refused for user '{user}'" in str(info.value)
    # permissions with patterns that match nothing still grant the vhost (as RabbitMQ)
    admin.call(
        "PUT", f"/api/permissions/{vhost}/{user}", {"configure": "", "write": "", "read": ""}
    )
    connect(node, user, "pw", vhost).close()


def test_vhosts_are_separate_namespaces_and_delete_removes_their_queues(
    node: PolymqProcess, admin: AdminClient, conns: Callable[..., pika.BlockingConnection]
) -> None:
    user, vhost = name("u"), name("vh")
    admin.call("PUT", f"/api/vhosts/{vhost}")
    add_user(admin, user, "pw", vhost=vhost)
    ch = conns(user, "pw", vhost).channel()
    ch.confirm_delivery()
    ch.queue_declare("shared-name", durable=True)
    ch.basic_publish("", "shared-name", b"in-vhost", pika.BasicProperties(delivery_mode=2))
    assert ch.queue_declare("shared-name", passive=True).method.message_count == 1
    # the same name in "/" is another queue
    root = conns().channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        root.queue_declare("shared-name", passive=True)
    assert info.value.reply_code == 404
    admin.call("DELETE", f"/api/vhosts/{vhost}")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as gone:
        connect(node, user, "pw", vhost)
    assert f"vhost {vhost} not found" in str(gone.value)
    # created again, it is empty and the user's permissions there are gone
    admin.call("PUT", f"/api/vhosts/{vhost}")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        connect(node, user, "pw", vhost)
    add_user(admin, user, "pw", vhost=vhost)
    ch = conns(user, "pw", vhost).channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("shared-name", passive=True)
    assert info.value.reply_code == 404
    admin.call("DELETE", f"/api/vhosts/{vhost}")


# -- permissions -----------------------------------------------------------------------------


@pytest.fixture
def limited(admin: AdminClient) -> str:
    """A user who may configure ``mine-*``, write ``mine-*`` and ``amq.default``, and read
    ``mine-*`` and ``amq.direct`` only."""
    user = name("lim")
    add_user(admin, user, "pw", perms=("^mine-", "^mine-|^amq\\.default$", "^mine-|^amq\\.direct$"))
    return user


def _ops(
    other_queue: str, other_exchange: str
) -> list[
    tuple[str, Callable[[pika.adapters.blocking_connection.BlockingChannel], object], str, str]
]:
    return [
        ("queue.declare", lambda ch: ch.queue_declare(other_queue), "queue", other_queue),
        (
            "exchange.declare",
            lambda ch: ch.exchange_declare(other_exchange, "fanout"),
            "exchange",
            other_exchange,
        ),
        ("queue.delete", lambda ch: ch.queue_delete(other_queue), "queue", other_queue),
        (
            "exchange.delete",
            lambda ch: ch.exchange_delete(other_exchange),
            "exchange",
            other_exchange,
        ),
        ("basic.get", lambda ch: ch.basic_get(other_queue), "queue", other_queue),
        (
            "basic.consume",
            lambda ch: ch.basic_consume(other_queue, lambda *a: None),
            "queue",
            other_queue,
        ),
        ("queue.purge", lambda ch: ch.queue_purge(other_queue), "queue", other_queue),
        # bind needs write on the queue ...
        (
            "queue.bind (write)",
            lambda ch: ch.queue_bind(other_queue, "amq.direct"),
            "queue",
            other_queue,
        ),
        # ... and read on the exchange
        (
            "queue.bind (read)",
            lambda ch: ch.queue_bind("mine-q", "amq.fanout"),
            "exchange",
            "amq.fanout",
        ),
        (
            "queue.unbind",
            lambda ch: ch.queue_unbind("mine-q", "amq.fanout"),
            "exchange",
            "amq.fanout",
        ),
        (
            "exchange.bind",
            lambda ch: ch.exchange_bind("mine-x", "amq.fanout"),
            "exchange",
            "amq.fanout",
        ),
    ]


def test_each_operation_without_its_permission_is_403_with_rabbitmq_text(
    limited: str, conns: Callable[..., pika.BlockingConnection]
) -> None:
    other_queue, other_exchange = name("theirs"), name("theirs-x")
    owner = conns().channel()
    owner.queue_declare(other_queue, durable=True)
    owner.exchange_declare(other_exchange, "fanout")
    conn = conns(limited, "pw")
    setup = conn.channel()
    setup.queue_declare("mine-q")
    setup.exchange_declare("mine-x", "fanout")
    setup.queue_bind("mine-q", "amq.direct", "k")  # write on mine-q, read on amq.direct
    for what, op, kind, resource in _ops(other_queue, other_exchange):
        ch = conn.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            op(ch)
        assert info.value.reply_code == 403, what
        assert info.value.reply_text == refused(limited, kind, resource), what
    # the connection and its other channels are fine
    assert conn.is_open and setup.is_open
    # nothing of the owner's changed
    assert owner.queue_declare(other_queue, passive=True).method.consumer_count == 0
    owner.exchange_declare(other_exchange, passive=True)
    owner.queue_delete(other_queue)
    owner.exchange_delete(other_exchange)
    setup.queue_delete("mine-q")
    setup.exchange_delete("mine-x")


def test_passive_declare_needs_no_permission(
    limited: str, conns: Callable[..., pika.BlockingConnection]
) -> None:
    queue = name("theirs")
    conns().channel().queue_declare(queue)
    ch = conns(limited, "pw").channel()
    assert ch.queue_declare(queue, passive=True).method.queue == queue
    ch.exchange_declare("amq.topic", passive=True)
    conns().channel().queue_delete(queue)


def test_publish_needs_write_on_the_exchange_default_exchange_is_amq_default(
    admin: AdminClient, conns: Callable[..., pika.BlockingConnection]
) -> None:
    user = name("pub")
    add_user(admin, user, "pw", perms=(".*", "^amq\\.direct$", ".*"))
    queue = name("q")
    owner = conns().channel()
    owner.queue_declare(queue)
    ch = conns(user, "pw").channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_publish("", queue, b"refused")
    assert info.value.reply_code == 403
    assert info.value.reply_text == refused(user, "exchange", "amq.default")
    ch = conns(user, "pw").channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.direct", "nowhere", b"fine")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_publish("amq.fanout", "", b"refused")
    assert info.value.reply_text == refused(user, "exchange", "amq.fanout")
    assert owner.queue_declare(queue, passive=True).method.message_count == 0
    owner.queue_delete(queue)


def test_dead_letter_exchange_needs_write_on_it(
    admin: AdminClient, conns: Callable[..., pika.BlockingConnection]
) -> None:
    user = name("dlx")
    add_user(admin, user, "pw", perms=(".*", "^mine-", ".*"))
    ch = conns(user, "pw").channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("mine-dl", arguments={"x-dead-letter-exchange": "amq.fanout"})
    assert info.value.reply_text == refused(user, "exchange", "amq.fanout")
    ch = conns(user, "pw").channel()
    ch.queue_declare("mine-dl", arguments={"x-dead-letter-exchange": "mine-dlx"})
    ch.queue_delete("mine-dl")


def test_changed_permissions_apply_to_open_connections(
    admin: AdminClient, conns: Callable[..., pika.BlockingConnection]
) -> None:
    user = name("chg")
    add_user(admin, user, "pw")
    conn = conns(user, "pw")
    conn.channel().queue_declare("chg-q")
    admin.call("PUT", f"/api/permissions/%2F/{user}", {"configure": "", "write": "", "read": ""})
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        conn.channel().queue_delete("chg-q")
    assert info.value.reply_text == refused(user, "queue", "chg-q")
    conns().channel().queue_delete("chg-q")


# -- topic permissions ---------------------------------------------------------------------


def test_topic_permissions_on_publish_and_bind_with_variables(
    admin: AdminClient, conns: Callable[..., pika.BlockingConnection]
) -> None:
    user = name("top")
    add_user(admin, user, "pw")
    admin.call(
        "PUT",
        f"/api/topic-permissions/%2F/{user}",
        {"exchange": "amq.topic", "write": "^{username}\\.", "read": "^public\\.|^{vhost}$"},
    )
    queue = name("tq")
    conn = conns(user, "pw")
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(queue)
    ch.queue_bind(queue, "amq.topic", "public.#")
    ch.queue_bind(queue, "amq.topic", "/")  # {vhost} expands to the connection's vhost
    ch.queue_bind(queue, "amq.direct", "public.news")  # not a topic exchange: no topic check
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_bind(queue, "amq.topic", "private.#")
    assert info.value.reply_code == 403
    assert info.value.reply_text == (
        f"ACCESS_REFUSED - access to topic 'private.#' in exchange 'amq.topic' in vhost '/'"
        f" refused for user '{user}'"
    )
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", f"{user}.greeting", b"allowed")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_publish("amq.topic", "public.news", b"refused")
    assert info.value.reply_text == (
        f"ACCESS_REFUSED - access to topic 'public.news' in exchange 'amq.topic' in vhost '/'"
        f" refused for user '{user}'"
    )
    # other exchanges have no topic permissions: any key goes
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.direct", "public.news", b"allowed")
    assert ch.queue_declare(queue, passive=True).method.message_count == 1
    admin.call("DELETE", f"/api/topic-permissions/%2F/{user}")
    ch.basic_publish("amq.topic", "public.news", b"allowed now")
    assert ch.queue_declare(queue, passive=True).method.message_count == 2
    ch.queue_delete(queue)


# -- default user ------------------------------------------------------------------------------


def test_default_user_is_an_administrator_with_every_permission(admin: AdminClient) -> None:
    _, users = admin.call("GET", "/api/users")
    guest = next(u for u in users if u["name"] == "guest")
    assert guest["tags"] == ["administrator"]
    assert guest["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert "guest" not in guest["password_hash"]
    _, perm = admin.call("GET", "/api/permissions/%2F/guest")
    assert perm == {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
    _, me = admin.call("GET", "/api/whoami")
    assert me == {"name": "guest", "tags": ["administrator"]}


def test_admin_api_needs_an_administrator(node: PolymqProcess, admin: AdminClient) -> None:
    user = name("mgmt")
    add_user(admin, user, "pw", tags=["management"])
    url = f"http://127.0.0.1:{node.admin_port}"
    with pytest.raises(AdminError, match="401 Not administrator user"):
        AdminClient(url, user, "pw").call("GET", "/api/users")
    assert AdminClient(url, user, "pw").call("GET", "/api/whoami")[1]["name"] == user
    with pytest.raises(AdminError, match="401 Login failed"):
        AdminClient(url, user, "wrong").call("GET", "/api/whoami")
    with pytest.raises(AdminError, match="400 vhost_or_user_not_found"):
        admin.call("PUT", "/api/permissions/%2F/nobody", {"configure": "", "write": "", "read": ""})
    with pytest.raises(AdminError, match="400 .*invalid regular expression"):
        admin.call(
            "PUT", f"/api/permissions/%2F/{user}", {"configure": "(", "write": "", "read": ""}
        )


# -- the CLI, end to end, and persistence ------------------------------------------------------


def cli(node: PolymqProcess, *args: str, user: str = "guest", password: str = "guest") -> str:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "users",
            "--admin-url",
            f"http://127.0.0.1:{node.admin_port}",
            "--username",
            user,
            "--password",
            password,
            *args,
        ],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cli_users_vhosts_permissions_survive_kill_9(tmp_path: Path) -> None:
    node = PolymqProcess(tmp_path / "data")
    node.start()
    try:
        cli(node, "add", "carol", "c4rol", "--tags", "administrator,monitoring")
        cli(node, "add-vhost", "staging")
        cli(node, "set-permissions", "-p", "staging", "carol", "^carol-", ".*", ".*")
        cli(node, "set-topic-permissions", "-p", "staging", "carol", "amq.topic", "^a", "^b")
        listing = cli(node, "list")
        assert "carol\t[administrator, monitoring]" in listing
        assert "guest\t[administrator]" in listing
        # a refused CLI call exits 1 with the node's reason
        bad = subprocess.run(
            [
                sys.executable,
                "-m",
                "broker",
                "users",
                "--admin-url",
                f"http://127.0.0.1:{node.admin_port}",
                "add",
                "carol",
                "again",
            ],
            cwd=ROOT,
            env=server_env(),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )
        assert bad.returncode == 1 and "user 'carol' already exists" in bad.stderr
        conn = connect(node, "carol", "c4rol", "staging")
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("carol-q", durable=True)
        ch.basic_publish("", "carol-q", b"kept", pika.BasicProperties(delivery_mode=2))
        conn.close()
        node.kill9()
        node.start()
        assert "\nstaging" in cli(node, "list-vhosts")
        assert "carol\t^carol-\t.*\t.*" in cli(node, "list-permissions", "-p", "staging")
        assert "carol\tamq.topic\t^a\t^b" in cli(node, "list-topic-permissions", "-p", "staging")
        # the administrator made by the CLI can use the CLI
        cli(node, "delete", "guest", user="carol", password="c4rol")
        conn = connect(node, "carol", "c4rol", "staging")
        ch = conn.channel()
        method, _props, body = ch.basic_get("carol-q", auto_ack=True)
        assert body == b"kept"
        conn.close()
        # the default user deleted stays deleted after a restart (it is created only once)
        node.restart()
        assert "guest" not in cli(node, "list", user="carol", password="c4rol")
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            connect(node)
        cli(node, "change-password", "carol", "new", user="carol", password="c4rol")
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            connect(node, "carol", "c4rol", "staging")
        connect(node, "carol", "new", "staging").close()
        cli(node, "delete-vhost", "staging", user="carol", password="new")
        assert "staging" not in cli(node, "list-vhosts", user="carol", password="new")
    finally:
        node.stop()
