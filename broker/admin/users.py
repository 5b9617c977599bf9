"""Users, vhosts and permissions on the admin port, in the shapes of RabbitMQ's management API.

==========================================  =======================================================
resource                                    methods
==========================================  =======================================================
/api/whoami                                 GET (any user)
/api/users                                  GET
/api/users/{name}                           GET, PUT ``{"password" or "password_hash", "tags"}``,
                                            DELETE
/api/users/{name}/permissions               GET
/api/users/{name}/topic-permissions         GET
/api/vhosts                                 GET
/api/vhosts/{name}                          GET, PUT, DELETE (its queues, exchanges, permissions go)
/api/vhosts/{name}/permissions              GET
/api/vhosts/{name}/topic-permissions        GET
/api/permissions                            GET
/api/permissions/{vhost}/{user}             GET, PUT ``{"configure", "write", "read"}``, DELETE
/api/topic-permissions                      GET
/api/topic-permissions/{vhost}/{user}       GET, PUT ``{"exchange", "write", "read"}``, DELETE
                                            (``?exchange=X`` deletes one exchange's entry only)
==========================================  =======================================================

Every request needs HTTP basic auth of a user with the ``administrator`` tag (``/api/whoami``:
any user), as RabbitMQ's management plugin; the default user is refused from other hosts than
loopback while ``default_user_loopback_only`` is on. Path segments are percent-decoded one by
one, so the vhost ``/`` is ``%2F``. Answers as RabbitMQ: 200 with JSON for GET, 201 for a PUT
that creates, 204 for a PUT that updates and for DELETE, 400 ``bad_request``, 401
``not_authorised``, 404 ``Object Not Found``, 405 for another method.

Passwords sent in a PUT are hashed here; only the hash reaches the log.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11

from broker.api import Broker, BrokerError, UserInfo
from broker.node import Node

PREFIXES = (
    "/api/whoami",
    "/api/users",
    "/api/vhosts",
    "/api/permissions",
    "/api/topic-permissions",
)
#: the body of a PUT here is a small JSON object
BODY_BYTES_MAX = 64 << 10

Reply = tuple[int, str, bytes]


def handles(target: str) -> bool:
    path = urlsplit(target).path
    return any(path == p or path.startswith(p + "/") for p in PREFIXES)


def _json(status: int, value: Any) -> Reply:
    return status, "application/json", json.dumps(value).encode()


def _empty(status: int) -> Reply:
    return status, "application/json", b""


def _bad(reason: str) -> Reply:
    return _json(400, {"error": "bad_request", "reason": reason})


def _not_found() -> Reply:
    return _json(404, {"error": "Object Not Found", "reason": "Not Found"})


def _unauthorised(reason: str) -> Reply:
    return _json(401, {"error": "not_authorised", "reason": reason})


def _is_loopback(peer: Any) -> bool:
    if not peer:
        return False
    try:
        return ipaddress.ip_address(str(peer[0]).split("%")[0]).is_loopback
    except ValueError:
        return False


def _tags(value: Any) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` (RabbitMQ takes both) -> the tag list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return [t.strip() for t in value if t.strip()]
    return None


class UsersApi:
    """The resources above over one node (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.broker = Broker(node)

    def authenticate(self, headers: dict[str, str], peer: Any) -> UserInfo | None:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            raw = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = raw.partition(":")
        if not sep:
            return None
        cfg = self.node.config
        if cfg.default_user_loopback_only and name == cfg.default_user and not _is_loopback(peer):
            return None
        return self.broker.authenticate(name, password)

    async def handle(self, request: h11.Request, body: bytes, peer: Any) -> Reply:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        target = request.target.decode("ascii", "replace")
        parts = urlsplit(target)
        method = request.method.decode("ascii", "replace")
        segments = [unquote(s) for s in parts.path.split("/")[2:]]
        while len(segments) > 1 and segments[-1] == "":
            segments.pop()  # a trailing slash
        user = self.authenticate(headers, peer)
        if user is None:
            return _unauthorised("Login failed")
        if segments == ["whoami"]:
            if method not in ("GET", "HEAD"):
                return _json(405, {"error": "method_not_allowed", "reason": method})
            return _json(200, {"name": user.name, "tags": list(user.tags)})
        if "administrator" not in user.tags:
            return _unauthorised("Not administrator user")
        if len(body) > BODY_BYTES_MAX:
            return _json(413, {"error": "bad_request", "reason": "request too large"})
        data: Any = {}
        if method == "PUT" and body.strip():
            try:
                data = json.loads(body)
            except ValueError as exc:
                return _bad(f"invalid JSON: {exc}")
            if not isinstance(data, dict):
                return _bad("expected a JSON object")
        query = parse_qs(parts.query)
        routes: dict[tuple[str, int], Callable[..., Any]] = {
            ("users", 1): self._users,
            ("users", 2): self._user,
            ("users", 3): self._user_sub,
            ("vhosts", 1): self._vhosts,
            ("vhosts", 2): self._vhost,
            ("vhosts", 3): self._vhost_sub,
            ("permissions", 1): self._all_permissions,
            ("permissions", 3): self._permission,
            ("topic-permissions", 1): self._all_topic_permissions,
            ("topic-permissions", 3): self._topic_permission,
        }
        handler = routes.get((segments[0], len(segments))) if segments else None
        if handler is None:
            return _not_found()
        try:
            reply: Reply = await handler(method, segments[1:], data, query)
        except BrokerError as exc:
            return self._error(exc)
        return reply

    @staticmethod
    def _error(exc: BrokerError) -> Reply:
        text = exc.text.split(" - ", 1)[-1]
        if exc.code == 404:
            return _bad("vhost_or_user_not_found")
        return _bad(text)

    @staticmethod
    def _method(method: str, allowed: tuple[str, ...]) -> Reply | None:
        if method == "HEAD":
            method = "GET"
        if method not in allowed:
            return _json(405, {"error": "method_not_allowed", "reason": method})
        return None

    # -- users -----------------------------------------------------------------------------------

    async def _users(self, method: str, args: list[str], data: Any, query: Any) -> Reply:
        return self._method(method, ("GET",)) or _json(200, self.broker.list_users())

    def _user_row(self, name: str) -> dict[str, Any] | None:
        for row in self.broker.list_users():
            if row["name"] == name:
                return row
        return None

    async def _user(self, method: str, args: list[str], data: Any, query: Any) -> Reply:
        refused = self._method(method, ("GET", "PUT", "DELETE"))
        if refused is not None:
            return refused
        name = args[0]
        row = self._user_row(name)
        if method == "GET":
            return _not_found() if row is None else _json(200, row)
        if method == "DELETE":
            if row is None:
                return _not_found()
            await self.broker.delete_user(name)
            return _empty(204)
        if "tags" not in data:
            return _bad("[{key_missing,tags}]")  # RabbitMQ's words
        tags = _tags(data.get("tags"))
        if tags is None:
            return _bad("tags must be a string or a list of strings")
        password = data.get("password")
        password_hash = data.get("password_hash")
        if password is not None and password_hash is not None:
            return _bad("both_password_and_password_hash_are_provided")
        if password is not None and not isinstance(password, str):
            return _bad("password must be a string")
        if password_hash is not None and (not isinstance(password_hash, str)):
            return _bad("password_hash must be a string")
        algorithm = data.get("hashing_algorithm", "rabbit_password_hashing_sha256")
        if algorithm != "rabbit_password_hashing_sha256":
            return _bad(f"unsupported hashing_algorithm {algorithm!r}")
        await self.broker.put_user(
            name, password=password, password_hash=password_hash or None, tags=tags
        )
        return _empty(201 if row is None else 204)

    async def _user_sub(self, method: str, args: list[str], data: Any, query: Any) -> Reply:
        refused = self._method(method, ("GET",))
        if refused is not None:
            return refused
        name, what = args
        if self._user_row(name) is None:
            return _not_found()
        if what == "permissions":
            return _json(200, self.broker.list_permissions(user=name))
        if what == "topic-permissions":
            return _json(200, self.broker.list_topic_permissions(user=name))
        return _not_found()

    # -- vhosts ----------------------------------------------------------------------------------

    @staticmethod
    def _vhost_row(name: str) -> dict[str, Any]:
        return {"name": name, "description": "", "tags": [], "tracing": False}

    async def _vhosts(self, method: str, args: list[str], data: Any, query: Any) -> Reply:
        refused = self._method(method, ("GET",))
        if refused is not None:
            return refused
        return _json(200, [self._vhost_row(n) for n in self.broker.list_vhosts()])

    async def _vhost(self, method: str, args: list[str], data: Any, query: Any) -> Reply:
        refused = self._method(method, ("GET", "PUT", "DELETE"))
        if refused is not None:
            return refused
        name = args[0]
        exists = self.broker.vhost_exists(name)
        if method == "GET":
            return _json(200, self._vhost_row(name)) if exists else _not_found()
        if method == "DELETE":
            if not exists:
                return _not_found()
            await self.broker.delete_vhost(name)
            return _empty(204)
        created = await self.broker.add_vhost(name)
        return _empty(201 if created else 204)

    async def _vhost_sub(self, method: str, args: list[str], data: Any, query: Any) -> Reply:
        refused = self._method(method, ("GET",))
        if refused is not None:
            return refused
        name, what = args
        if not self.broker.vhost_exists(name):
            return _not_found()
        if what == "permissions":
            return _json(200, self.broker.list_permissions(vhost=name))
        if what == "topic-permissions":
            return _json(200, self.broker.list_topic_permissions(vhost=name))
        return _not_found()

    # -- permissions -----------------------------------------------------------------------------

    async def _all_permissions(self, method: str, args: list[str], data: Any, query: Any) -> Reply:
        return self._method(method, ("GET",)) or _json(200, self.broker.list_permissions())

    async def _permission(self, method: str, args: list[str], data: Any, query: Any) -> Reply:
        refused = self._method(method, ("GET", "PUT", "DELETE"))
        if refused is not None:
            return refused
        vhost, user = args
        rows = self.broker.list_permissions(user=user, vhost=vhost)
        if method == "GET":
            return _json(200, rows[0]) if rows else _not_found()
        if method == "DELETE":
            if not rows:
                return _not_found()
            await self.broker.clear_permissions(user, vhost)
            return _empty(204)
        patterns = []
        for key in ("configure", "write", "read"):
            value = data.get(key)
            if not isinstance(value, str):
                return _bad(f"[{{key_missing,{key}}}]")
            patterns.append(value)
        await self.broker.set_permissions(user, vhost, *patterns)
        return _empty(204 if rows else 201)

    async def _all_topic_permissions(
        self, method: str, args: list[str], data: Any, query: Any
    ) -> Reply:
        refused = self._method(method, ("GET",))
        return refused or _json(200, self.broker.list_topic_permissions())

    async def _topic_permission(self, method: str, args: list[str], data: Any, query: Any) -> Reply:
        refused = self._method(method, ("GET", "PUT", "DELETE"))
        if refused is not None:
            return refused
        vhost, user = args
        rows = self.broker.list_topic_permissions(user=user, vhost=vhost)
        if method == "GET":
            return _json(200, rows) if rows else _not_found()
        if method == "DELETE":
            exchange = (query.get("exchange") or [None])[0]
            if not rows or (exchange is not None and all(r["exchange"] != exchange for r in rows)):
                return _not_found()
            await self.broker.clear_topic_permissions(user, vhost, exchange)
            return _empty(204)
        values = []
        for key in ("exchange", "write", "read"):
            value = data.get(key)
            if not isinstance(value, str):
                return _bad(f"[{{key_missing,{key}}}]")
            values.append(value)
        exists = any(r["exchange"] == values[0] for r in rows)
        await self.broker.set_topic_permissions(user, vhost, *values)
        return _empty(204 if exists else 201)


async def route(node: Node, request: h11.Request, body: bytes, peer: Any) -> Reply | None:
    """The answer for a request to one of the resources above, or None for other paths (the
    admin server's own routes)."""
    if not handles(request.target.decode("ascii", "replace")):
        return None
    return await UsersApi(node).handle(request, body, peer)
