"""Small value types shared by the core: apply metadata and error replies."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Meta:
    """Where an apply comes from. ``index == 0`` is a local (not logged) apply."""

    index: int
    term: int
    time_ms: int


@dataclass(frozen=True, slots=True)
class CoreError:
    """An error reply; codes as AMQP 0-9-1 (403, 404, 405, 406, 503, 530, 541)."""

    code: int
    text: str


ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
COMMAND_INVALID = 503
NOT_ALLOWED = 530
INTERNAL_ERROR = 541

#: A session id's low bits number the session within its connection (an AMQP channel); the
#: session whose low bits are zero is the connection's own. Exclusive queues belong to the
#: connection: every session of that connection may use them, and they go when the
#: connection's own session goes down.
SESSION_CONNECTION_SHIFT = 16
SESSION_CONNECTION_MASK = ~((1 << SESSION_CONNECTION_SHIFT) - 1)


def connection_of(session: int) -> int:
    """The connection's own session id for ``session``."""
    return session & SESSION_CONNECTION_MASK


#: First id of the local (not logged) message id space.
LOCAL_ID_BASE = 1 << 62
#: First id of the logged overflow space, for copies past the per-entry range.
OVERFLOW_ID_BASE = 1 << 61

#: Session ids from this one up belong to no connection: service sessions (SQS receives)
#: whose leases survive a restart and a change of leader.
SERVICE_SESSION_BASE = 1 << 60
