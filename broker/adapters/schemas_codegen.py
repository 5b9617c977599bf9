"""Code bindings of the schema registry: sources generated from a schema's OpenAPI 3 document,
zipped as GetCodeBindingSource returns them.

Languages (the names AWS uses): ``Python36`` (one dataclass per object schema and a
``Marshaller`` with ``unmarshall(dict, type)`` / ``marshall(obj)``) and ``TypeScript3`` (one
interface per object schema and a ``Marshaller`` with ``unmarshal(data, "Type")`` /
``marshal(obj, "Type")``). Both sit in a package folder ``schema/<source parts>/<detail type>/``
(for a discovered schema ``my.app@OrderCreated``: ``schema/my/app/ordercreated/``), and for
other schemas ``schema/<registry>/<schema name>/``, as AWS lays out its zips.

Every class is named after its component; Python fields are the snake_case of the JSON keys
(the key itself kept in the field's ``metadata["json"]``), TypeScript properties keep the keys.
``date-time`` strings are ``datetime.datetime`` / ``Date``. Generation is deterministic (same
document, same bytes), so the zip is built on request rather than stored.
"""

from __future__ import annotations

import io
import json
import keyword
import re
import zipfile
from typing import Any

from broker.adapters.schemas_infer import (
    DETAIL_TYPE_EXT,
    REF_PREFIX,
    SOURCE_EXT,
    pascal,
    root_component,
)

LANGUAGES = ("Python36", "TypeScript3")
#: Languages AWS offers that polymq does not generate.
LANGUAGES_NOT_GENERATED = ("Java8", "Go1")
CLASSES_MAX = 500
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

_IDENT_RE = re.compile(r"[^0-9A-Za-z_]")


def _ident(text: str) -> str:
    out = _IDENT_RE.sub("_", text) or "_"
    if out[0].isdigit():
        out = "_" + out
    if keyword.iskeyword(out):
        out += "_"
    return out


def snake(text: str) -> str:
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return _ident(s.replace("-", "_").replace(".", "_").lower())


def package_parts(doc: dict[str, Any], registry: str, schema: str) -> list[str]:
    """Folders under ``schema/`` of a schema's bindings."""
    root = root_component(doc)
    node = ((doc.get("components") or {}).get("schemas") or {}).get(root) if root else None
    if isinstance(node, dict) and isinstance(node.get(SOURCE_EXT), str):
        source = str(node[SOURCE_EXT])
        detail = str(node.get(DETAIL_TYPE_EXT) or root)
        parts = [p for p in source.split(".") if p] + [pascal(detail).lower()]
    else:
        parts = [registry, schema.split("@")[-1].lower()]
    return [_ident(p.lower()) for p in parts]


class _Model:
    """The object schemas of a document, by class name."""

    def __init__(self, doc: dict[str, Any]) -> None:
        raw = (doc.get("components") or {}).get("schemas") or {}
        self.schemas: dict[str, Any] = raw if isinstance(raw, dict) else {}
        self.classes: dict[str, dict[str, Any]] = {}
        for name, node in list(self.schemas.items())[:CLASSES_MAX]:
            if isinstance(node, dict) and isinstance(node.get("properties"), dict):
                self.classes[_ident(pascal(str(name)))] = node
        self.names = {str(n): _ident(pascal(str(n))) for n in self.schemas}

    def target(self, node: dict[str, Any], depth: int = 0) -> tuple[str, Any]:
        """``("class", name)``, or ``("node", node)`` with refs to non-classes resolved."""
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX) and depth < 16:
            name = ref[len(REF_PREFIX) :]
            cls = self.names.get(name)
            if cls is not None and cls in self.classes:
                return "class", cls
            inner = self.schemas.get(name)
            if isinstance(inner, dict):
                return self.target(inner, depth + 1)
            return "node", {}
        return "node", node


