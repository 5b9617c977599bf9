"""A service's objects kept in the core as durable internal exchanges.

Each object (a schema registry, a flow, a state machine, an execution, ...) is one durable,
internal fanout exchange named ``<prefix><key>``; its record, a JSON object, is the value of one
argument of that exchange (``x-schemas``, ``x-appflow``, ``x-sfn``). The core persists and
replicates exchanges, so the records survive restarts and follow the leader of a cluster, and a
record changes in one step (``set_exchange_arguments``). Nothing is bound to or routed through
these exchanges; the prefix of a name says what kind of object it holds.
"""

from __future__ import annotations

from typing import Any

from broker.api import Broker, BrokerError


class ExchangeStore:
    """The records kept in argument ``arg`` of the exchanges of ``vhost``."""

    def __init__(self, broker: Broker, arg: str, *, vhost: str = "/") -> None:
        self.broker = broker
        self.arg = arg
        self.vhost = vhost

    async def declare(self, name: str, record: dict[str, Any]) -> None:
        """Create the object; the core refuses (406) a name that holds other arguments."""
        await self.broker.declare_exchange(
            name,
            "fanout",
            vhost=self.vhost,
            durable=True,
            internal=True,
            arguments={self.arg: record},
        )

    async def set(self, name: str, record: dict[str, Any]) -> None:
        """Replace the record of an object that exists."""
        await self.broker.set_exchange_arguments(name, {self.arg: record}, vhost=self.vhost)

    async def put(self, name: str, record: dict[str, Any]) -> None:
        """Create the object or replace its record."""
        if self.broker.exchange_info(name, vhost=self.vhost) is None:
            await self.declare(name, record)
        else:
            await self.set(name, record)

    async def drop(self, name: str) -> None:
        """Delete the object; one already gone is no error."""
        try:
            await self.broker.delete_exchange(name, vhost=self.vhost)
        except BrokerError as exc:
            if exc.code != 404:
                raise

    def get(self, name: str) -> dict[str, Any] | None:
        """A copy of the object's record; None when there is no such object."""
        info = self.broker.exchange_info(name, vhost=self.vhost)
        if info is None:
            return None
        record = info["arguments"].get(self.arg)
        return dict(record) if isinstance(record, dict) else None

    def items(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        """``(key, record)`` of every object whose name is ``prefix + key``."""
        out = []
        for x in self.broker.list_exchanges(vhost=self.vhost):
            name = x["name"]
            if name.startswith(prefix):
                record = x["arguments"].get(self.arg)
                if isinstance(record, dict):
                    out.append((name[len(prefix) :], dict(record)))
        return out

    def records(self, prefix: str) -> list[dict[str, Any]]:
        """The records of every object whose name starts with ``prefix``."""
        return [record for _key, record in self.items(prefix)]
