"""A service of the AWS endpoint served by one adapter of ``broker/adapters``.

The HTTP layer routes and decodes a request by the service's botocore model (``model_name``,
``protocol``, ``json_target_prefix``: see :class:`protocols.aws.http.AwsService`) into the
operation's input shape; the service hands ``req.action`` and ``req.params`` (and whatever
``context`` adds, such as the host a queue URL names) to the adapter, and the adapter's
``ServiceError`` becomes the ``AwsError`` the HTTP layer renders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from protocols.aws.errors import service_errors
from protocols.aws.http import AwsRequest


class Adapter(Protocol):
    @property
    def handle(self) -> Callable[..., Awaitable[dict[str, Any]]]: ...


A = TypeVar("A", bound=Adapter)


class AdapterService(Generic[A]):
    name: str
    model_name: str
    #: the ``X-Amz-Target`` prefix of the JSON protocol, ``""`` for none
    json_target_prefix = ""
    #: ``"json"`` (JSON and query protocols, by ``X-Amz-Target`` / ``Action``) or ``"rest-json"``
    protocol = "json"

    def __init__(self, adapter: A) -> None:
        self.adapter = adapter

    def context(self, req: AwsRequest) -> tuple[Any, ...]:
        """What the adapter's ``handle`` takes after the action and its parameters."""
        return ()

    async def handle(self, req: AwsRequest) -> dict[str, Any]:
        with service_errors():
            return await self.adapter.handle(req.action, req.params, *self.context(req))
