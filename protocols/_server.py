"""Shared trio TCP serving for the protocol front ends: a bounded number of connections per
listener, one task per connection, errors of one connection never reaching another."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger("polymq.server")

Handler = Callable[[trio.SocketStream], Awaitable[None]]


def is_loopback(peer: tuple[str, int] | None) -> bool:
    """Whether a peer address is on this machine (the default user connects only from here)."""
    if peer is None:
        return True
    host = peer[0]
    return host.startswith("127.") or host in ("::1", "localhost") or host.startswith("::ffff:127.")


def fmt_peer(peer: tuple[str, int] | None) -> str:
    return "" if peer is None else f"{peer[0]}:{peer[1]}"


class ConnectionLimiter:
    """Counts a listener's open connections; past ``connections_max`` new ones are closed."""

    def __init__(self, name: str, connections_max: int) -> None:
        self.name = name
        self.connections_max = connections_max
        self.open = 0
        self.accepted = 0
        self.refused = 0

    def statistics(self) -> dict[str, int]:
        return {"open": self.open, "accepted": self.accepted, "refused": self.refused}


async def serve(
    listeners: list[trio.SocketListener], handler: Handler, limiter: ConnectionLimiter
) -> None:
    async def guarded(stream: trio.SocketStream) -> None:
        if limiter.open >= limiter.connections_max:
            limiter.refused += 1
            log.warning(
                "connection refused: limit reached",
                extra={"listener": limiter.name, "connections_max": limiter.connections_max},
            )
            await trio.aclose_forcefully(stream)
            return
        limiter.open += 1
        limiter.accepted += 1
        try:
            await handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            log.exception("connection handler failed", extra={"listener": limiter.name})
        finally:
            limiter.open -= 1
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(guarded, listeners)
