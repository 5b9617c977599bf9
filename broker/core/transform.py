"""What each target of an SNS topic or EventBridge rule receives: the ``x-transform`` of a
rules binding (see routing.py and ``Machine._publish_rules``).

Pure and deterministic: the same spec, properties and body always give the same bytes. Times
and ids arrive in the message properties (``props["eb"]``, ``props["sns"]``), never from a
clock; the only source of randomness AWS has here (the SNS signature) is replaced by a hash.

A spec is a dict with ``"kind"``:

``{"kind": "event"}``
    EventBridge target without input configuration: the event JSON, byte for byte.
``{"kind": "input", "input": "<JSON text>"}``
    The target's constant ``Input``, delivered verbatim (PutTargets: "Valid JSON text passed
    to the target").
``{"kind": "input_path", "path": "$.detail"}``
    ``InputPath``: the JSON value the path selects, serialised compactly. A string value
    arrives as a JSON string, quotes included (``"baz"``).
``{"kind": "input_transformer", "paths": {name: path}, "template": str}``
    ``InputTransformer`` (``InputPathsMap`` + ``InputTemplate``), rules below.
``{"kind": "sns", "raw": bool, "protocol": "sqs"|"http"|"https", "subscription_arn": str,
"unsubscribe_url": str, "signing_cert_url": str}``
    Delivery of an SNS publish (``props["sns"]``) to one subscription, rules below.

Optional keys of every kind: ``"group"`` (the ``MessageGroupId`` of an SQS FIFO target; becomes
the copy's publish option ``group``), ``"dedup": "event-id"`` (deduplication id = the event's
``id``), ``"target_id"`` (named in error messages as AWS does), and for EventBridge kinds
``"rule_arn"`` / ``"rule_name"`` (the reserved variables; the name defaults to the last
``/``-segment of the ARN). Other keys are ignored.

JSONPath (EventBridge User Guide, "Amazon EventBridge input transformation", note on supported
syntax; PutTargets ``InputPath``; the EventBridge Pipes ``JsonPath`` pattern):
``$``, then any of ``.name`` (letters, digits, ``_``, ``-``, ``/``), ``[n]``, ``[*]``, ``.*``;
``InputPath`` also accepts bracket notation ``['key']`` / ``["key"]`` ("You may use JSON dot
notation or bracket notation"), ``InputPathsMap`` does not ("You must use JSON dot notation, not
bracket notation"). A path with a wildcard selects the list of every match.

Input transformer rules (User Guide "Amazon EventBridge input transformation": predefined
variables, input transform examples, common issues; API reference ``InputTransformer``):

* Up to 100 variables; names match ``[A-Za-z0-9_-]+`` (1-256 characters, botocore's
  ``InputTransformerPathKey``); the reserved names ``aws.events.*`` can't be redefined; the
  template is 1-8192 characters; a ``<name>`` in the template that is neither defined nor
  reserved is refused at PutTargets ("InputTemplate for target X contains invalid placeholder
  name."); "The characters < and > can't be escaped", so every ``<...>`` is a placeholder. In a
  JSON object template "the placeholder cannot be used as an object key".
* A template whose first non-blank character is ``{`` or ``[`` is a JSON template. A
  placeholder outside a JSON string is replaced by the value as JSON (a string gets its quotes,
  objects and arrays are inserted as JSON: "Simple JSON", "JSON with a mix of variables and
  static information"). Inside a JSON string the value is inserted as text, unescaped ("JSON
  with strings and variables"; common issues: "EventBridge doesn't escape values extracted by
  Input Path"). The result, when it is valid JSON, is minified ("The JSON that is passed to the
  target is minified"); when a value made it invalid it is delivered as it came out.
* Any other template (a quoted string such as ``"instance <instance> is in <state>"``, or
  free text such as ``<instance> is in state <status>``) is text: every value is inserted as
  text and the template, quotes and ``\\"`` escapes included, is otherwise delivered as written
  ("Simple string", "String with escaped quotes").
* As text, numbers, booleans and null are their JSON spelling and an object or array is its
  compact JSON with the double quotes removed (``{key:value}``; EventBridge Pipes User Guide,
  "Implicit body data parsing", which describes the same transformer).
* A path that selects nothing yields an empty value: nothing as text, ``""`` as a JSON value
  ("that variable isn't created and won't appear in the output"; the bare-value case follows
  AWS's observed output ``"command": ""``, as recorded by LocalStack's AWS-validated
  snapshot ``test_put_events_with_input_transformer_input_template_json``).
* Reserved variables: ``<aws.events.rule-arn>``, ``<aws.events.rule-name>``,
  ``<aws.events.event.ingestion-time>`` (``props["eb"]["ingested"]``, else the event's
  ``time``) are strings; ``<aws.events.event.json>`` is "the exact payload of an event",
  inserted as the received bytes in any position; ``<aws.events.event>`` is "a copy of the
  original event" in the shape AWS delivers it (same recorded snapshot): ``id``, ``account``,
  ``detailType``, ``time`` (the ingestion time), ``source``, ``region``, ``resources``,
  ``version``, without ``detail``.

SNS delivery (SNS Developer Guide "HTTP/HTTPS notification JSON format", "Fanout to Amazon SQS
queues", "Verifying the signatures of Amazon SNS messages", "Amazon SNS raw message delivery"):

* The message text is ``messages[protocol]`` for a ``MessageStructure=json`` publish, falling
  back to ``messages["default"]``, else ``message``.
* Raw delivery: the body is that text; the publish's message attributes travel as SQS message
  attributes (``props["sqs"]["a"]``).
* Otherwise the body is the notification envelope, pretty-printed as AWS sends it
  (``"Key" : value`` lines): ``Type``, ``MessageId``, ``SequenceNumber`` (FIFO topics),
  ``TopicArn``, ``Subject`` (only when given), ``Message``, ``Timestamp``, then for standard
  topics ``SignatureVersion`` "1", ``Signature``, ``SigningCertURL``, then ``UnsubscribeURL``
  and ``MessageAttributes`` (only when there are attributes; ``{"Type", "Value"}``, Binary
  values in base64). Notifications of FIFO topics carry no signature fields (observed AWS
  behaviour; the guides show only standard-topic envelopes).
* ``Signature`` is the base64 of 256 bytes of SHAKE-256 over the documented string to sign
  (``Message``, ``MessageId``, ``Subject`` if present, ``Timestamp``, ``TopicArn``, ``Type``,
  each name and value followed by a newline). It has the shape of AWS's SHA1withRSA signature
  but there is no AWS private key here, so it never verifies against the certificate at
  ``SigningCertURL``; clients that verify signatures must be configured not to.
* FIFO topics: the copy's publish options take ``group`` and ``dedup`` from the publish
  (``props["sns"]``); with content-based deduplication and no id, the SHA-256 of the message.

Properties of a copy: a new dict; ``delivery_mode`` 2, ``message_id`` and the other AMQP-style
keys kept; the publish's ``sns`` and ``eb`` blocks dropped (a copy forwarded to another bus is a
new ingestion there); ``props["sqs"]`` holds only ``t`` (sent ms: the publish's ``sqs.t``, else
``eb.t``), ``s`` (sender, SNS copies only) and ``a`` (raw SNS deliveries with attributes).
Group and deduplication id travel in the publish options, not in the properties.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import re
from typing import Any

__all__ = ["TransformError", "apply", "validate"]


class TransformError(ValueError):
    """An invalid transform spec; str(exc) is AWS's message (EventBridge ValidationException /
    InvalidParameter)."""


KINDS = ("event", "input", "input_path", "input_transformer", "sns")
SNS_PROTOCOLS = ("sqs", "http", "https")
MAX_PATHS = 100  # botocore events TransformerPaths max
MAX_KEY = 256  # InputTransformerPathKey
MAX_PATH = 256  # TargetInputPath
MAX_TEMPLATE = 8192  # TransformerInput
MAX_INPUT = 8192  # TargetInput
MAX_GROUP = 100  # SqsParameters.MessageGroupId
RESERVED = (
    "aws.events.rule-arn",
    "aws.events.rule-name",
    "aws.events.event",
    "aws.events.event.ingestion-time",
    "aws.events.event.json",
)
_KEY_RE = re.compile(r"[A-Za-z0-9_\-]+")
_PLACEHOLDER_RE = re.compile(r"<([^<>]*)>")
_SEGMENT_RE = re.compile(
    r"\.(?P<name>[A-Za-z0-9_\-/]+)"
    r"|(?P<dotstar>\.\*)"
    r"|\[(?P<index>\d+)\]"
    r"|(?P<star>\[\*\])"
    r"|\['(?P<sq>[^'\\]*)'\]"
    r"|\[\"(?P<dq>[^\"\\]*)\"\]"
)
_WS = " \t\r\n"
_CONSTRAINT = "1 validation error detected: Value at '{field}' failed to satisfy constraint: {what}"
_EVENT_FIELDS = (
    ("id", "id"),
    ("account", "account"),
    ("detailType", "detail-type"),
    ("time", "time"),
    ("source", "source"),
    ("region", "region"),
    ("resources", "resources"),
    ("version", "version"),
)

Segment = tuple[str, Any]  # ("key", name) | ("index", n) | ("wild", None)
Path = tuple[Segment, ...]


class _Number(str):
    """A JSON number token kept exactly as received (no float round trip)."""


class _Missing:
    """The value of a path that selects nothing."""


MISSING = _Missing()


# ---------------------------------------------------------------------------------------------
# validation


def _target(spec: dict[str, Any]) -> str:
    tid = spec.get("target_id")
    return f" for target {tid}" if isinstance(tid, str) and tid else ""


@functools.lru_cache(maxsize=4096)
def _parse_path(text: str, brackets: bool) -> Path | None:
    """The segments of a JSONPath in EventBridge's subset, or None when it is not one."""
    if not text.startswith("$"):
        return None
    out: list[Segment] = []
    pos = 1
    while pos < len(text):
        m = _SEGMENT_RE.match(text, pos)
        if m is None:
            return None
        if m["name"] is not None:
            out.append(("key", m["name"]))
        elif m["dotstar"] is not None or m["star"] is not None:
            out.append(("wild", None))
        elif m["index"] is not None:
            out.append(("index", int(m["index"])))
        else:
            if not brackets:
                return None
            out.append(("key", m["sq"] if m["sq"] is not None else m["dq"]))
        pos = m.end()
    return tuple(out)


