"""The AWS query protocol: form-encoded requests (``Action=SendMessage&Version=...``) parsed into
the JSON-shaped params dict, and XML replies and error documents.

Wire facts, as botocore's ``QuerySerializer`` and ``QueryParser`` implement them:

* a structure member is ``Prefix.Name`` where ``Name`` is the member's ``locationName`` or its
  name; a list is ``Name.member.N`` (``member`` replaced by the list member's ``locationName``),
  or, ``flattened``, ``Name.N`` with ``Name`` replaced by the list member's ``locationName``
  (SQS ``AttributeName.1``); an empty list is sent as ``Name=`` alone; a map is
  ``Name.entry.N.key``/``.value``, or, ``flattened``, ``Name.N.key``/``.value``, where ``key`` and
  ``value`` are the key's and value's ``locationName`` (SQS ``Attribute.1.Name``,
  ``MessageAttribute.1.Value.StringValue``); indexes start at 1; when two members share a wire
  name (SQS ``ReceiveMessage``: ``AttributeNames`` and ``MessageSystemAttributeNames`` are both
  ``AttributeName.N``) the first member declared gets the value;
* booleans are ``true``/``false``, blobs base64, timestamps ISO 8601;
* the reply is ``<{Op}Response xmlns=...><{Op}Result>...</{Op}Result><ResponseMetadata>
  <RequestId>...</RequestId></ResponseMetadata></{Op}Response>``, the result element named by
  the output's ``resultWrapper``; lists and maps in the reply follow the same naming rules;
* an error is ``<ErrorResponse><Error><Type>Sender|Receiver</Type><Code>...</Code><Message>...
  </Message><Detail/></Error><RequestId>...</RequestId></ErrorResponse>``, ``Content-Type:
  text/xml``.

Garbage never raises anything but :class:`AwsError` (``MissingParameter``,
``InvalidParameterValue``, ``MalformedQueryString``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import re
from typing import Any
from urllib.parse import parse_qsl

from botocore.model import OperationModel, Shape, StructureShape

from protocols.aws.errors import AwsError, invalid_parameter, missing_parameter

CONTENT_TYPE = "text/xml"
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_XML_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#xD;", "'": "&apos;"}
)
_NESTING_MAX = 32


class _Node:
    """One dotted component of the form's keys: its value, if a key ends here, and children."""

    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.value: str | None = None
        self.children: dict[str, _Node] = {}


