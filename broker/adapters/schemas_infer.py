"""Schema inference for the EventBridge schema registry: events in, OpenAPI 3 documents out, in
the shape AWS's discovered schemas have.

An event is first described by an *inline tree*: an OpenAPI schema object whose nested objects
are written in place (``{"type": "object", "properties": {...}, "required": [...]}``, ``{"type":
"array", "items": ...}``, ``{"type": "string", "format": "date-time"}``, ``{"type": "integer"}``,
``{"type": "number"}``, ``{"type": "boolean"}``). Trees of the events seen are merged
(``merge``): keys missing from some events become optional, integer widens to number, a null
makes a field ``nullable``, a format is kept while every value has it, and types that disagree
become ``{}`` (any value; sticky, so a mixed stream does not flip between versions). An object
whose properties were never seen (an empty array's items, ``{}``) is ``{"type": "object"}`` and
takes the shape of whatever is merged into it.

``document`` writes a tree as AWS does: ``openapi: 3.0.0``, ``info``, ``paths: {}``, and under
``components.schemas`` the envelope ``AWSEvent`` (with ``x-amazon-events-source`` and
``x-amazon-events-detail-type``, ``detail`` a ``$ref`` to the detail type's schema) and one named
schema per nested object. ``tree_of`` reads such a document back into a tree, so discovery can
go on from the latest stored version after a restart.

Bounded work per event: at most ``FIELDS_MAX`` keys per object (the first in sorted order),
``DEPTH_MAX`` levels, ``ARRAY_SAMPLE`` items per array, date-time detection on strings up to
``FORMAT_CHARS_MAX`` characters.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

FIELDS_MAX = 200
DEPTH_MAX = 10
ARRAY_SAMPLE = 10
FORMAT_CHARS_MAX = 64
COMPONENTS_MAX = 500
REF_DEPTH_MAX = 32

OPENAPI_VERSION = "3.0.0"
INFO_VERSION = "1.0.0"
DRAFT4 = "http://json-schema.org/draft-04/schema#"
REF_PREFIX = "#/components/schemas/"
DEF_PREFIX = "#/definitions/"
ENVELOPE = "AWSEvent"
SOURCE_EXT = "x-amazon-events-source"
DETAIL_TYPE_EXT = "x-amazon-events-detail-type"

DATE_TIME_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_WORD_RE = re.compile(r"[A-Za-z0-9]+")

Tree = dict[str, Any]


# -- inference --------------------------------------------------------------------------------


def infer(value: Any, depth: int = 0) -> Tree:
    """The inline tree of one JSON value."""
    if value is None:
        return {"nullable": True}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        if len(value) <= FORMAT_CHARS_MAX and DATE_TIME_RE.match(value):
            return {"type": "string", "format": "date-time"}
        return {"type": "string"}
    if depth >= DEPTH_MAX:
        return {}
    if isinstance(value, list):
        items: Tree | None = None
        for item in value[:ARRAY_SAMPLE]:
            items = merge(items, infer(item, depth + 1))
        return {"type": "array", "items": items if items is not None else {"type": "object"}}
    if isinstance(value, dict):
        keys = sorted(str(k) for k in value)[:FIELDS_MAX]
        if not keys:
            return {"type": "object"}
        props = {k: infer(value[k], depth + 1) for k in keys}
        return {"type": "object", "properties": props, "required": keys}
    return {}


def _is_bare_object(node: Tree) -> bool:
    return node.get("type") == "object" and "properties" not in node


def _is_null_only(node: Tree) -> bool:
    return "type" not in node and node.get("nullable") is True


def merge(a: Tree | None, b: Tree) -> Tree:
    """The tree describing the values of both ``a`` and ``b`` (``a`` None: nothing seen yet)."""
    if a is None:
        return copy.deepcopy(b)
    nullable = bool(a.get("nullable") or b.get("nullable"))
    if _is_null_only(a) or _is_null_only(b):
        other = b if _is_null_only(a) else a
        out = copy.deepcopy(other)
        if out:
            out["nullable"] = True
        return out
    ta, tb = a.get("type"), b.get("type")
    if ta is None or tb is None:
        return {}  # any absorbs
    if ta == "object" and tb == "object":
        if _is_bare_object(a) or _is_bare_object(b):
            out = copy.deepcopy(b if _is_bare_object(a) else a)
        else:
            out = _merge_objects(a, b)
    elif ta == "array" and tb == "array":
        out = {"type": "array", "items": merge(a.get("items"), b.get("items") or {})}
    elif ta == tb:
        out = {"type": ta}
        if ta == "string" and a.get("format") and a.get("format") == b.get("format"):
            out["format"] = a["format"]
    elif {ta, tb} == {"integer", "number"}:
        out = {"type": "number"}
    else:
        return {}
    if nullable:
        out["nullable"] = True
    return out


def _merge_objects(a: Tree, b: Tree) -> Tree:
    pa: dict[str, Tree] = a.get("properties") or {}
    pb: dict[str, Tree] = b.get("properties") or {}
    keys = sorted(set(pa) | set(pb))[:FIELDS_MAX]
    props: dict[str, Tree] = {}
    for k in keys:
        if k in pa and k in pb:
            props[k] = merge(pa[k], pb[k])
        else:
            props[k] = copy.deepcopy(pa[k] if k in pa else pb[k])
    required = sorted(set(a.get("required") or ()) & set(b.get("required") or ()) & set(keys))
    out: Tree = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


# -- names ------------------------------------------------------------------------------------


def pascal(text: str) -> str:
    """``"Order State-change"`` -> ``"OrderStateChange"`` (as AWS names discovered schemas)."""
    words = _WORD_RE.findall(text)
    name = "".join(w[0].upper() + w[1:] for w in words)
    if not name:
        return "Value"
    if name[0].isdigit():
        name = "N" + name
    return name


def discovered_name(source: str, detail_type: str) -> str:
    """Name of the discovered schema of ``(source, detail-type)``: ``my.app@OrderCreated``."""
    src = re.sub(r"[^\.\-_A-Za-z0-9]", "", source) or "source"
    return f"{src}@{pascal(detail_type)}"[:385]


# -- documents --------------------------------------------------------------------------------


def document(tree: Tree, *, source: str | None, detail_type: str | None, title: str) -> Tree:
    """The OpenAPI 3 document of an event tree, nested objects as named components."""
    components: dict[str, Tree] = {}
    taken: dict[str, str] = {}

    def place(name: str, node: Tree, parent: str) -> str:
        canon = json.dumps(node, sort_keys=True)
        base = name
        if name in taken and taken[name] != canon:
            name = parent + name
        n = 1
        while name in taken and taken[name] != canon:
            n += 1
            name = f"{base}{n}"
        if name not in taken:
            if len(components) >= COMPONENTS_MAX:
                return ""
            taken[name] = canon
            components[name] = {}  # keep the order of first appearance
            components[name] = write_object(node, name)
        return name

    def write(node: Tree, name: str, parent: str) -> Tree:
        if node.get("type") == "object" and node.get("properties"):
            placed = place(name, node, parent)
            if not placed:
                return {"type": "object"}
            ref: Tree = {"$ref": REF_PREFIX + placed}
            return ref
        if node.get("type") == "array":
            items = node.get("items") or {"type": "object"}
            out: Tree = {"type": "array", "items": write(items, name + "Item", parent)}
            if node.get("nullable"):
                out["nullable"] = True
            return out
        return dict(node)

    def write_object(node: Tree, name: str) -> Tree:
        out: Tree = {"type": "object"}
        if node.get("required"):
            out["required"] = list(node["required"])
        props: dict[str, Tree] = {}
        for key in sorted(node.get("properties") or {}):
            child = node["properties"][key]
            child_name = pascal(key)
            if name == ENVELOPE and key == "detail" and detail_type is not None:
                child_name = pascal(detail_type)
            props[key] = write(child, child_name, name)
        out["properties"] = props
        if node.get("nullable"):
            out["nullable"] = True
        return out

    if source is not None and detail_type is not None and tree.get("type") == "object":
        components[ENVELOPE] = {}
        taken[ENVELOPE] = json.dumps(tree, sort_keys=True)
        env = write_object(tree, ENVELOPE)
        env[SOURCE_EXT] = source
        env[DETAIL_TYPE_EXT] = detail_type
        ordered: Tree = {"type": "object"}
        if "required" in env:
            ordered["required"] = env["required"]
        ordered[SOURCE_EXT] = source
        ordered[DETAIL_TYPE_EXT] = detail_type
        ordered["properties"] = env["properties"]
        components[ENVELOPE] = ordered
    else:
        root = pascal(title)
        if tree.get("type") == "object" and tree.get("properties"):
            place(root, tree, "")
        else:
            components[root] = write(tree, root, "")
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"version": INFO_VERSION, "title": title},
        "paths": {},
        "components": {"schemas": components},
    }


def root_component(doc: Tree) -> str | None:
    """The component an OpenAPI document describes events with: ``AWSEvent`` or the one with
    the events extensions, else the first."""
    schemas = (doc.get("components") or {}).get("schemas") or {}
    if not isinstance(schemas, dict) or not schemas:
        return None
    if ENVELOPE in schemas:
        return ENVELOPE
    for name, node in schemas.items():
        if isinstance(node, dict) and SOURCE_EXT in node:
            return str(name)
    return str(next(iter(schemas)))


def tree_of(doc: Tree) -> Tree | None:
    """The inline tree of a document written by ``document`` (refs resolved), or None."""
    schemas = (doc.get("components") or {}).get("schemas") or {}
    root = root_component(doc)
    if root is None:
        return None

    def resolve(node: Any, depth: int) -> Tree:
        if not isinstance(node, dict) or depth > REF_DEPTH_MAX:
            return {}
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = schemas.get(ref[len(REF_PREFIX) :]) if ref.startswith(REF_PREFIX) else None
            return resolve(target, depth + 1)
        out: Tree = {}
        if "type" in node:
            out["type"] = node["type"]
        if node.get("format"):
            out["format"] = node["format"]
        if node.get("nullable"):
            out["nullable"] = True
        if node.get("type") == "object" and isinstance(node.get("properties"), dict):
            props = {str(k): resolve(v, depth + 1) for k, v in node["properties"].items()}
            if props:
                out["properties"] = props
                req = [r for r in node.get("required") or () if r in props]
                if req:
                    out["required"] = sorted(req)
        if node.get("type") == "array":
            out["items"] = resolve(node.get("items"), depth + 1)
        return out

    return resolve(schemas[root], 0)


def event_keys(event: Any) -> tuple[str, str] | None:
    """``(source, detail-type)`` of an EventBridge event, or None."""
    if not isinstance(event, dict):
        return None
    source, detail_type = event.get("source"), event.get("detail-type")
    if isinstance(source, str) and isinstance(detail_type, str) and "detail" in event:
        return source, detail_type
    return None


_SOURCE_KEY = b'"source":'
_DETAIL_TYPE_KEY = b'"detail-type":'
#: how far into a body the envelope keys are looked for
_KEYS_WITHIN = 2048


def _string_after(body: bytes, key: bytes) -> str | None:
    at = body.find(key, 0, _KEYS_WITHIN)
    if at < 0:
        return None
    start = at + len(key)
    if body[start : start + 1] != b'"':
        return None
    end = body.find(b'"', start + 1)
    if end < 0:
        return None
    raw = body[start + 1 : end]
    if b"\\" in raw:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def body_keys(body: bytes) -> tuple[str, str] | None:
    """``(source, detail-type)`` read from the top of a compact JSON event without parsing it
    (a bus's events put them before ``detail``); None when they are not found that way. Only
    a hint for sampling: the event is parsed before anything is inferred from it."""
    source = _string_after(body, _SOURCE_KEY)
    detail_type = _string_after(body, _DETAIL_TYPE_KEY)
    if source is None or detail_type is None:
        return None
    return source, detail_type


def discover(events: list[Any]) -> Tree:
    """The OpenAPI 3 document inferred from sample events (GetDiscoveredSchema)."""
    tree: Tree | None = None
    for event in events:
        tree = merge(tree, infer(event))
    assert tree is not None
    keys = event_keys(events[0])
    if keys is not None and all(event_keys(e) == keys for e in events):
        return document(tree, source=keys[0], detail_type=keys[1], title=pascal(keys[1]))
    return document(tree, source=None, detail_type=None, title="Event")


# -- JSON Schema draft 4 ----------------------------------------------------------------------


def to_draft4(doc: Tree) -> Tree:
    """An OpenAPI 3 document as one JSON Schema draft 4 document (ExportSchema): the root
    component at the top, the others under ``definitions``, ``nullable`` as a ``null`` type."""
    schemas: dict[str, Any] = dict((doc.get("components") or {}).get("schemas") or {})
    root = root_component(doc)

    def conv(node: Any) -> Any:
        if isinstance(node, list):
            return [conv(x) for x in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith(REF_PREFIX):
                out[k] = DEF_PREFIX + v[len(REF_PREFIX) :]
            elif k == "nullable":
                continue
            else:
                out[k] = conv(v)
        if node.get("nullable") is True and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out

    top: dict[str, Any] = {"$schema": DRAFT4}
    if root is not None:
        top.update(conv(schemas.pop(root)))
    title = (doc.get("info") or {}).get("title")
    if isinstance(title, str) and "title" not in top:
        top["title"] = title
    if schemas:
        top["definitions"] = {name: conv(node) for name, node in schemas.items()}
    return top


def from_draft4(doc: Tree, title: str) -> Tree:
    """A JSON Schema draft 4 document as an OpenAPI 3 document (for code bindings)."""

    def conv(node: Any) -> Any:
        if isinstance(node, list):
            return [conv(x) for x in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k in ("$schema", "definitions", "id"):
                continue
            if k == "$ref" and isinstance(v, str) and v.startswith(DEF_PREFIX):
                out[k] = REF_PREFIX + v[len(DEF_PREFIX) :]
            elif k == "type" and isinstance(v, list):
                kinds = [t for t in v if t != "null"]
                if len(kinds) == 1:
                    out["type"] = kinds[0]
                if "null" in v:
                    out["nullable"] = True
            else:
                out[k] = conv(v)
        return out

    root_name = pascal(str(doc.get("title") or title))
    schemas: dict[str, Any] = {root_name: conv(doc)}
    for name, node in (doc.get("definitions") or {}).items():
        schemas[str(name)] = conv(node)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"version": INFO_VERSION, "title": title},
        "paths": {},
        "components": {"schemas": schemas},
    }


# -- validation -------------------------------------------------------------------------------


def _check_draft4_schema(schema: Any, where: str) -> str | None:
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema is a dependency
        if not isinstance(schema, dict):
            return f"{where} must be a JSON object"
        return None
    try:
        jsonschema.Draft4Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.absolute_path)
        at = f" at '{path}'" if path else ""
        return f"{where} is not a valid JSON Schema draft 4 schema{at}: {exc.message}"
    return None


def check_content(kind: str, content: str) -> str | None:
    """Why ``content`` is not a valid schema of type ``kind`` (OpenApi3, JSONSchemaDraft4), or
    None."""
    try:
        doc = json.loads(content)
    except ValueError as exc:
        return f"Invalid schema content: not valid JSON ({exc})."
    if not isinstance(doc, dict):
        return "Invalid schema content: the schema must be a JSON object."
    if kind == "OpenApi3":
        version = doc.get("openapi")
        if not isinstance(version, str) or not version.startswith("3."):
            return (
                "Invalid OpenApi3 schema content: the 'openapi' field must name an OpenAPI 3.x "
                'version, such as "3.0.0".'
            )
        info = doc.get("info")
        if info is not None and not isinstance(info, dict):
            return "Invalid OpenApi3 schema content: 'info' must be an object."
        schemas = (
            (doc.get("components") or {}).get("schemas")
            if isinstance(doc.get("components"), dict)
            else None
        )
        if not isinstance(schemas, dict) or not schemas:
            return (
                "Invalid OpenApi3 schema content: 'components.schemas' must be an object with "
                "at least one schema."
            )
        for name, node in schemas.items():
            why = _check_draft4_schema(node, f"Invalid OpenApi3 schema content: schema '{name}'")
            if why is not None:
                return why
        return _check_refs(doc, REF_PREFIX, schemas)
    if kind == "JSONSchemaDraft4":
        declared = doc.get("$schema")
        if declared is not None and (not isinstance(declared, str) or "draft-04" not in declared):
            return (
                "Invalid JSONSchemaDraft4 schema content: '$schema' must be "
                f'"{DRAFT4}" when given.'
            )
        why = _check_draft4_schema(doc, "Invalid JSONSchemaDraft4 schema content: the schema")
        if why is not None:
            return why
        return _check_refs(doc, DEF_PREFIX, doc.get("definitions") or {})
    return f"Invalid schema type {kind}."


def _check_refs(doc: Any, prefix: str, names: Any) -> str | None:
    stack = [doc]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > 100_000:
            return None
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(prefix) and ref[len(prefix) :] not in names:
                return f"Invalid schema content: unresolvable reference {ref}."
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None
