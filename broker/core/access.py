"""Users, virtual hosts' permissions and topic permissions: the state and the checks.

This is the part of the machine state that says who may do what, with RabbitMQ's semantics
(its ``rabbit_auth_backend_internal``). ``AuthState`` lives inside ``Machine`` (as
``machine.auth``); it changes only through the logged user commands (see commands.py) and is
read by the front ends through ``broker/api.py``.

Rules:

1. Passwords are stored as RabbitMQ's ``rabbit_password_hashing_sha256`` hashes only:
   ``base64(salt + SHA-256(salt + utf8(password)))`` with a 4-byte salt. The salt is chosen by the
   caller (the core draws no randomness), so the log and snapshots carry hashes, never a
   password. A user without a hash cannot log in with a password.
2. A user may use a vhost when it has a permission entry there (even one whose patterns match
   nothing). Each entry has three regular expressions, ``configure``, ``write`` and ``read``,
   searched (not anchored) in the resource name; the empty pattern means ``^$``. The default
   exchange is checked under the name ``amq.default``.
3. Topic permissions are per (user, vhost, exchange), with ``write`` and ``read`` patterns
   searched in the routing key after expanding ``{username}``, ``{vhost}`` and ``{client_id}``
   (where the front end has one). Without an entry for the exchange, every routing key is
   allowed. They apply to topic exchanges only (the caller decides).
4. Every change is checked first and applied whole; a refused change is a ``CoreError`` and
   changes nothing. Deleting a user removes its permissions; deleting a vhost (machine.py)
   removes every permission in it.
5. ``seeded`` records that the default user was created once (at the first start of an empty
   data directory), so deleting it later does not bring it back.

Which operation needs which permission (RabbitMQ's access control guide):

=====================================  ================================================
operation                              needs
=====================================  ================================================
queue.declare / exchange.declare       configure on the entity (passive: nothing)
queue.delete / exchange.delete         configure on the entity
queue.bind / exchange.bind (and unbind) write on the destination, read on the source
                                       exchange (+ topic read of the binding key)
basic.publish                          write on the exchange (+ topic write of the key)
basic.consume / basic.get / purge      read on the queue
=====================================  ================================================
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from functools import lru_cache
from typing import Any

from broker.core.model import NOT_FOUND, PRECONDITION_FAILED, CoreError

CONFIGURE = "configure"
WRITE = "write"
READ = "read"
PERMISSIONS = (CONFIGURE, WRITE, READ)
TOPIC_PERMISSIONS = (WRITE, READ)

SALT_BYTES = 4
HASH_BYTES = SALT_BYTES + 32
#: compiled permission patterns kept (shared by every check)
REGEX_CACHE_ENTRIES_MAX = 1024
#: checks remembered per state version (user, vhost, kind, name, permission) -> allowed
CHECK_CACHE_ENTRIES_MAX = 65536
NAME_CHARS_MAX = 255
PATTERN_CHARS_MAX = 4096
TAGS_MAX = 32
USERS_MAX = 100_000

# Tags RabbitMQ gives meaning to; others are kept as given.
TAG_ADMINISTRATOR = "administrator"
KNOWN_TAGS = ("administrator", "monitoring", "policymaker", "management", "impersonator")


def hash_password(password: str, salt: bytes) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256`` hash of ``password`` with ``salt``."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"the salt is {SALT_BYTES} bytes, got {len(salt)}")
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def valid_hash(stored: Any) -> bool:
    if not isinstance(stored, str):
        return False
    try:
        raw = base64.b64decode(stored.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    return len(raw) == HASH_BYTES


def check_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches the stored hash (constant time in the digest)."""
    if stored is None or not valid_hash(stored):
        return False
    raw = base64.b64decode(stored)
    salt = raw[:SALT_BYTES]
    digest = hashlib.sha256(salt + password.encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(raw[SALT_BYTES:], digest)


@lru_cache(maxsize=REGEX_CACHE_ENTRIES_MAX)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern or "^$")


