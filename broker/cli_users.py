"""``polymq users ...``: users, vhosts and permissions of a running node, the way ``rabbitmqctl``
manages RabbitMQ's, through the node's admin HTTP API (``broker/admin/users.py``).

    polymq users add NAME PASSWORD [--tags administrator,management]
    polymq users delete NAME | list | change-password NAME PASSWORD | set-tags NAME [TAG ...]
    polymq users set-permissions [-p VHOST] NAME CONF WRITE READ
    polymq users clear-permissions [-p VHOST] NAME | list-permissions [-p VHOST]
    polymq users set-topic-permissions [-p VHOST] NAME EXCHANGE WRITE READ
    polymq users clear-topic-permissions [-p VHOST] NAME [EXCHANGE]
    polymq users list-topic-permissions [-p VHOST]
    polymq users add-vhost NAME | delete-vhost NAME | list-vhosts

``--admin-url`` (default ``http://127.0.0.1:15672``, or ``POLYMQ_ADMIN_URL``) names the node;
``--username`` / ``--password`` (default ``guest`` / ``guest``, or ``POLYMQ_ADMIN_USER`` /
``POLYMQ_ADMIN_PASSWORD``) an administrator. A new password is hashed here (RabbitMQ's salted
SHA-256) and only the hash is sent. Exit codes: 0 done, 1 refused or unreachable, 2 usage.

This module also seeds the default user at the first start of an empty data directory
(``seed_default_user``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from typing import TYPE_CHECKING, Any
from urllib import error as urlerror
from urllib import request as urlrequest
from urllib.parse import quote

if TYPE_CHECKING:
    from broker.config import Config
    from broker.node import Node

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
DEFAULT_ADMIN_URL = "http://127.0.0.1:15672"
REQUEST_TIMEOUT_S = 10.0
RESPONSE_BYTES_MAX = 16 << 20


async def seed_default_user(cfg: Config, node: Node) -> bool:
    """Create ``default_user`` (tag administrator, every permission on ``/``) once per data
    directory, as RabbitMQ does on its first boot. True when created now."""
    from broker.api import Broker

    return await Broker(node).seed_default_user(cfg.default_user, cfg.default_pass)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "users", help="manage users, vhosts and permissions of a running node"
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("POLYMQ_ADMIN_URL", DEFAULT_ADMIN_URL),
        help="the node's admin endpoint (default %(default)s)",
    )
    parser.add_argument(
        "--username",
        default=os.environ.get("POLYMQ_ADMIN_USER", "guest"),
        help="an administrator (default %(default)s)",
    )
    parser.add_argument(
        "--password",
        default=os.environ.get("POLYMQ_ADMIN_PASSWORD", "guest"),
        help="its password (default guest)",
    )
    actions = parser.add_subparsers(dest="users_command", metavar="ACTION")

    def vhost_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("-p", "--vhost", default="/", help="virtual host (default /)")

    p = actions.add_parser("add", help="add a user")
    p.add_argument("name")
    p.add_argument("user_password", metavar="PASSWORD")
    p.add_argument("--tags", default="", help="comma-separated tags (administrator, ...)")
    p = actions.add_parser("delete", help="delete a user and its permissions")
    p.add_argument("name")
    actions.add_parser("list", help="list users and their tags")
    p = actions.add_parser("change-password", help="set a user's password")
    p.add_argument("name")
    p.add_argument("user_password", metavar="PASSWORD")
    p = actions.add_parser("set-tags", help="replace a user's tags")
    p.add_argument("name")
    p.add_argument("tags", nargs="*")
    p = actions.add_parser("set-permissions", help="set a user's permissions in a vhost")
    vhost_opt(p)
    p.add_argument("name")
    p.add_argument("configure")
    p.add_argument("write")
    p.add_argument("read")
    p = actions.add_parser("clear-permissions", help="remove a user's permissions in a vhost")
    vhost_opt(p)
    p.add_argument("name")
    p = actions.add_parser("list-permissions", help="permissions in a vhost")
    vhost_opt(p)
    p = actions.add_parser("set-topic-permissions", help="set a user's topic permissions")
    vhost_opt(p)
    p.add_argument("name")
    p.add_argument("exchange")
    p.add_argument("write")
    p.add_argument("read")
    p = actions.add_parser("clear-topic-permissions", help="remove topic permissions")
    vhost_opt(p)
    p.add_argument("name")
    p.add_argument("exchange", nargs="?")
    p = actions.add_parser("list-topic-permissions", help="topic permissions in a vhost")
    vhost_opt(p)
    p = actions.add_parser("add-vhost", help="add a virtual host")
    p.add_argument("name")
    p = actions.add_parser("delete-vhost", help="delete a vhost with its queues and exchanges")
    p.add_argument("name")
    actions.add_parser("list-vhosts", help="list virtual hosts")
    return parser


class AdminError(Exception):
    """The node refused the request or could not be reached; the message says why."""


class AdminClient:
    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self.auth = f"Basic {token}"

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urlrequest.Request(self.url + path, data=data, method=method)
        req.add_header("authorization", self.auth)
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with urlrequest.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
                status, raw = resp.status, resp.read(RESPONSE_BYTES_MAX)
        except urlerror.HTTPError as exc:
            status, raw = exc.code, exc.read(RESPONSE_BYTES_MAX)
        except (urlerror.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminError(f"cannot reach the node at {self.url}: {reason}") from None
        value: Any = None
        if raw:
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw.decode("utf-8", "replace")
        if status >= 400:
            reason = value.get("reason") if isinstance(value, dict) else value
            raise AdminError(f"{method} {path}: {status} {reason}")
        return status, value


def _seg(text: str) -> str:
    return quote(text, safe="")


def _tags_text(tags: list[str]) -> str:
    return "[" + ", ".join(tags) + "]"


def _run(args: argparse.Namespace, client: AdminClient) -> str | None:
    """Perform the action; returns what to print (None: nothing)."""
    from broker.api import Broker

    cmd = args.users_command
    vhost = getattr(args, "vhost", "/")
    if cmd == "add":
        tags = [t.strip() for t in args.tags.split(",") if t.strip()]
        try:
            client.call("GET", f"/api/users/{_seg(args.name)}")
        except AdminError as exc:
            if " 404 " not in str(exc):
                raise
        else:
            raise AdminError(f"user '{args.name}' already exists")
        new = {"password_hash": Broker.hash_password(args.user_password), "tags": tags}
        client.call("PUT", f"/api/users/{_seg(args.name)}", new)
        return f'Adding user "{args.name}" ...'
    if cmd == "delete":
        client.call("DELETE", f"/api/users/{_seg(args.name)}")
        return f'Deleting user "{args.name}" ...'
    if cmd == "list":
        _, rows = client.call("GET", "/api/users")
        lines = ["user\ttags"]
        lines += [f"{r['name']}\t{_tags_text(r['tags'])}" for r in rows]
        return "\n".join(lines)
    if cmd in ("change-password", "set-tags"):
        _, row = client.call("GET", f"/api/users/{_seg(args.name)}")
        body: dict[str, Any] = {
            "password_hash": row.get("password_hash") or None,
            "tags": row.get("tags", []),
        }
        if cmd == "change-password":
            body["password_hash"] = Broker.hash_password(args.user_password)
        else:
            body["tags"] = list(args.tags)
        client.call("PUT", f"/api/users/{_seg(args.name)}", body)
        return None
    if cmd == "set-permissions":
        body = {"configure": args.configure, "write": args.write, "read": args.read}
        client.call("PUT", f"/api/permissions/{_seg(vhost)}/{_seg(args.name)}", body)
        return f'Setting permissions for user "{args.name}" in vhost "{vhost}" ...'
    if cmd == "clear-permissions":
        client.call("DELETE", f"/api/permissions/{_seg(vhost)}/{_seg(args.name)}")
        return None
    if cmd == "list-permissions":
        _, rows = client.call("GET", f"/api/vhosts/{_seg(vhost)}/permissions")
        lines = ["user\tconfigure\twrite\tread"]
        lines += [f"{r['user']}\t{r['configure']}\t{r['write']}\t{r['read']}" for r in rows]
        return "\n".join(lines)
    if cmd == "set-topic-permissions":
        body = {"exchange": args.exchange, "write": args.write, "read": args.read}
        client.call("PUT", f"/api/topic-permissions/{_seg(vhost)}/{_seg(args.name)}", body)
        return None
    if cmd == "clear-topic-permissions":
        path = f"/api/topic-permissions/{_seg(vhost)}/{_seg(args.name)}"
        if args.exchange is not None:
            path += f"?exchange={_seg(args.exchange)}"
        client.call("DELETE", path)
        return None
    if cmd == "list-topic-permissions":
        _, rows = client.call("GET", f"/api/vhosts/{_seg(vhost)}/topic-permissions")
        lines = ["user\texchange\twrite\tread"]
        lines += [f"{r['user']}\t{r['exchange']}\t{r['write']}\t{r['read']}" for r in rows]
        return "\n".join(lines)
    if cmd == "add-vhost":
        client.call("PUT", f"/api/vhosts/{_seg(args.name)}")
        return f'Adding vhost "{args.name}" ...'
    if cmd == "delete-vhost":
        client.call("DELETE", f"/api/vhosts/{_seg(args.name)}")
        return f'Deleting vhost "{args.name}" ...'
    if cmd == "list-vhosts":
        _, rows = client.call("GET", "/api/vhosts")
        return "\n".join(["name", *(r["name"] for r in rows)])
    raise AssertionError(cmd)


def main(args: argparse.Namespace) -> int:
    if not args.users_command:
        print(
            "polymq: error: users needs an action: add, delete, list, change-password, set-tags,"
            " set-permissions, clear-permissions, list-permissions, set-topic-permissions,"
            " clear-topic-permissions, list-topic-permissions, add-vhost, delete-vhost,"
            " list-vhosts",
            file=sys.stderr,
        )
        return EXIT_USAGE
    client = AdminClient(args.admin_url, args.username, args.password)
    try:
        out = _run(args, client)
    except AdminError as exc:
        print(f"polymq: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if out:
        print(out)
    return EXIT_OK