def parse_form(data: bytes | str) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` (or a query string) to a dict; the last of repeated
    keys wins. Invalid percent-encoded UTF-8 -> ``MalformedQueryString``."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise AwsError("MalformedQueryString", "The query string is not valid UTF-8.") from exc
    return dict(pairs)


def _tree(form: dict[str, str]) -> _Node:
    root = _Node()
    for key, value in form.items():
        node = root
        for part in key.split(".")[:_NESTING_MAX]:
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node()
            node = child
        node.value = value
    return root


def _name(shape: Shape, default: str) -> str:
    return str(shape.serialization.get("name") or default)


def _flattened(shape: Shape) -> bool:
    return bool(shape.serialization.get("flattened"))


def _member_wire_name(member: Shape, name: str) -> str:
    if member.type_name == "list" and _flattened(member):
        listed = member.member.serialization.get("name")
        if listed:
            return str(listed)
    return _name(member, name)


def decode_request(operation: OperationModel, form: dict[str, str]) -> dict[str, Any]:
    """The params of ``operation`` from a parsed form, in the JSON shape of the model."""
    shape = operation.input_shape
    if shape is None:
        return {}
    assert isinstance(shape, StructureShape)
    result: dict[str, Any] = _decode_structure(_tree(form), shape, "")
    return result


def _decode(node: _Node, shape: Shape, path: str, depth: int) -> Any:
    if depth > _NESTING_MAX:
        raise invalid_parameter(path, "", "nested too deeply")
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        return _decode_structure(node, shape, path, depth)
    if kind == "list":
        return _decode_list(node, shape, path, depth)
    if kind == "map":
        return _decode_map(node, shape, path, depth)
    if node.value is None:
        raise invalid_parameter(path, "", "a value is required")
    return decode_scalar(node.value, shape, path)


def _decode_structure(node: _Node, shape: StructureShape, path: str, depth: int = 0) -> Any:
    out: dict[str, Any] = {}
    claimed: set[str] = set()
    for name, member in shape.members.items():
        wire = _member_wire_name(member, name)
        child = node.children.get(wire)
        if child is None and member.type_name == "list":
            # botocore sends an empty flattened list under the member's own name: ``Name=``.
            alias = node.children.get(_name(member, name))
            if alias is not None and alias.value == "" and not alias.children:
                out[name] = []
                continue
        if child is None or wire in claimed:
            continue
        claimed.add(wire)
        member_path = f"{path}.{wire}" if path else wire
        out[name] = _decode(child, member, member_path, depth + 1)
    for name in shape.required_members:
        if name not in out:
            wire = _member_wire_name(shape.members[name], name)
            raise missing_parameter(f"{path}.{wire}" if path else wire)
    return out


def _indexed(node: _Node, path: str) -> list[tuple[str, _Node]]:
    items: list[tuple[int, str, _Node]] = []
    for key, child in node.children.items():
        if not key.isdigit() or not key.isascii():
            continue
        index = int(key)
        if index < 1:
            raise invalid_parameter(f"{path}.{key}", key, "indexes start at 1")
        items.append((index, key, child))
    items.sort(key=lambda item: item[0])
    return [(key, child) for _, key, child in items]


def _decode_list(node: _Node, shape: Shape, path: str, depth: int) -> list[Any]:
    member: Shape = shape.member
    if not _flattened(shape):
        inner = member.serialization.get("name") or "member"
        holder = node.children.get(inner)
        if holder is None:
            return []
        node, path = holder, f"{path}.{inner}"
    return [
        _decode(child, member, f"{path}.{key}", depth + 1) for key, child in _indexed(node, path)
    ]


def _decode_map(node: _Node, shape: Shape, path: str, depth: int) -> dict[str, Any]:
    key_shape: Shape = shape.key
    value_shape: Shape = shape.value
    key_name = _name(key_shape, "key")
    value_name = _name(value_shape, "value")
    if not _flattened(shape):
        holder = node.children.get("entry")
        if holder is None:
            return {}
        node, path = holder, f"{path}.entry"
    out: dict[str, Any] = {}
    for index, entry in _indexed(node, path):
        entry_path = f"{path}.{index}"
        key_node = entry.children.get(key_name)
        if key_node is None or key_node.value is None:
            raise missing_parameter(f"{entry_path}.{key_name}")
        value_node = entry.children.get(value_name)
        if value_node is None:
            raise missing_parameter(f"{entry_path}.{value_name}")
        out[key_node.value] = _decode(value_node, value_shape, f"{entry_path}.{value_name}", depth)
    return out


def decode_scalar(text: str, shape: Shape, path: str) -> Any:
    kind = shape.type_name
    if kind == "string":
        return text
    if kind in ("integer", "long"):
        if not _INT_RE.match(text):
            raise invalid_parameter(path, text, "must be an integer")
        return int(text)
    if kind == "boolean":
        lowered = text.lower()
        if lowered not in ("true", "false"):
            raise invalid_parameter(path, text, "must be true or false")
        return lowered == "true"
    if kind in ("float", "double"):
        try:
            number = float(text)
        except ValueError:
            raise invalid_parameter(path, text, "must be a number") from None
        if math.isnan(number) and text.lower() != "nan":
            raise invalid_parameter(path, text, "must be a number")
        return number
    if kind == "blob":
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise invalid_parameter(path, text, "must be base64") from None
    if kind == "timestamp":
        return parse_timestamp(text, path)
    return text


def parse_timestamp(text: str, path: str) -> dt.datetime:
    """ISO 8601 (``2024-01-01T00:00:00Z``, with or without fractions) or epoch seconds."""
    try:
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
            return dt.datetime.fromtimestamp(float(text), dt.UTC)
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise invalid_parameter(path, text, "must be an ISO 8601 timestamp") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


# -- replies ------------------------------------------------------------------------------------


def escape(text: str) -> str:
    return text.translate(_XML_ESCAPES)


def encode_response(
    operation: OperationModel, output: dict[str, Any] | None, request_id: str, namespace: str
) -> bytes:
    name = operation.name
    parts = [f'<?xml version="1.0"?>\n<{name}Response xmlns="{escape(namespace)}">']
    shape = operation.output_shape
    if shape is not None:
        wrapper = shape.serialization.get("resultWrapper") or f"{name}Result"
        parts.append(f"<{wrapper}>")
        assert isinstance(shape, StructureShape)
        _encode_members(parts, output or {}, shape)
        parts.append(f"</{wrapper}>")
    parts.append(f"<ResponseMetadata><RequestId>{escape(request_id)}</RequestId>")
    parts.append(f"</ResponseMetadata></{name}Response>")
    return "".join(parts).encode("utf-8", "replace")


def encode_error(code: str, message: str, fault: str, request_id: str) -> bytes:
    return (
        '<?xml version="1.0"?>\n<ErrorResponse><Error>'
        f"<Type>{escape(fault)}</Type><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message><Detail/></Error>"
        f"<RequestId>{escape(request_id)}</RequestId></ErrorResponse>"
    ).encode("utf-8", "replace")


def _encode_members(parts: list[str], value: dict[str, Any], shape: StructureShape) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"{shape.name}: expected a dict, got {type(value).__name__}")
    for name, member in shape.members.items():
        item = value.get(name)
        if item is None:
            continue
        _encode_named(parts, item, member, _name(member, name))


def _encode_named(parts: list[str], value: Any, shape: Shape, tag: str) -> None:
    kind = shape.type_name
    if kind == "list":
        member: Shape = shape.member
        if _flattened(shape):
            item_tag = _name(member, tag)
            for item in value:
                _encode_named(parts, item, member, item_tag)
        else:
            item_tag = _name(member, "member")
            parts.append(f"<{tag}>")
            for item in value:
                _encode_named(parts, item, member, item_tag)
            parts.append(f"</{tag}>")
    elif kind == "map":
        key_tag = _name(shape.key, "key")
        value_shape: Shape = shape.value
        value_tag = _name(value_shape, "value")
        flat = _flattened(shape)
        if not flat:
            parts.append(f"<{tag}>")
        for key, item in value.items():
            parts.append(f"<{tag}>" if flat else "<entry>")
            parts.append(f"<{key_tag}>{escape(str(key))}</{key_tag}>")
            _encode_named(parts, item, value_shape, value_tag)
            parts.append(f"</{tag}>" if flat else "</entry>")
        if not flat:
            parts.append(f"</{tag}>")
    elif kind == "structure":
        assert isinstance(shape, StructureShape)
        parts.append(f"<{tag}>")
        _encode_members(parts, value, shape)
        parts.append(f"</{tag}>")
    else:
        parts.append(f"<{tag}>{escape(encode_scalar(value, shape))}</{tag}>")


def encode_scalar(value: Any, shape: Shape) -> str:
    kind = shape.type_name
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "blob":
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode("ascii")
    if kind == "timestamp":
        if isinstance(value, int | float):
            value = dt.datetime.fromtimestamp(value, dt.UTC)
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            text = value.astimezone(dt.UTC).isoformat(timespec="milliseconds")
            return str(text).replace("+00:00", "Z")
        return str(value)
    if kind in ("integer", "long"):
        return str(int(value))
    if kind in ("float", "double"):
        return repr(float(value))
    return str(value)