def _check_common(spec: dict[str, Any]) -> None:
    group = spec.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        raise TransformError(f"Invalid MessageGroupId{_target(spec)}.")
    if isinstance(group, str) and len(group) > MAX_GROUP:
        raise TransformError(
            _CONSTRAINT.format(
                field="sqsParameters.messageGroupId",
                what=f"Member must have length less than or equal to {MAX_GROUP}",
            )
        )
    dedup = spec.get("dedup")
    if dedup is not None and dedup != "event-id":
        raise TransformError(f"Invalid deduplication id source{_target(spec)}: {dedup!r}.")
    for key in ("target_id", "rule_arn", "rule_name"):
        if key in spec and not isinstance(spec[key], str):
            raise TransformError(f"Invalid {key}{_target(spec)}.")


def _check_transformer(spec: dict[str, Any]) -> None:
    paths = spec.get("paths", {})
    template = spec.get("template")
    if paths is None:
        paths = {}
    if not isinstance(paths, dict):
        raise TransformError(f"InputPathsMap{_target(spec)} must be a map of names to JSON paths.")
    if len(paths) > MAX_PATHS:
        raise TransformError(
            _CONSTRAINT.format(
                field="inputTransformer.inputPathsMap",
                what=f"Member must have length less than or equal to {MAX_PATHS}",
            )
        )
    for name, path in paths.items():
        if not isinstance(name, str):
            raise TransformError(f"InputPathsMap{_target(spec)} has a key that is not a string.")
        if name in RESERVED or name.lower().startswith(("aws.", "amazon web services.")):
            raise TransformError(
                f"InputPathsMap{_target(spec)} contains reserved variable name {name}."
            )
        if not 1 <= len(name) <= MAX_KEY or _KEY_RE.fullmatch(name) is None:
            raise TransformError(
                _CONSTRAINT.format(
                    field="inputTransformer.inputPathsMap",
                    what="Map keys must satisfy constraint: [Member must have length less than or "
                    f"equal to {MAX_KEY}, Member must have length greater than or equal to 1, "
                    "Member must satisfy regular expression pattern: [A-Za-z0-9\\_\\-]+]",
                )
            )
        if (
            not isinstance(path, str)
            or len(path) > MAX_PATH
            or _parse_path(path, brackets=False) is None
        ):
            raise TransformError(
                f"InputPathsMap{_target(spec)} has an invalid JSON path for {name}: {path!r}."
            )
    if not isinstance(template, str):
        raise TransformError(f"InputTemplate is required for InputTransformer{_target(spec)}.")
    if not 1 <= len(template) <= MAX_TEMPLATE:
        what = (
            "Member must have length greater than or equal to 1"
            if not template
            else f"Member must have length less than or equal to {MAX_TEMPLATE}"
        )
        raise TransformError(_CONSTRAINT.format(field="inputTransformer.inputTemplate", what=what))
    for seg in _scan(template):
        if seg[0] != "ph":
            continue
        name = seg[1]
        if name not in paths and name not in RESERVED:
            raise TransformError(
                f"InputTemplate{_target(spec)} contains invalid placeholder {name}."
            )
        if seg[3] and template.lstrip(_WS)[:1] == "{":
            raise TransformError(
                f"InputTemplate{_target(spec)} uses placeholder {name} as an object key, "
                "which is not allowed."
            )


