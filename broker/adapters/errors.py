"""The error every adapter raises for a request it refuses, and the dispatch they share.

``code`` is the error shape name of the service's botocore model (``QueueDoesNotExist``) or a
common AWS error code (``InvalidParameterValue``, ``MissingParameter``); the HTTP layer renders it
in the wire protocol of the request.

An adapter is a :class:`Dispatcher`: its ``handle`` serves an action by name, and what the
dispatcher itself refuses (an unknown action, a ``BrokerError`` of the core) it names with the
service's own codes, a :class:`ServiceCodes`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from broker.api import BrokerError


class ServiceError(Exception):
    def __init__(
        self, code: str, message: str, *, status: int = 400, sender_fault: bool = True
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.sender_fault = sender_fault


def invalid_value(message: str) -> ServiceError:
    return ServiceError("InvalidParameterValue", message)


def missing(name: str) -> ServiceError:
    return ServiceError("MissingParameter", f"The request must contain the parameter {name}.")


@dataclass(frozen=True)
class ServiceCodes:
    """A service's own codes for the refusals its dispatcher makes rather than its actions.

    ``unsupported`` (with ``unsupported_message``, formatted with ``action``) answers an action
    the adapter does not serve (status 400). A ``BrokerError`` from the core becomes ``busy``
    when the core is overloaded or has no leader (codes 503 and 506; a sender fault when
    ``busy_status`` is below 500; None: no such code, ``internal`` serves), ``not_found()`` for a
    404 when given (SQS: the queue went while the request ran), else ``internal`` (status 500).
    """

    unsupported: str
    internal: str
    unsupported_message: str = "{action} is not supported by polymq."
    busy: str | None = None
    busy_status: int = 503
    not_found: Callable[[], ServiceError] | None = None

    def unsupported_action(self, action: str) -> ServiceError:
        return ServiceError(self.unsupported, self.unsupported_message.format(action=action))

    def refusal(self, exc: BrokerError) -> ServiceError:
        if exc.code == 404 and self.not_found is not None:
            return self.not_found()
        if exc.code in (503, 506) and self.busy is not None:
            return ServiceError(
                self.busy, exc.text, status=self.busy_status, sender_fault=self.busy_status < 500
            )
        return ServiceError(self.internal, exc.text, status=500, sender_fault=False)


Handler = Callable[..., Awaitable[dict[str, Any]]]


class Dispatcher:
    """Serves a service's actions from ``_actions`` (action name -> handler), refusing with the
    service's ``codes``."""

    codes: ClassVar[ServiceCodes]
    _actions: dict[str, Handler]

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(self._actions)

    async def _dispatch(self, action: str, *args: Any) -> dict[str, Any]:
        handler = self._actions.get(action)
        if handler is None:
            raise self.codes.unsupported_action(action)
        try:
            return await handler(*args)
        except BrokerError as exc:
            raise self.codes.refusal(exc) from None
