"""The AWS REST-JSON protocol (``"protocol": "rest-json"`` in the botocore model: the EventBridge
Schema Registry ``schemas``, AppFlow, ...): each operation has its own HTTP method and URI
template, the input is spread over the URI path, the query string, headers and a JSON body, and
the reply puts its members back in the same places.

Wire facts, as botocore's ``RestJSONSerializer`` and ``RestJSONParser`` implement them:

* ``http.requestUri`` is a template: ``/v1/registries/name/{registryName}`` has one label, which
  matches one path segment (botocore percent-encodes everything but ``-_.~`` in it, ``/``
  included); a greedy label ``{Key+}`` matches one or more segments (``/`` kept); a template may
  end in query literals (``/{Bucket}?tagging``, ``?restype=x``) that the request must carry;
* an input member's ``location`` says where it travels: ``uri`` (its ``locationName`` is the
  label), ``querystring`` (a list is the key repeated; a map without a name is every query pair
  the operation does not otherwise claim), ``header`` (a list is comma-separated, a timestamp
  RFC 822, a ``jsonvalue`` string base64 JSON), ``headers`` (a map of every header with the
  ``locationName`` prefix); the rest form the JSON body keyed by member (``locationName``) name,
  unless the input names a ``payload`` member, which is then the whole body (raw for a blob or
  string, JSON for a structure);
* in the URI and the query string booleans are ``true``/``false`` and timestamps ISO 8601; in
  the body blobs are base64 and timestamps epoch seconds (a member's ``timestampFormat`` wins
  both ways);
* the reply's status is the operation's ``http.responseCode`` (200 when absent; a ``statusCode``
  member overrides it), its header members go to headers (a ``Content-Type`` member sets the
  reply's content type; ``Content-Length`` is always the transport's), and the body is the
  ``payload`` member or the JSON of the remaining members (empty for 204);
* an error carries the status, ``x-amzn-ErrorType: {Code}`` (what botocore reads for
  ``Error.Code``) and ``{"Message": ..., "Code": ...}`` (member names of the modelled error shape
  when there is one, so botocore fills the modelled exception's fields).

Routing (:class:`RestRouter`) matches the method and the percent-decoded path segments against
every operation; of several matches the most specific wins (a literal segment over a label over a
greedy label, compared from the left, then the most query literals). Dot segments are not
resolved: ``/v1/../x`` matches only a template with literal ``..`` segments, and a label is just a
string handed to the service (``..%2F..`` is the label ``../..``).

Decoding checks every value against the model and never raises anything but :class:`AwsError`:
a required member missing, a value of the wrong type, a body that is not JSON all answer 400 with
the operation's own validation error (``ValidationException`` or ``BadRequestException`` when the
operation models one, else ``ValidationException``) and AWS's message form (``1 validation error
detected: Value null at 'registryName' failed to satisfy constraint: Member must not be null``).
Members the model does not know are dropped.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from botocore.model import OperationModel, ServiceModel, Shape, StructureShape

from protocols.aws.errors import AwsError
from protocols.aws.model import error_shape

CONTENT_TYPE = "application/json"
QUERY_FIELDS_MAX = 1000
VALIDATION_ERROR = "ValidationException"
#: Error shapes an operation may model for invalid input, in order of preference.
VALIDATION_ERROR_NAMES = ("ValidationException", "BadRequestException", "InvalidRequestException")
NO_BODY_STATUSES = frozenset({204, 304})

_NESTING_MAX = 32
_LABEL_RE = re.compile(r"\{([^{}/]+)\}\Z")
_INT_RE = re.compile(r"[+-]?[0-9]{1,20}\Z")
_EPOCH_RE = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,9})?\Z")
_INT_BOUNDS = {"byte": 1 << 7, "short": 1 << 15, "integer": 1 << 31, "long": 1 << 63}
_SHOWN_MAX = 64

# -- routing -------------------------------------------------------------------------------------

_LITERAL, _LABEL, _GREEDY = 2, 1, 0


@dataclass(frozen=True)
class _Segment:
    kind: int
    text: str  # the literal, or the label's name


@dataclass(frozen=True)
class Route:
    operation: OperationModel
    method: str
    segments: tuple[_Segment, ...]
    query: tuple[tuple[str, str | None], ...]  # literal keys; None: only present

    @property
    def rank(self) -> tuple[tuple[int, ...], int]:
        return tuple(segment.kind for segment in self.segments), len(self.query)


@dataclass(frozen=True)
class Match:
    operation: OperationModel
    labels: dict[str, str]
    rank: tuple[tuple[int, ...], int]


def parse_template(operation: OperationModel) -> Route | None:
    """The route of ``operation``, or None if its ``requestUri`` is not a template we can match
    (more than one greedy label)."""
    http = operation.http
    template = str(http.get("requestUri", "/"))
    path, _, query = template.partition("?")
    segments: list[_Segment] = []
    for part in path.split("/")[1:]:
        label = _LABEL_RE.match(part)
        if label is None:
            segments.append(_Segment(_LITERAL, part))
        elif label.group(1).endswith("+"):
            segments.append(_Segment(_GREEDY, label.group(1)[:-1]))
        else:
            segments.append(_Segment(_LABEL, label.group(1)))
    if sum(segment.kind == _GREEDY for segment in segments) > 1:
        return None
    literals: list[tuple[str, str | None]] = []
    for item in query.split("&") if query else []:
        key, eq, value = item.partition("=")
        literals.append((key, value if eq else None))
    return Route(
        operation, str(http.get("method", "POST")).upper(), tuple(segments), tuple(literals)
    )


def _decode_segment(raw: str) -> str | None:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None


def split_path(path: str) -> list[str] | None:
    """The percent-decoded segments of ``path`` (``/a/b%2Fc`` -> ``["a", "b/c"]``), or None if
    it is not valid percent-encoded UTF-8 or does not start with ``/``."""
    if not path.startswith("/"):
        return None
    parts: list[str] = []
    for raw in path.split("/")[1:]:
        part = _decode_segment(raw)
        if part is None:
            return None
        parts.append(part)
    return parts


def _match_fixed(segments: tuple[_Segment, ...], parts: list[str], labels: dict[str, str]) -> bool:
    for segment, part in zip(segments, parts, strict=True):
        if segment.kind == _LITERAL:
            if segment.text != part:
                return False
        elif part == "":
            return False
        else:
            labels[segment.text] = part
    return True


def match_route(
    route: Route, parts: list[str], query_keys: dict[str, str]
) -> dict[str, str] | None:
    """The labels of ``route`` if the decoded path ``parts`` and the query match it."""
    for key, value in route.query:
        if key not in query_keys or (value is not None and query_keys[key] != value):
            return None
    segments = route.segments
    labels: dict[str, str] = {}
    greedy = next((i for i, s in enumerate(segments) if s.kind == _GREEDY), None)
    if greedy is None:
        if len(parts) != len(segments) or not _match_fixed(segments, parts, labels):
            return None
        return labels
    tail = len(segments) - greedy - 1
    if len(parts) < len(segments):
        return None
    end = len(parts) - tail
    if not _match_fixed(segments[:greedy], parts[:greedy], labels):
        return None
    if not _match_fixed(segments[greedy + 1 :], parts[end:], labels):
        return None
    value = "/".join(parts[greedy:end])
    if value == "":
        return None
    labels[segments[greedy].text] = value
    return labels


def query_pairs(query: str, *, strict: bool) -> list[tuple[str, str]]:
    """The query string's pairs in order, blank values kept. ``strict``: invalid UTF-8 or more
    than :data:`QUERY_FIELDS_MAX` pairs raise ``ValueError``, else they are replaced/cut."""
    if not query:
        return []
    if strict:
        return parse_qsl(
            query,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=QUERY_FIELDS_MAX,
        )
    pairs = parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace")
    return pairs[:QUERY_FIELDS_MAX]


class RestRouter:
    """Method + path (+ query literals) -> operation, for one rest-json service model."""

    def __init__(self, model: ServiceModel) -> None:
        self.model = model
        self.routes: list[Route] = []
        for name in model.operation_names:
            route = parse_template(model.operation_model(name))
            if route is not None:
                self.routes.append(route)

    def match(self, method: str, path: str, query: str) -> Match | None:
        parts = split_path(path)
        if parts is None:
            return None
        keys: dict[str, str] = {}
        for key, value in query_pairs(query, strict=False):
            keys.setdefault(key, value)
        best: Match | None = None
        method = method.upper()
        for route in self.routes:
            if route.method != method:
                continue
            labels = match_route(route, parts, keys)
            if labels is not None and (best is None or route.rank > best.rank):
                best = Match(route.operation, labels, route.rank)
        return best


# -- requests ------------------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, path: str, value: str | None, constraint: str) -> None:
        super().__init__(path)
        self.path = path
        self.value = value
        self.constraint = constraint


def validation_error(operation: OperationModel) -> str:
    """The error code this operation answers invalid input with."""
    modelled = {shape.name for shape in operation.error_shapes}
    for name in VALIDATION_ERROR_NAMES:
        if name in modelled:
            return name
    return VALIDATION_ERROR


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX] + "..."


def decode_request(
    operation: OperationModel,
    labels: dict[str, str],
    query: str,
    headers: dict[str, str],
    body: bytes,
) -> dict[str, Any]:
    """The operation's input as one dict keyed by member name, from the URI labels (decoded),
    the raw query string, the headers (lower-cased names) and the body."""
    code = validation_error(operation)
    try:
        return _decode_request(operation, labels, query, headers, body)
    except _Invalid as exc:
        shown = "null" if exc.value is None else f"'{exc.value}'"
        raise AwsError(
            code,
            f"1 validation error detected: Value {shown} at '{exc.path}' failed to satisfy "
            f"constraint: {exc.constraint}",
        ) from None
    except _BadBody as exc:
        raise AwsError(code, str(exc)) from None


class _BadBody(Exception):
    pass


def _decode_request(
    operation: OperationModel,
    labels: dict[str, str],
    query: str,
    headers: dict[str, str],
    body: bytes,
) -> dict[str, Any]:
    shape = operation.input_shape
    if shape is None:
        return {}
    assert isinstance(shape, StructureShape)
    try:
        pairs = query_pairs(query, strict=True)
    except (UnicodeDecodeError, ValueError):
        raise _BadBody(
            f"The query string must be valid UTF-8 with at most {QUERY_FIELDS_MAX} parameters."
        ) from None
    route = parse_template(operation)
    claimed = {key for key, _ in route.query} if route is not None else set()
    out: dict[str, Any] = {}
    body_members: dict[str, Shape] = {}
    query_map: tuple[str, Shape] | None = None
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire = str(member.serialization.get("name") or name)
        if location == "uri":
            if wire in labels:
                out[name] = _from_text(labels[wire], member, name)
        elif location == "querystring":
            if member.type_name == "map":
                query_map = (name, member)
                continue
            claimed.add(wire)
            values = [value for key, value in pairs if key == wire]
            if not values:
                continue
            if member.type_name == "list":
                item: Shape = member.member
                out[name] = [_from_text(v, item, f"{name}.{i}") for i, v in enumerate(values, 1)]
            else:
                out[name] = _from_text(values[0], member, name)
        elif location == "header":
            value = headers.get(wire.lower())
            if value is not None:
                out[name] = _from_header(value, member, name)
        elif location == "headers":
            prefix = wire.lower()
            found = {k[len(prefix) :]: v for k, v in headers.items() if k.startswith(prefix)}
            if found:
                out[name] = found
        elif location is None:
            body_members[name] = member
    if query_map is not None:
        name, member = query_map
        value_shape: Shape = member.value
        entries: dict[str, Any] = {}
        for key, value in pairs:
            if key in claimed:
                continue
            if value_shape.type_name == "list":
                entries.setdefault(key, []).append(value)
            else:
                entries.setdefault(key, value)
        if entries:
            out[name] = entries
    payload = shape.serialization.get("payload")
    if payload is not None:
        member = shape.members[payload]
        value = _decode_payload(body, member, payload)
        if value is not None:
            out[payload] = value
    elif body_members:
        document = _json_body(body)
        if not isinstance(document, dict):
            raise _BadBody("The request body must be a JSON object.")
        for name, member in body_members.items():
            wire = str(member.serialization.get("name") or name)
            if document.get(wire) is not None:
                out[name] = _decode(document[wire], member, name, 0)
    for name in shape.required_members:
        if name not in out:
            raise _Invalid(name, None, "Member must not be null")
    return out


def _json_body(body: bytes) -> Any:
    if body.strip() == b"":
        return {}
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise _BadBody("The request body is not a valid JSON document.") from None


def _decode_payload(body: bytes, member: Shape, name: str) -> Any:
    kind = member.type_name
    if kind == "blob":
        return body if body else None
    if kind == "string":
        if not body:
            return None
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Invalid(name, None, "Member must be valid UTF-8") from None
    if body.strip() == b"":
        return None
    return _decode(_json_body(body), member, name, 0)


def _decode(value: Any, shape: Shape, path: str, depth: int) -> Any:
    if depth > _NESTING_MAX:
        raise _Invalid(path, None, "Member must not be nested this deeply")
    kind = shape.type_name
    if kind == "structure":
        if shape.is_document_type:
            return value
        if not isinstance(value, dict):
            raise _Invalid(path, _shown(value), "Member must be a structure")
        assert isinstance(shape, StructureShape)
        out: dict[str, Any] = {}
        for name, member in shape.members.items():
            wire = str(member.serialization.get("name") or name)
            if value.get(wire) is not None:
                out[name] = _decode(value[wire], member, f"{path}.{name}", depth + 1)
        for name in shape.required_members:
            if name not in out:
                raise _Invalid(f"{path}.{name}", None, "Member must not be null")
        return out
    if kind == "list":
        if not isinstance(value, list):
            raise _Invalid(path, _shown(value), "Member must be a list")
        item: Shape = shape.member
        return [
            _decode(entry, item, f"{path}.{i}", depth + 1)
            for i, entry in enumerate(value, 1)
            if entry is not None or item.type_name == "structure"
        ]
    if kind == "map":
        if not isinstance(value, dict):
            raise _Invalid(path, _shown(value), "Member must be a map")
        value_shape: Shape = shape.value
        return {
            str(key): _decode(entry, value_shape, f"{path}.{key}", depth + 1)
            for key, entry in value.items()
            if entry is not None
        }
    return _from_json_scalar(value, shape, path)


def _check_int(number: int, shape: Shape, path: str) -> int:
    bound = _INT_BOUNDS.get(shape.type_name, 1 << 63)
    if not -bound <= number < bound:
        raise _Invalid(path, str(number), f"Member must fit in a {shape.type_name}")
    return number


def _from_json_scalar(value: Any, shape: Shape, path: str) -> Any:
    kind = shape.type_name
    if kind == "string":
        if not isinstance(value, str):
            raise _Invalid(path, _shown(value), "Member must be a string")
        return value
    if kind in _INT_BOUNDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(path, _shown(value), "Member must be an integer")
        return _check_int(value, shape, path)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _Invalid(path, _shown(value), "Member must be a boolean")
        return value
    if kind in ("float", "double"):
        if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(path, _shown(value), "Member must be a number")
        return float(value)
    if kind == "blob":
        if not isinstance(value, str):
            raise _Invalid(path, _shown(value), "Member must be a base64 string")
        return _base64(value, path)
    if kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _Invalid(path, _shown(value), "Member must be a timestamp")
        if isinstance(value, str):
            return _timestamp(value, path)
        return _epoch(value, path)
    return value


def _base64(text: str, path: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise _Invalid(path, _shown(text), "Member must be base64") from None


def _epoch(value: float, path: str) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise _Invalid(path, _shown(value), "Member must be a timestamp") from None


def _timestamp(text: str, path: str) -> dt.datetime:
    """Epoch seconds, ISO 8601 or RFC 822, whichever ``text`` is."""
    if _EPOCH_RE.match(text):
        return _epoch(float(text), path)
    try:
        if "," in text or text.endswith("GMT"):
            value = parsedate_to_datetime(text)
        else:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, TypeError, IndexError, OverflowError):
        raise _Invalid(path, _shown(text), "Member must be a timestamp") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def _from_text(text: str, shape: Shape, path: str) -> Any:
    """A URI label, query or header value, typed per ``shape``."""
    kind = shape.type_name
    if kind in _INT_BOUNDS:
        if not _INT_RE.match(text):
            raise _Invalid(path, _shown(text), "Member must be an integer")
        return _check_int(int(text), shape, path)
    if kind == "boolean":
        if text not in ("true", "false"):
            raise _Invalid(path, _shown(text), "Member must be true or false")
        return text == "true"
    if kind in ("float", "double"):
        try:
            number = float(text)
        except ValueError:
            raise _Invalid(path, _shown(text), "Member must be a number") from None
        if math.isnan(number) and text != "NaN":
            raise _Invalid(path, _shown(text), "Member must be a number")
        return number
    if kind == "blob":
        return _base64(text, path)
    if kind == "timestamp":
        return _timestamp(text, path)
    if kind == "string" or kind not in ("structure", "list", "map"):
        return text
    raise _Invalid(path, _shown(text), f"Member must not be a {kind} here")


def _split_header_list(value: str) -> list[str]:
    """``a, "b,c", "d\\"e"`` -> ``["a", "b,c", 'd"e']``."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    return items