def _check_sns(spec: dict[str, Any]) -> None:
    if not isinstance(spec.get("raw", False), bool):
        raise TransformError(
            "Invalid parameter: Attributes Reason: RawMessageDelivery: Invalid value"
        )
    if spec.get("protocol") not in SNS_PROTOCOLS:
        raise TransformError("Invalid parameter: Protocol")
    for key in ("subscription_arn", "unsubscribe_url", "signing_cert_url"):
        if not isinstance(spec.get(key, ""), str):
            raise TransformError(f"Invalid parameter: {key}")


def validate(spec: dict[str, Any]) -> None:
    """Raise TransformError when ``spec`` is not a valid transform (PutTargets / Subscribe time).

    Limits and messages follow the EventBridge API reference (``Target``, ``InputTransformer``,
    botocore's ``events`` model) and the input transformation User Guide page.
    """
    if not isinstance(spec, dict):
        raise TransformError("x-transform must be a table")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise TransformError(f"Unknown transform kind {kind!r}.")
    _check_common(spec)
    if kind == "input":
        text = spec.get("input")
        if not isinstance(text, str) or len(text) > MAX_INPUT or not _is_json(text):
            raise TransformError(f"Input{_target(spec)} is not valid JSON text.")
    elif kind == "input_path":
        path = spec.get("path")
        if not isinstance(path, str) or len(path) > MAX_PATH or _parse_path(path, True) is None:
            raise TransformError(f"Invalid InputPath{_target(spec)}.")
    elif kind == "input_transformer":
        _check_transformer(spec)
    elif kind == "sns":
        _check_sns(spec)