def pattern_error(pattern: Any) -> str | None:
    """Why ``pattern`` cannot be a permission pattern, or None."""
    if not isinstance(pattern, str):
        return "a permission pattern is a string"
    if len(pattern) > PATTERN_CHARS_MAX:
        return f"a permission pattern is at most {PATTERN_CHARS_MAX} characters"
    try:
        _compiled(pattern)
    except re.error as exc:
        return f"invalid regular expression '{pattern}': {exc}"
    return None


def matches(pattern: str, subject: str) -> bool:
    """RabbitMQ's check: an unanchored search, ``""`` meaning ``^$``."""
    return _compiled(pattern).search(subject) is not None


def expand(pattern: str, variables: dict[str, str]) -> str:
    """``{username}``, ``{vhost}``, ``{client_id}`` in a topic permission pattern. Values are
    inserted as regex literals, so a user name with regex characters matches only itself."""
    for key, value in variables.items():
        pattern = pattern.replace("{" + key + "}", re.escape(value))
    return pattern


def refused_text(kind: str, name: str, vhost: str, user: str) -> str:
    """RabbitMQ's reply text for a refused resource access."""
    if kind == "exchange" and name == "":
        name = "amq.default"
    return (
        f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'"
    )


def topic_refused_text(exchange: str, routing_key: str, vhost: str, user: str) -> str:
    return (
        f"ACCESS_REFUSED - access to topic '{routing_key}' in exchange '{exchange}' in vhost"
        f" '{vhost}' refused for user '{user}'"
    )


def _name_error(what: str, name: Any) -> CoreError | None:
    if not isinstance(name, str) or not name or len(name) > NAME_CHARS_MAX:
        return CoreError(
            PRECONDITION_FAILED,
            f"PRECONDITION_FAILED - a {what} name is 1-{NAME_CHARS_MAX} characters",
        )
    return None


class User:
    __slots__ = ("name", "password_hash", "tags")

    def __init__(self, name: str, password_hash: str | None, tags: tuple[str, ...]) -> None:
        self.name = name
        self.password_hash = password_hash
        self.tags = tags

    def row(self) -> list[Any]:
        return [self.name, self.password_hash, list(self.tags)]

    def info(self) -> dict[str, Any]:
        """As RabbitMQ's management API shows a user (``hashing_algorithm`` included)."""
        return {
            "name": self.name,
            "password_hash": self.password_hash or "",
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": list(self.tags),
            "limits": {},
        }