def _from_header(value: str, shape: Shape, path: str) -> Any:
    if shape.type_name == "list":
        item: Shape = shape.member
        return [
            _from_text(text, item, f"{path}.{i}")
            for i, text in enumerate(_split_header_list(value), 1)
        ]
    if shape.type_name == "string" and shape.serialization.get("jsonvalue"):
        try:
            return json.loads(base64.b64decode(value.encode("ascii"), validate=True))
        except (binascii.Error, ValueError, UnicodeEncodeError, RecursionError):
            raise _Invalid(path, _shown(value), "Member must be base64-encoded JSON") from None
    return _from_text(value, shape, path)


# -- replies -------------------------------------------------------------------------------------


@dataclass
class RestReply:
    status: int
    headers: list[tuple[str, str]]
    content_type: str
    body: bytes


def encode_response(operation: OperationModel, output: dict[str, Any] | None) -> RestReply:
    """The reply to ``operation`` carrying ``output`` (keyed by member name; None and unknown
    members are left out)."""
    status = int(operation.http.get("responseCode", 200))
    headers: list[tuple[str, str]] = []
    shape = operation.output_shape
    output = output or {}
    if not isinstance(output, dict):
        raise TypeError(f"{operation.name}: expected a dict, got {type(output).__name__}")
    content_type = CONTENT_TYPE
    raw_type: str | None = None
    document: dict[str, Any] = {}
    body: bytes | None = None
    if shape is not None:
        assert isinstance(shape, StructureShape)
        payload = shape.serialization.get("payload")
        for name, member in shape.members.items():
            value = output.get(name)
            if value is None:
                continue
            location = member.serialization.get("location")
            wire = str(member.serialization.get("name") or name)
            if location == "header":
                if wire.lower() == "content-type":
                    content_type = _to_header(value, member)
                elif wire.lower() != "content-length":  # the transport's own
                    headers.append((wire, _to_header(value, member)))
            elif location == "headers":
                headers.extend((f"{wire}{key}", str(item)) for key, item in value.items())
            elif location == "statusCode":
                status = int(value)
            elif name == payload:
                if member.type_name == "blob":
                    body = value.encode("utf-8") if isinstance(value, str) else bytes(value)
                    raw_type = "application/octet-stream"
                elif member.type_name == "string":
                    body = str(value).encode("utf-8")
                    raw_type = "text/plain; charset=utf-8"
                else:
                    body = _dumps(_encode(value, member))
            elif payload is None and location is None:
                document[wire] = _encode(value, member)
        if payload is not None and body is None:
            body = b""
        if raw_type is not None and content_type == CONTENT_TYPE:
            content_type = raw_type
    if body is None:
        body = _dumps(document)
    if status in NO_BODY_STATUSES:
        body = b""
    return RestReply(status, headers, content_type, body)