# ---------------------------------------------------------------------------------------------
# JSON helpers


def _reject_constant(token: str) -> Any:
    raise ValueError(f"not JSON: {token}")


def _loads(text: str) -> Any:
    """Parse JSON keeping number tokens exact and refusing NaN/Infinity."""
    return json.loads(text, parse_float=_Number, parse_int=_Number, parse_constant=_reject_constant)


def _is_json(text: str) -> bool:
    try:
        _loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _dumps(value: Any) -> str:
    """Compact JSON of a parsed value, number tokens verbatim, non-ASCII kept as UTF-8."""
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ",".join(_dumps(str(k)) + ":" + _dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _minify(text: str) -> str:
    """``text`` (valid JSON) without the whitespace outside strings."""
    out: list[str] = []
    in_str = False
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif c not in _WS:
            out.append(c)
        i += 1
    return "".join(out)


def _select(event: Any, path: Path) -> Any:
    """The value ``path`` selects in ``event``; a list for wildcard paths; MISSING if none."""
    nodes = [event]
    multi = False
    for kind, arg in path:
        nxt: list[Any] = []
        for node in nodes:
            if kind == "key":
                if isinstance(node, dict) and arg in node:
                    nxt.append(node[arg])
            elif kind == "index":
                if isinstance(node, list) and arg < len(node):
                    nxt.append(node[arg])
            elif isinstance(node, dict):
                multi = True
                nxt.extend(node.values())
            elif isinstance(node, list):
                multi = True
                nxt.extend(node)
            else:
                multi = True
        if kind == "wild":
            multi = True
        nodes = nxt
    if multi:
        return nodes
    return nodes[0] if nodes else MISSING


# ---------------------------------------------------------------------------------------------
# input templates

TemplateSegment = tuple[str, str, bool, bool]  # (kind "lit"|"ph", text/name, in_string, is_key)


@functools.lru_cache(maxsize=1024)
def _scan(template: str) -> tuple[TemplateSegment, ...]:
    """Split a template into literal text and placeholders, noting for each placeholder
    whether it sits inside a JSON string and whether it is used as an object key."""
    out: list[TemplateSegment] = []
    lit: list[str] = []
    in_str = False
    pending: list[int] = []  # indexes in ``out`` of placeholders of the current string
    i = 0
    n = len(template)

    def next_is_colon(pos: int) -> bool:
        while pos < n and template[pos] in _WS:
            pos += 1
        return pos < n and template[pos] == ":"

    while i < n:
        c = template[i]
        if c == "<":
            m = _PLACEHOLDER_RE.match(template, i)
            if m is not None:
                if lit:
                    out.append(("lit", "".join(lit), False, False))
                    lit = []
                is_key = False if in_str else next_is_colon(m.end())
                if in_str:
                    pending.append(len(out))
                out.append(("ph", m[1], in_str, is_key))
                i = m.end()
                continue
        lit.append(c)
        if in_str:
            if c == "\\" and i + 1 < n and template[i + 1] != "<":
                lit.append(template[i + 1])
                i += 1
            elif c == '"':
                in_str = False
                if pending and next_is_colon(i + 1):
                    for k in pending:
                        kind, name, s, _ = out[k]
                        out[k] = (kind, name, s, True)
                pending = []
        elif c == '"':
            in_str = True
        i += 1
    if lit:
        out.append(("lit", "".join(lit), False, False))
    return tuple(out)


def _as_text(value: Any) -> str:
    if value is MISSING:
        return ""
    if isinstance(value, _Raw):
        return value.text
    if isinstance(value, _Number | str):
        return str(value)
    if isinstance(value, dict | list):
        return _dumps(value).replace('"', "")
    return _dumps(value)


def _as_json(value: Any) -> str:
    if value is MISSING:
        return '""'
    if isinstance(value, _Raw):
        return value.text
    return _dumps(value)


class _Raw:
    """Text inserted as is in every position (``<aws.events.event.json>``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _rule_name(spec: dict[str, Any]) -> str:
    name = spec.get("rule_name")
    if isinstance(name, str) and name:
        return name
    arn = spec.get("rule_arn")
    if isinstance(arn, str) and arn:
        return arn.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return ""


def _reserved(name: str, spec: dict[str, Any], props: dict[str, Any], event: Any, text: str) -> Any:
    if name == "aws.events.rule-arn":
        arn = spec.get("rule_arn")
        return arn if isinstance(arn, str) else ""
    if name == "aws.events.rule-name":
        return _rule_name(spec)
    ingested = _ingested(props, event)
    if name == "aws.events.event.ingestion-time":
        return ingested
    if name == "aws.events.event.json":
        return _Raw(text)
    # aws.events.event
    if not isinstance(event, dict):
        return event
    out: dict[str, Any] = {}
    for out_key, key in _EVENT_FIELDS:
        if key == "time" and ingested:
            out[out_key] = ingested
        elif key in event:
            out[out_key] = event[key]
    return out


def _ingested(props: dict[str, Any], event: Any) -> str:
    eb = props.get("eb")
    if isinstance(eb, dict) and isinstance(eb.get("ingested"), str):
        return str(eb["ingested"])
    if isinstance(event, dict) and isinstance(event.get("time"), str):
        return str(event["time"])
    return ""


def _render(spec: dict[str, Any], props: dict[str, Any], event: Any, text: str) -> str:
    template: str = spec["template"]
    paths: dict[str, str] = spec.get("paths") or {}
    is_json = template.lstrip(_WS)[:1] in ("{", "[")
    values: dict[str, Any] = {}
    parts: list[str] = []
    for kind, name, in_str, _ in _scan(template):
        if kind == "lit":
            parts.append(name)
            continue
        if name not in values:
            if name in paths:
                parsed = _parse_path(paths[name], brackets=False)
                values[name] = MISSING if parsed is None else _select(event, parsed)
            elif name in RESERVED:
                values[name] = _reserved(name, spec, props, event, text)
            else:  # not validated: leave the text alone
                values[name] = _Raw(f"<{name}>")
        value = values[name]
        parts.append(_as_json(value) if is_json and not in_str else _as_text(value))
    out = "".join(parts)
    if is_json and _is_json(out):
        out = _minify(out)
    return out


# ---------------------------------------------------------------------------------------------
# SNS


def _sns_text(sns: dict[str, Any], protocol: str) -> str:
    messages = sns.get("messages")
    if isinstance(messages, dict):
        for key in (protocol, "default"):
            if isinstance(messages.get(key), str):
                return str(messages[key])
    message = sns.get("message")
    return message if isinstance(message, str) else ""


def _attr_pair(pair: Any) -> tuple[str, Any]:
    """``(DataType, value)`` of a stored attribute ``[DataType, value]``."""
    if isinstance(pair, list | tuple) and len(pair) == 2:
        return str(pair[0]), pair[1]
    return "String", pair


def _attr_value(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value if isinstance(value, str) else str(value)


def string_to_sign(fields: dict[str, str]) -> str:
    """The canonical string SNS signs for a Notification (SNS Developer Guide, "Verifying the
    signatures of Amazon SNS messages"): name, newline, value, newline, in byte order."""
    names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    return "".join(f"{k}\n{fields[k]}\n" for k in names if k in fields)


def signature(fields: dict[str, str]) -> str:
    """Deterministic stand-in for SHA1withRSA: base64 of 256 bytes (an RSA-2048 signature's
    size) of SHAKE-256 over the string to sign. Not verifiable with AWS's certificate."""
    digest = hashlib.shake_256(string_to_sign(fields).encode("utf-8")).digest(256)
    return base64.b64encode(digest).decode("ascii")


def _envelope(spec: dict[str, Any], sns: dict[str, Any], text: str) -> str:
    fifo = isinstance(sns.get("seq"), str) or str(sns.get("topic", "")).endswith(".fifo")
    fields: list[tuple[str, Any]] = [
        ("Type", "Notification"),
        ("MessageId", str(sns.get("id", ""))),
    ]
    if fifo and sns.get("seq") is not None:
        fields.append(("SequenceNumber", str(sns["seq"])))
    fields.append(("TopicArn", str(sns.get("topic", ""))))
    subject = sns.get("subject")
    if isinstance(subject, str):
        fields.append(("Subject", subject))
    fields.append(("Message", text))
    fields.append(("Timestamp", str(sns.get("ts", ""))))
    if not fifo:
        signed = {k: v for k, v in fields if k != "SequenceNumber"}
        fields.append(("SignatureVersion", "1"))
        fields.append(("Signature", signature(signed)))
        fields.append(("SigningCertURL", str(spec.get("signing_cert_url", ""))))
    fields.append(("UnsubscribeURL", str(spec.get("unsubscribe_url", ""))))
    lines = [f"  {_dumps(k)} : {_dumps(v)}" for k, v in fields]
    attrs = sns.get("attrs")
    if isinstance(attrs, dict) and attrs:
        entries = []
        for name, pair in attrs.items():
            dt, value = _attr_pair(pair)
            entry = {"Type": dt, "Value": _attr_value(value)}
            entries.append(f"    {_dumps(str(name))} : {_dumps(entry)}")
        lines.append('  "MessageAttributes" : {\n' + ",\n".join(entries) + "\n  }")
    return "{\n" + ",\n".join(lines) + "\n}"


# ---------------------------------------------------------------------------------------------
# apply


def _copy_props(props: dict[str, Any], sender: bool) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in props.items() if k not in ("sns", "eb", "sqs")}
    out["delivery_mode"] = 2
    sqs_in = props.get("sqs")
    sqs_in = sqs_in if isinstance(sqs_in, dict) else {}
    eb = props.get("eb")
    eb = eb if isinstance(eb, dict) else {}
    sqs: dict[str, Any] = {}
    t = sqs_in.get("t", eb.get("t"))
    if t is not None:
        sqs["t"] = t
    if sender and sqs_in.get("s") is not None:
        sqs["s"] = sqs_in["s"]
    if sqs:
        out["sqs"] = sqs
    return out


def _content_dedup(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _eb_opts(spec: dict[str, Any], event: Any, out_body: bytes) -> dict[str, Any] | None:
    group = spec.get("group")
    if not isinstance(group, str):
        return None
    dedup = None
    if spec.get("dedup") == "event-id" and isinstance(event, dict):
        eid = event.get("id")
        if isinstance(eid, str) and not isinstance(eid, _Number) and eid:
            dedup = eid
    return {"group": group, "dedup": dedup or _content_dedup(out_body)}


def _apply_sns(
    spec: dict[str, Any], props: dict[str, Any]
) -> tuple[dict[str, Any], bytes, dict[str, Any] | None]:
    sns_raw = props.get("sns")
    sns: dict[str, Any] = sns_raw if isinstance(sns_raw, dict) else {}
    protocol = str(spec.get("protocol", "sqs"))
    text = _sns_text(sns, protocol)
    out_props = _copy_props(props, sender=True)
    if spec.get("raw"):
        body = text.encode("utf-8")
        attrs = sns.get("attrs")
        if isinstance(attrs, dict) and attrs:
            sqs = out_props.setdefault("sqs", {})
            sqs["a"] = copy.deepcopy(attrs)
    else:
        body = _envelope(spec, sns, text).encode("utf-8")
    opts: dict[str, Any] | None = None
    group = sns.get("group")
    if not isinstance(group, str):
        group = spec.get("group")
    if isinstance(group, str):
        dedup = sns.get("dedup")
        if not isinstance(dedup, str) or not dedup:
            dedup = _content_dedup(str(sns.get("message", "")).encode("utf-8"))
        opts = {"group": group, "dedup": dedup}
        # what SQS shows as MessageGroupId / MessageDeduplicationId of the copy
        sqs_block = out_props.setdefault("sqs", {})
        sqs_block["g"] = group
        sqs_block["d"] = dedup
    return out_props, body, opts


def apply(
    spec: dict[str, Any], props: dict[str, Any], body: bytes
) -> tuple[dict[str, Any], bytes, dict[str, Any] | None] | None:
    """The copy a target receives: ``(props, body, publish opts or None)``, or None when the
    target gets nothing (an ``InputPath`` that selects nothing: EventBridge has no value to
    send; AWS documents no behaviour for this, so the target is skipped).

    ``spec`` must have passed :func:`validate`; inputs are never mutated.
    """
    kind = spec.get("kind")
    if kind == "sns":
        return _apply_sns(spec, props)
    data = bytes(body)
    try:
        text = data.decode("utf-8")
        event: Any = _loads(text)
    except (ValueError, RecursionError):
        text = data.decode("utf-8", "replace")
        event = MISSING
    if kind == "input":
        out = str(spec.get("input", "")).encode("utf-8")
    elif kind == "input_path":
        parsed = _parse_path(str(spec.get("path", "$")), brackets=True)
        value = MISSING if parsed is None else _select(event, parsed)
        if value is MISSING:
            return None
        out = _dumps(value).encode("utf-8")
    elif kind == "input_transformer":
        out = _render(spec, props, event, text).encode("utf-8")
    else:
        out = data
    out_props = _copy_props(props, sender=False)
    opts = _eb_opts(spec, event, out)
    if opts is not None:
        # what SQS shows as MessageGroupId / MessageDeduplicationId of the copy
        sqs_block = out_props.setdefault("sqs", {})
        sqs_block["g"] = opts["group"]
        sqs_block["d"] = opts["dedup"]
    return out_props, out, opts