def _field_names(props: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    used: set[str] = set()
    for key in props:
        name = snake(str(key))
        while name in used:
            name += "_"
        used.add(name)
        out.append((str(key), name))
    return out


# -- Python ------------------------------------------------------------------------------------

PY_MARSHALLER = '''"""Marshaller of the generated event types.

``Marshaller.unmarshall(data, AWSEvent)`` builds the objects from a parsed event,
``Marshaller.marshall(obj)`` gives the JSON-ready dict back."""

from __future__ import annotations

import dataclasses
import datetime
import sys
import typing


def _namespace(cls: type) -> typing.Dict[str, typing.Any]:
    package = sys.modules[cls.__module__.rsplit(".", 1)[0]]
    ns = dict(vars(package))
    ns.update(datetime=datetime, typing=typing)
    return ns


def _format_datetime(value: datetime.datetime) -> str:
    if value.microsecond == 0:
        text = value.isoformat(timespec="seconds")
    elif value.microsecond % 1000 == 0:
        text = value.isoformat(timespec="milliseconds")
    else:
        text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _parse_datetime(value: str) -> datetime.datetime:
    text = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
    return datetime.datetime.fromisoformat(text)


class Marshaller:
    @classmethod
    def marshall(cls, obj: typing.Any) -> typing.Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            out = {}
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                if value is not None:
                    out[f.metadata.get("json", f.name)] = cls.marshall(value)
            return out
        if isinstance(obj, datetime.datetime):
            return _format_datetime(obj)
        if isinstance(obj, list):
            return [cls.marshall(v) for v in obj]
        if isinstance(obj, dict):
            return {k: cls.marshall(v) for k, v in obj.items()}
        return obj

    @classmethod
    def unmarshall(cls, data: typing.Any, typ: typing.Any) -> typing.Any:
        if data is None:
            return None
        origin = typing.get_origin(typ)
        args = typing.get_args(typ)
        if origin is typing.Union:
            kinds = [a for a in args if a is not type(None)]
            return cls.unmarshall(data, kinds[0]) if len(kinds) == 1 else data
        if origin in (list, typing.List):
            if not isinstance(data, list):
                return data
            return [cls.unmarshall(v, args[0] if args else typing.Any) for v in data]
        if typ is datetime.datetime:
            return _parse_datetime(data) if isinstance(data, str) else data
        if dataclasses.is_dataclass(typ) and isinstance(data, dict):
            hints = typing.get_type_hints(typ, _namespace(typ))
            kwargs = {}
            for f in dataclasses.fields(typ):
                key = f.metadata.get("json", f.name)
                if key in data:
                    kwargs[f.name] = cls.unmarshall(data[key], hints.get(f.name, typing.Any))
            return typ(**kwargs)
        return data
'''


def _py_type(model: _Model, node: Any) -> str:
    if not isinstance(node, dict):
        return "typing.Any"
    kind, what = model.target(node)
    if kind == "class":
        return str(what)
    t = what.get("type")
    if t == "string":
        return "datetime.datetime" if what.get("format") == "date-time" else "str"
    if t == "integer":
        return "int"
    if t == "number":
        return "float"
    if t == "boolean":
        return "bool"
    if t == "array":
        return f"typing.List[{_py_type(model, what.get('items'))}]"
    if t == "object":
        return "typing.Dict[str, typing.Any]"
    return "typing.Any"


def _py_class(model: _Model, cls: str, node: dict[str, Any]) -> str:
    props: dict[str, Any] = node.get("properties") or {}
    required = set(node.get("required") or ())
    lines = [
        f'"""{cls}: generated from the schema registry."""',
        "",
        "from __future__ import annotations",
        "",
        "import dataclasses",
        "import datetime  # noqa: F401",
        "import typing  # noqa: F401",
        "",
        "",
        "@dataclasses.dataclass",
        f"class {cls}:",
    ]
    if not props:
        lines.append("    pass")
    for key, field in _field_names(props):
        hint = _py_type(model, props[key])
        note = "  # required" if key in required else ""
        lines.append(
            f"    {field}: typing.Optional[{hint}] = dataclasses.field("
            f'default=None, metadata={{"json": {json.dumps(key)}}}){note}'
        )
    return "\n".join(lines) + "\n"


def python_files(doc: dict[str, Any], registry: str, schema: str) -> dict[str, str]:
    model = _Model(doc)
    parts = package_parts(doc, registry, schema)
    base = "schema/" + "/".join(parts)
    files: dict[str, str] = {"schema/__init__.py": ""}
    for i in range(1, len(parts)):
        files["schema/" + "/".join(parts[:i]) + "/__init__.py"] = ""
    init = ["from .marshaller import Marshaller"]
    exported = ["Marshaller"]
    for cls, node in model.classes.items():
        module = snake(cls)
        if module == "marshaller":
            module += "_"
        files[f"{base}/{module}.py"] = _py_class(model, cls, node)
        init.append(f"from .{module} import {cls}")
        exported.append(cls)
    init.append("")
    init.append(f"__all__ = {json.dumps(exported)}")
    files[f"{base}/__init__.py"] = "\n".join(init) + "\n"
    files[f"{base}/marshaller.py"] = PY_MARSHALLER
    return files


# -- TypeScript --------------------------------------------------------------------------------

TS_MARSHALLER_BODY = """
function formatDate(d: Date): string {
    const text = d.toISOString();
    return text.endsWith(".000Z") ? text.slice(0, -5) + "Z" : text;
}

function convert(value: any, spec: Spec, toWire: boolean): any {
    if (value === null || value === undefined) {
        return value;
    }
    if (spec === "date") {
        if (toWire) {
            return value instanceof Date ? formatDate(value) : value;
        }
        return typeof value === "string" ? new Date(value) : value;
    }
    if (spec === "any") {
        return value;
    }
    if ("array" in spec) {
        return Array.isArray(value) ? value.map((v) => convert(v, spec.array, toWire)) : value;
    }
    const fields = typeMap[spec.ref];
    if (typeof value !== "object" || fields === undefined) {
        return value;
    }
    const out: { [key: string]: any } = {};
    for (const key of Object.keys(value)) {
        const field = fields[key];
        out[key] = field === undefined ? value[key] : convert(value[key], field, toWire);
    }
    return out;
}

export class Marshaller {
    static unmarshal<T>(data: any, type: string): T {
        return convert(data, { ref: type }, false) as T;
    }

    static marshal(data: any, type: string): any {
        return convert(data, { ref: type }, true);
    }
}
"""


def _ts_type(model: _Model, node: Any, refs: set[str]) -> str:
    if not isinstance(node, dict):
        return "any"
    kind, what = model.target(node)
    if kind == "class":
        refs.add(str(what))
        return str(what)
    t = what.get("type")
    out = "any"
    if t == "string":
        out = "Date" if what.get("format") == "date-time" else "string"
    elif t in ("integer", "number"):
        out = "number"
    elif t == "boolean":
        out = "boolean"
    elif t == "array":
        out = f"Array<{_ts_type(model, what.get('items'), refs)}>"
    elif t == "object":
        out = "{ [key: string]: any }"
    if what.get("nullable") and out != "any":
        out += " | null"
    return out


def _ts_spec(model: _Model, node: Any) -> Any:
    """The marshaller's conversion of a field: "date", "any", {"ref"}, {"array"}."""
    if not isinstance(node, dict):
        return "any"
    kind, what = model.target(node)
    if kind == "class":
        return {"ref": what}
    if what.get("type") == "string" and what.get("format") == "date-time":
        return "date"
    if what.get("type") == "array":
        inner = _ts_spec(model, what.get("items"))
        return "any" if inner == "any" else {"array": inner}
    return "any"


def typescript_files(doc: dict[str, Any], registry: str, schema: str) -> dict[str, str]:
    model = _Model(doc)
    base = "schema/" + "/".join(package_parts(doc, registry, schema))
    files: dict[str, str] = {}
    type_map: dict[str, dict[str, Any]] = {}
    for cls, node in model.classes.items():
        props: dict[str, Any] = node.get("properties") or {}
        required = set(node.get("required") or ())
        refs: set[str] = set()
        body = []
        specs: dict[str, Any] = {}
        for key, value in props.items():
            opt = "" if key in required else "?"
            body.append(f"    {json.dumps(str(key))}{opt}: {_ts_type(model, value, refs)};")
            spec = _ts_spec(model, value)
            if spec != "any":
                specs[str(key)] = spec
        type_map[cls] = specs
        head = [f'import {{ {r} }} from "./{r}";' for r in sorted(refs - {cls})]
        text = "\n".join(head) + ("\n\n" if head else "")
        text += f"export interface {cls} {{\n" + "\n".join(body) + ("\n" if body else "") + "}\n"
        files[f"{base}/{cls}.ts"] = text
    marshaller = [
        'type Spec = "date" | "any" | { ref: string } | { array: Spec };',
        "",
        "const typeMap: { [type: string]: { [key: string]: Spec } } = "
        + json.dumps(type_map, indent=4)
        + ";",
        TS_MARSHALLER_BODY,
    ]
    files[f"{base}/Marshaller.ts"] = "\n".join(marshaller)
    index = [f'export {{ {cls} }} from "./{cls}";' for cls in model.classes]
    index.append('export { Marshaller } from "./Marshaller";')
    files[f"{base}/index.ts"] = "\n".join(index) + "\n"
    return files


# -- zip ---------------------------------------------------------------------------------------


def source_zip(language: str, doc: dict[str, Any], registry: str, schema: str) -> bytes:
    """The zip GetCodeBindingSource returns for ``language``."""
    if language == "Python36":
        files = python_files(doc, registry, schema)
    elif language == "TypeScript3":
        files = typescript_files(doc, registry, schema)
    else:
        raise ValueError(language)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[path])
    return buf.getvalue()