def encode_error(model: ServiceModel | None, code: str, message: str) -> bytes:
    """``{"Message": ..., "Code": ...}``, named as the modelled error shape's members are."""
    message_name, code_name = "Message", "Code"
    shape = error_shape(model, code) if model is not None else None
    if isinstance(shape, StructureShape):
        for name, member in shape.members.items():
            wire = str(member.serialization.get("name") or name)
            if name.lower() == "message":
                message_name = wire
            elif name.lower() == "code":
                code_name = wire
    return _dumps({message_name: message, code_name: code})


def _dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)
    return dt.datetime.fromtimestamp(float(value), dt.UTC)


def _format_timestamp(value: Any, timestamp_format: str) -> str | int | float:
    when = _utc(value)
    fmt = timestamp_format.lower()
    if fmt == "iso8601":
        micros = when.microsecond
        fraction = f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}"
        fraction = fraction if micros else ""
        return when.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"
    seconds = calendar.timegm(when.utctimetuple())
    if fmt == "rfc822":
        return formatdate(seconds, usegmt=True)
    if when.microsecond:
        return (seconds * 1_000_000 + when.microsecond) / 1_000_000
    return seconds


def _to_header(value: Any, shape: Shape) -> str:
    kind = shape.type_name
    if kind == "list":
        item: Shape = shape.member
        texts = [_to_header(entry, item) for entry in value if entry is not None]
        return ",".join(
            '"' + text.replace('"', '\\"') + '"' if ("," in text or '"' in text) else text
            for text in texts
        )
    if kind == "timestamp":
        return str(
            _format_timestamp(value, str(shape.serialization.get("timestampFormat", "rfc822")))
        )
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "blob":
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode("ascii")
    if kind == "string" and shape.serialization.get("jsonvalue"):
        return base64.b64encode(_dumps(value)).decode("ascii")
    if kind in ("float", "double"):
        return str(_float(value))
    return str(value)


def _float(value: Any) -> float | str:
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return number


def _encode(value: Any, shape: Shape) -> Any:
    kind = shape.type_name
    if kind == "structure":
        if shape.is_document_type:
            return value
        assert isinstance(shape, StructureShape)
        if not isinstance(value, dict):
            raise TypeError(f"{shape.name}: expected a dict, got {type(value).__name__}")
        out: dict[str, Any] = {}
        for name, member in shape.members.items():
            item = value.get(name)
            if item is not None:
                out[str(member.serialization.get("name") or name)] = _encode(item, member)
        return out
    if kind == "list":
        member_shape: Shape = shape.member
        return [_encode(item, member_shape) for item in value]
    if kind == "map":
        value_shape: Shape = shape.value
        return {str(key): _encode(item, value_shape) for key, item in value.items()}
    if kind == "blob":
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode("ascii")
    if kind == "timestamp":
        return _format_timestamp(
            value, str(shape.serialization.get("timestampFormat", "unixTimestamp"))
        )
    if kind == "boolean":
        return bool(value)
    if kind in _INT_BOUNDS:
        return int(value)
    if kind in ("float", "double"):
        return _float(value)
    return str(value)
