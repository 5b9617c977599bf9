"""Schema inference, merging, documents and content validation of the schema registry
(``broker/adapters/schemas_infer.py``), and the Python bindings generated from them
(``broker/adapters/schemas_codegen.py``)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from broker.adapters import schemas_codegen as codegen
from broker.adapters import schemas_infer as infer


def event(detail: Any, detail_type: str = "Order Created") -> dict[str, Any]:
    return {
        "version": "0",
        "id": "e1",
        "detail-type": detail_type,
        "source": "my.app",
        "account": "000000000000",
        "time": "2024-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def test_scalars_and_formats() -> None:
    assert infer.infer(1) == {"type": "integer"}
    assert infer.infer(1.5) == {"type": "number"}
    assert infer.infer(True) == {"type": "boolean"}
    assert infer.infer("x") == {"type": "string"}
    assert infer.infer("2024-01-01T00:00:00.5+02:00") == {"type": "string", "format": "date-time"}
    assert infer.infer("2024-01-01") == {"type": "string"}
    assert infer.infer(None) == {"nullable": True}


def test_merge_rules() -> None:
    m = infer.merge
    assert m({"type": "integer"}, {"type": "number"}) == {"type": "number"}
    assert m({"type": "string", "format": "date-time"}, {"type": "string"}) == {"type": "string"}
    assert m({"type": "string"}, {"nullable": True}) == {"type": "string", "nullable": True}
    assert m({"type": "string"}, {"type": "integer"}) == {}
    assert m({}, {"type": "integer"}) == {}  # mixed stays mixed: no flip-flopping versions
    a = infer.infer({"a": 1, "b": {"c": "x"}})
    b = infer.infer({"a": 2, "d": [1, 2]})
    both = m(a, b)
    assert both["required"] == ["a"]
    assert set(both["properties"]) == {"a", "b", "d"}
    assert both["properties"]["d"] == {"type": "array", "items": {"type": "integer"}}
    empty = infer.infer({"xs": []})
    filled = infer.infer({"xs": [{"k": 1}]})
    assert m(empty, filled)["properties"]["xs"]["items"]["properties"] == {"k": {"type": "integer"}}


def test_bounds() -> None:
    wide = infer.infer({f"k{i:04d}": i for i in range(infer.FIELDS_MAX + 50)})
    assert len(wide["properties"]) == infer.FIELDS_MAX
    deep: Any = 1
    for _ in range(infer.DEPTH_MAX + 5):
        deep = {"d": deep}
    node = infer.infer(deep)
    depth = 0
    while node.get("properties"):
        node = node["properties"]["d"]
        depth += 1
    assert depth == infer.DEPTH_MAX
    long = infer.infer(list(range(10_000)) + ["x"])
    assert long == {"type": "array", "items": {"type": "integer"}}  # sampled


def test_document_shape_and_round_trip() -> None:
    ev = event({"id": "o", "customer": {"name": "a"}, "lines": [{"sku": "s"}]})
    doc = infer.discover([ev])
    assert doc["openapi"] == "3.0.0" and doc["paths"] == {}
    assert doc["info"] == {"version": "1.0.0", "title": "OrderCreated"}
    comps = doc["components"]["schemas"]
    assert list(comps) == ["AWSEvent", "OrderCreated", "Customer", "LinesItem"]
    assert comps["AWSEvent"]["x-amazon-events-source"] == "my.app"
    assert comps["AWSEvent"]["properties"]["detail"] == {
        "$ref": "#/components/schemas/OrderCreated"
    }
    assert infer.tree_of(doc) == infer.infer(ev)
    assert infer.check_content("OpenApi3", json.dumps(doc)) is None
    d4 = infer.to_draft4(doc)
    assert infer.check_content("JSONSchemaDraft4", json.dumps(d4)) is None
    assert d4["definitions"]["OrderCreated"]["properties"]["customer"] == {
        "$ref": "#/definitions/Customer"
    }


def test_names() -> None:
    assert infer.pascal("EC2 Instance State-change Notification") == (
        "EC2InstanceStateChangeNotification"
    )
    assert infer.discovered_name("aws.ec2", "EC2 Instance State-change Notification") == (
        "aws.ec2@EC2InstanceStateChangeNotification"
    )
    assert infer.pascal("123 go") == "N123Go"


def test_content_validation_messages() -> None:
    assert "not valid JSON" in str(infer.check_content("OpenApi3", "{"))
    assert "openapi" in str(infer.check_content("OpenApi3", json.dumps({"openapi": 3})))
    assert "draft 4" in str(
        infer.check_content("JSONSchemaDraft4", json.dumps({"properties": {"a": {"type": 1}}}))
    )
    assert infer.check_content("JSONSchemaDraft4", json.dumps({"type": "object"})) is None


def test_python_bindings(tmp_path: Path) -> None:
    ev = event(
        {
            "order-id": "o",
            "class": "gold",
            "at": "2024-01-01T00:00:00.250Z",
            "items": [{"sku": "s", "price": 1.5}],
        }
    )
    doc = infer.discover([ev])
    body = codegen.source_zip("Python36", doc, "discovered-schemas", "my.app@OrderCreated")
    assert body == codegen.source_zip("Python36", doc, "discovered-schemas", "my.app@OrderCreated")
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert "schema/my/app/ordercreated/order_created.py" in names
    zipfile.ZipFile(io.BytesIO(body)).extractall(tmp_path)
    code = """
import json, sys
from schema.my.app.ordercreated import AWSEvent, Marshaller
ev = json.load(sys.stdin)
obj = Marshaller.unmarshall(ev, AWSEvent)
assert obj.detail.order_id == "o" and obj.detail.class_ == "gold"
assert obj.detail.items[0].price == 1.5
assert Marshaller.marshall(obj) == ev
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(ev),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_typescript_bindings_text() -> None:
    doc = infer.discover([event({"n": 1, "at": "2024-01-01T00:00:00Z", "x": None})])
    files = codegen.typescript_files(doc, "r", "s")
    text = files["schema/my/app/ordercreated/OrderCreated.ts"]
    assert '"at": Date;' in text and '"n": number;' in text and '"x": any;' in text
    assert (
        '"OrderCreated": {\n        "at": "date"'
        in files["schema/my/app/ordercreated/Marshaller.ts"]
    )


def test_body_keys() -> None:
    body = json.dumps(event({"source": "inner", "detail-type": "x"}), separators=(",", ":"))
    assert infer.body_keys(body.encode()) == ("my.app", "Order Created")
    assert infer.body_keys(json.dumps(event({}, "caf\u00e9")).encode()) is None  # spaced, escaped
    unicode = json.dumps(event({}, "caf\u00e9"), separators=(",", ":"), ensure_ascii=False)
    assert infer.body_keys(unicode.encode()) == ("my.app", "caf\u00e9")
    quoted = json.dumps(event({}, 'say "hi"'), separators=(",", ":"))
    assert infer.body_keys(quoted.encode()) is None
    assert infer.body_keys(b'{"detail":{}}') is None
    assert infer.body_keys(b"not json") is None
