"""The error every adapter raises for a request it refuses.

``code`` is the error shape name of the service's botocore model (``QueueDoesNotExist``) or a
common AWS error code (``InvalidParameterValue``, ``MissingParameter``); the HTTP layer renders it
in the wire protocol of the request.
"""

from __future__ import annotations


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
