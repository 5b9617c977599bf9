"""The AWS JSON protocols 1.0 and 1.1: ``POST /`` with ``X-Amz-Target: {prefix}.{Operation}``
and a JSON body holding the params, replies as JSON.

Wire facts, as botocore's ``JSONSerializer`` and ``JSONParser`` implement them:

* the body is the input structure as a JSON object keyed by member names (a member's
  ``locationName`` if the model gives one); blobs are base64 strings, timestamps epoch seconds
  (numbers); an empty body means ``{}``;
* ``Content-Type: application/x-amz-json-{jsonVersion}`` both ways, ``x-amzn-RequestId`` on
  every reply;
* an error is ``{"__type": "{namespace}#{Code}", "message": "..."}`` with the HTTP status of the
  error; a service marked ``awsQueryCompatible`` (SQS) adds ``x-amzn-query-error:
  {query code};Sender|Receiver``, from which botocore reports the legacy query code in
  ``Error.Code`` (``AWS.SimpleQueueService.NonExistentQueue``) and the shape name in
  ``Error.QueryErrorCode`` (``QueueDoesNotExist``), and raises the modeled exception class.

Decoding checks types against the input shape: a body that is not JSON or not an object ->
``SerializationException``; a required member missing -> ``MissingParameter``; a value of the
wrong type -> ``InvalidParameterValue``. Members the model does not know are dropped. Blobs are
decoded to ``bytes`` and timestamps to aware ``datetime`` objects, as the query codec does.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from typing import Any

from botocore.model import OperationModel, Shape, StructureShape

from protocols.aws.errors import AwsError, invalid_parameter, missing_parameter
from protocols.aws.wire_query import parse_timestamp

_NESTING_MAX = 32


def _name(shape: Shape, default: str) -> str:
    return str(shape.serialization.get("name") or default)


def decode_request(operation: OperationModel, body: bytes) -> dict[str, Any]:
    if body.strip() == b"":
        document: Any = {}
    else:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise AwsError(
                "SerializationException", "The request body is not a valid JSON document."
            ) from None
    if not isinstance(document, dict):
        raise AwsError(
            "SerializationException", "Start of structure or map found where not expected."
        )
    shape = operation.input_shape
    if shape is None:
        return {}
    assert isinstance(shape, StructureShape)
    out: dict[str, Any] = _decode_structure(document, shape, "", 0)
    return out


def _decode(value: Any, shape: Shape, path: str, depth: int) -> Any:
    if depth > _NESTING_MAX:
        raise invalid_parameter(path, "", "nested too deeply")
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise invalid_parameter(path, _shown(value), "must be a structure")
        assert isinstance(shape, StructureShape)
        return _decode_structure(value, shape, path, depth)
    if kind == "list":
        if not isinstance(value, list):
            raise invalid_parameter(path, _shown(value), "must be a list")
        member: Shape = shape.member
        return [_decode(item, member, f"{path}.{i}", depth + 1) for i, item in enumerate(value, 1)]
    if kind == "map":
        if not isinstance(value, dict):
            raise invalid_parameter(path, _shown(value), "must be a map")
        value_shape: Shape = shape.value
        return {
            str(key): _decode(item, value_shape, f"{path}.{key}", depth + 1)
            for key, item in value.items()
        }
    return _decode_scalar(value, shape, path)


def _decode_structure(
    value: dict[str, Any], shape: StructureShape, path: str, depth: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, member in shape.members.items():
        wire = _name(member, name)
        if wire not in value or value[wire] is None:
            continue
        member_path = f"{path}.{wire}" if path else wire
        out[name] = _decode(value[wire], member, member_path, depth + 1)
    for name in shape.required_members:
        if name not in out:
            wire = _name(shape.members[name], name)
            raise missing_parameter(f"{path}.{wire}" if path else wire)
    return out


def _shown(value: Any) -> str:
    return json.dumps(value)[:64] if not isinstance(value, str) else value


def _decode_scalar(value: Any, shape: Shape, path: str) -> Any:
    kind = shape.type_name
    if kind == "string":
        if not isinstance(value, str):
            raise invalid_parameter(path, _shown(value), "must be a string")
        return value
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_parameter(path, _shown(value), "must be an integer")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise invalid_parameter(path, _shown(value), "must be a boolean")
        return value
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid_parameter(path, _shown(value), "must be a number")
        return float(value)
    if kind == "blob":
        if not isinstance(value, str):
            raise invalid_parameter(path, _shown(value), "must be a base64 string")
        try:
            return base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise invalid_parameter(path, value, "must be base64") from None
    if kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise invalid_parameter(path, _shown(value), "must be a timestamp")
        if isinstance(value, str):
            return parse_timestamp(value, path)
        try:
            return dt.datetime.fromtimestamp(value, dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise invalid_parameter(path, _shown(value), "must be a timestamp") from None
    return value


# -- replies ------------------------------------------------------------------------------------


def encode_response(operation: OperationModel, output: dict[str, Any] | None) -> bytes:
    shape = operation.output_shape
    document: dict[str, Any] = {}
    if shape is not None and output:
        assert isinstance(shape, StructureShape)
        document = _encode_structure(output, shape)
    return json.dumps(document, separators=(",", ":")).encode("ascii")


def encode_error(error_type: str, message: str) -> bytes:
    return json.dumps({"__type": error_type, "message": message}).encode("ascii")


def _encode_structure(value: dict[str, Any], shape: StructureShape) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{shape.name}: expected a dict, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for name, member in shape.members.items():
        item = value.get(name)
        if item is None:
            continue
        out[_name(member, name)] = _encode(item, member)
    return out


def _encode(value: Any, shape: Shape) -> Any:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        return _encode_structure(value, shape)
    if kind == "list":
        member: Shape = shape.member
        return [_encode(item, member) for item in value]
    if kind == "map":
        value_shape: Shape = shape.value
        return {str(key): _encode(item, value_shape) for key, item in value.items()}
    if kind == "blob":
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode("ascii")
    if kind == "timestamp":
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            seconds = value.timestamp()
        else:
            seconds = float(value)
        return int(seconds) if seconds.is_integer() else seconds
    if kind == "boolean":
        return bool(value)
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("float", "double"):
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            return str(number)
        return number
    return str(value)