class AuthState:
    """Users, permissions and topic permissions (see the module docstring)."""

    def __init__(self) -> None:
        self.seeded = False
        self.users: dict[str, User] = {}
        #: (user, vhost) -> (configure, write, read)
        self.permissions: dict[tuple[str, str], tuple[str, str, str]] = {}
        #: (user, vhost, exchange) -> (write, read)
        self.topic_permissions: dict[tuple[str, str, str], tuple[str, str]] = {}
        #: bumped by every change; lets front ends cache what they looked up
        self.version = 0
        self._checks: dict[tuple[str, str, str, str, str], bool] = {}

    def _changed(self) -> None:
        self.version += 1
        self._checks.clear()

    # -- changes (each one a logged command; see machine.py) ---------------------------------

    def put_user(self, name: Any, password_hash: Any, tags: Any) -> CoreError | None:
        err = _name_error("user", name)
        if err is not None:
            return err
        if password_hash is not None and not valid_hash(password_hash):
            return CoreError(
                PRECONDITION_FAILED,
                "PRECONDITION_FAILED - a password hash is the base64 of a 4-byte salt and a"
                " SHA-256 digest",
            )
        if (
            not isinstance(tags, list)
            or len(tags) > TAGS_MAX
            or not all(isinstance(t, str) and 0 < len(t) <= NAME_CHARS_MAX for t in tags)
        ):
            return CoreError(
                PRECONDITION_FAILED, f"PRECONDITION_FAILED - tags are at most {TAGS_MAX} names"
            )
        if name not in self.users and len(self.users) >= USERS_MAX:
            return CoreError(
                PRECONDITION_FAILED, f"PRECONDITION_FAILED - at most {USERS_MAX} users"
            )
        self.users[name] = User(name, password_hash, tuple(dict.fromkeys(tags)))
        self._changed()
        return None

    def delete_user(self, name: Any) -> CoreError | None:
        if not isinstance(name, str) or name not in self.users:
            return CoreError(NOT_FOUND, f"NOT_FOUND - no user '{name}'")
        del self.users[name]
        for key in [k for k in self.permissions if k[0] == name]:
            del self.permissions[key]
        for tkey in [k for k in self.topic_permissions if k[0] == name]:
            del self.topic_permissions[tkey]
        self._changed()
        return None

    def _user_vhost_error(self, user: Any, vhost: Any, vhosts: Any) -> CoreError | None:
        if not isinstance(user, str) or user not in self.users:
            return CoreError(NOT_FOUND, f"NOT_FOUND - no user '{user}'")
        if not isinstance(vhost, str) or vhost not in vhosts:
            return CoreError(NOT_FOUND, f"NOT_FOUND - no vhost '{vhost}'")
        return None

    def set_permissions(
        self, user: Any, vhost: Any, patterns: list[Any], vhosts: Any
    ) -> CoreError | None:
        err = self._user_vhost_error(user, vhost, vhosts)
        if err is not None:
            return err
        for p in patterns:
            why = pattern_error(p)
            if why is not None:
                return CoreError(PRECONDITION_FAILED, f"PRECONDITION_FAILED - {why}")
        configure, write, read = patterns
        self.permissions[(user, vhost)] = (configure, write, read)
        self._changed()
        return None

    def clear_permissions(self, user: Any, vhost: Any, vhosts: Any) -> CoreError | None:
        err = self._user_vhost_error(user, vhost, vhosts)
        if err is not None:
            return err
        self.permissions.pop((user, vhost), None)
        self._changed()
        return None

    def set_topic_permissions(
        self, user: Any, vhost: Any, exchange: Any, patterns: list[Any], vhosts: Any
    ) -> CoreError | None:
        err = self._user_vhost_error(user, vhost, vhosts)
        if err is not None:
            return err
        if not isinstance(exchange, str) or len(exchange) > NAME_CHARS_MAX:
            return CoreError(PRECONDITION_FAILED, "PRECONDITION_FAILED - invalid exchange name")
        for p in patterns:
            why = pattern_error(p)
            if why is not None:
                return CoreError(PRECONDITION_FAILED, f"PRECONDITION_FAILED - {why}")
        write, read = patterns
        self.topic_permissions[(user, vhost, exchange)] = (write, read)
        self._changed()
        return None

    def clear_topic_permissions(
        self, user: Any, vhost: Any, exchange: Any, vhosts: Any
    ) -> CoreError | None:
        """``exchange`` None clears the user's topic permissions of every exchange."""
        err = self._user_vhost_error(user, vhost, vhosts)
        if err is not None:
            return err
        if exchange is not None and not isinstance(exchange, str):
            return CoreError(PRECONDITION_FAILED, "PRECONDITION_FAILED - invalid exchange name")
        for key in [
            k
            for k in self.topic_permissions
            if k[0] == user and k[1] == vhost and (exchange is None or k[2] == exchange)
        ]:
            del self.topic_permissions[key]
        self._changed()
        return None

    def vhost_deleted(self, vhost: str) -> None:
        for key in [k for k in self.permissions if k[1] == vhost]:
            del self.permissions[key]
        for tkey in [k for k in self.topic_permissions if k[1] == vhost]:
            del self.topic_permissions[tkey]
        self._changed()

    def seed(
        self, name: Any, password_hash: Any, tags: Any, vhost: str, vhosts: Any
    ) -> CoreError | bool:
        """Create the default user with every permission on ``vhost``, once per data
        directory. True when it was created now, False when the state was seeded before."""
        if self.seeded:
            return False
        err = self.put_user(name, password_hash, tags)
        if err is not None:
            return err
        self.seeded = True
        if vhost in vhosts:
            self.permissions[(name, vhost)] = (".*", ".*", ".*")
        self._changed()
        return True

    # -- checks --------------------------------------------------------------------------------

    def authenticate(self, name: str, password: str) -> User | None:
        user = self.users.get(name)
        if user is None or not check_password(user.password_hash, password):
            return None
        return user

    def vhost_access(self, user: str, vhost: str) -> bool:
        return (user, vhost) in self.permissions

    def allowed(self, user: str, vhost: str, kind: str, name: str, permission: str) -> bool:
        """Whether ``user`` has ``permission`` on the ``kind`` (queue, exchange) ``name``."""
        key = (user, vhost, kind, name, permission)
        hit = self._checks.get(key)
        if hit is not None:
            return hit
        perms = self.permissions.get((user, vhost))
        if perms is None:
            ok = False
        else:
            if kind == "exchange" and name == "":
                name = "amq.default"
            ok = matches(perms[PERMISSIONS.index(permission)], name)
        if len(self._checks) >= CHECK_CACHE_ENTRIES_MAX:
            self._checks.clear()
        self._checks[key] = ok
        return ok

    def topic_allowed(
        self,
        user: str,
        vhost: str,
        exchange: str,
        routing_key: str,
        permission: str,
        variables: dict[str, str] | None = None,
    ) -> bool:
        perms = self.topic_permissions.get((user, vhost, exchange))
        if perms is None:
            return True
        pattern = perms[TOPIC_PERMISSIONS.index(permission)]
        if "{" in pattern:
            values = {"username": user, "vhost": vhost}
            if variables:
                values.update(variables)
            pattern = expand(pattern, values)
            if pattern_error(pattern) is not None:
                return False
        return matches(pattern, routing_key)

    # -- queries -------------------------------------------------------------------------------

    def list_users(self) -> list[dict[str, Any]]:
        return [self.users[n].info() for n in sorted(self.users)]

    def list_permissions(
        self, *, user: str | None = None, vhost: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            {"user": u, "vhost": v, "configure": c, "write": w, "read": r}
            for (u, v), (c, w, r) in sorted(self.permissions.items())
            if (user is None or u == user) and (vhost is None or v == vhost)
        ]

    def list_topic_permissions(
        self, *, user: str | None = None, vhost: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            {"user": u, "vhost": v, "exchange": x, "write": w, "read": r}
            for (u, v, x), (w, r) in sorted(self.topic_permissions.items())
            if (user is None or u == user) and (vhost is None or v == vhost)
        ]

    # -- snapshot ------------------------------------------------------------------------------

    def dump(self) -> list[Any]:
        """``[seeded, users, permissions, topic_permissions]`` in canonical order."""
        return [
            self.seeded,
            [self.users[n].row() for n in sorted(self.users)],
            [[u, v, *p] for (u, v), p in sorted(self.permissions.items())],
            [[u, v, x, *p] for (u, v, x), p in sorted(self.topic_permissions.items())],
        ]

    @classmethod
    def load(cls, row: list[Any]) -> AuthState:
        state = cls()
        seeded, users, permissions, topic_permissions = row
        state.seeded = bool(seeded)
        for name, password_hash, tags in users:
            state.users[name] = User(name, password_hash, tuple(tags))
        for u, v, c, w, r in permissions:
            state.permissions[(u, v)] = (c, w, r)
        for u, v, x, w, r in topic_permissions:
            state.topic_permissions[(u, v, x)] = (w, r)
        return state

    def check(self, vhosts: Any) -> None:
        """Invariants: permissions name existing users and vhosts; patterns compile; hashes
        are well formed."""
        for name, user in self.users.items():
            if user.name != name:
                raise AssertionError(f"user '{name}' stored under the wrong name")
            if user.password_hash is not None and not valid_hash(user.password_hash):
                raise AssertionError(f"user '{name}' has a malformed password hash")
        for (u, v), patterns in self.permissions.items():
            if u not in self.users or v not in vhosts:
                raise AssertionError(f"permissions of missing user '{u}' or vhost '{v}'")
            if any(pattern_error(p) is not None for p in patterns):
                raise AssertionError(f"permissions of '{u}' in '{v}' do not compile")
        for (u, v, _x), tpatterns in self.topic_permissions.items():
            if u not in self.users or v not in vhosts:
                raise AssertionError(f"topic permissions of missing user '{u}' or vhost '{v}'")
            if any(pattern_error(p) is not None for p in tpatterns):
                raise AssertionError(f"topic permissions of '{u}' in '{v}' do not compile")
