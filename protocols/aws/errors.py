"""The error every AWS-compatible service of polymq raises, and the HTTP layer turns into the
wire protocol's error document.

``code`` is the error shape name of the botocore model (``QueueDoesNotExist``) or one of the
common AWS error codes (``InvalidParameterValue``, ``MissingParameter``, ``AccessDenied``, ...).
The query protocol shows the shape's legacy query code instead (``error.code`` in the model,
``AWS.SimpleQueueService.NonExistentQueue`` for ``QueueDoesNotExist``); the JSON protocol shows
the shape name in ``__type`` and the query code in the ``x-amzn-query-error`` header of services
that are ``awsQueryCompatible``. ``sender_fault`` becomes ``Sender`` or ``Receiver``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from broker.adapters.errors import ServiceError


class AwsError(Exception):
    def __init__(
        self, code: str, message: str, *, status: int = 400, sender_fault: bool = True
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.sender_fault = sender_fault

    @property
    def fault(self) -> str:
        """``Sender`` or ``Receiver``, as the query protocol's ``<Type>`` names it."""
        return "Sender" if self.sender_fault else "Receiver"


def missing_parameter(name: str) -> AwsError:
    return AwsError("MissingParameter", f"The request must contain the parameter {name}.")


def invalid_parameter(name: str, value: object, reason: str) -> AwsError:
    shown = str(value)
    if len(shown) > 64:
        shown = shown[:64] + "..."
    return AwsError(
        "InvalidParameterValue",
        f"Value {shown} for parameter {name} is invalid. Reason: {reason}.",
    )


def internal_failure() -> AwsError:
    return AwsError(
        "InternalFailure",
        "The request processing has failed because of an unknown error, exception or failure.",
        status=500,
        sender_fault=False,
    )


@contextmanager
def service_errors() -> Iterator[None]:
    """Turn an adapter's ``ServiceError`` into the ``AwsError`` the HTTP layer renders."""
    try:
        yield
    except ServiceError as exc:
        raise AwsError(
            exc.code, exc.message, status=exc.status, sender_fault=exc.sender_fault
        ) from None
