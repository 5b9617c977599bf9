"""Schema discovery on a live bus through boto3: a discoverer sees a varied stream of PutEvents
and writes the expected versions of ``<source>@<DetailType>`` in ``discovered-schemas`` (and
none when nothing changed); code bindings of a discovered schema are generated, imported (and
for TypeScript compiled, when the compiler can be installed) and used to round-trip a real
event; registries, schemas and discoverers survive kill -9 and a restart. In process: the
discoverer's feed is a transient queue that leaves PutEvents' logging as it was (logged only
with a durable target, one command), and it is declared again after a restart."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import trio

from broker.adapters.events import EventsAdapter
from broker.adapters.schemas import DISCOVERY_QUEUE_PREFIX, SchemasAdapter
from broker.api import Broker
from broker.config import Config
from broker.node import Node
from tests.interop import schemas_helpers
from tests.interop.schemas_helpers import client, content, name, openapi, put, wait_versions
from tests.polymq_process import own_sqs_polymq

schemas_broker, schemas, events = (
    schemas_helpers.schemas_broker,
    schemas_helpers.schemas,
    schemas_helpers.events,
)

TSC_INSTALL_S = 90


def new_discovered_bus(schemas: Any, events: Any) -> tuple[str, str]:
    bus = name("bus")
    arn = events.create_event_bus(Name=bus)["EventBusArn"]
    did = schemas.create_discoverer(SourceArn=arn)["DiscovererId"]
    return bus, did


def settle(schemas: Any, events: Any, bus: str) -> None:
    """Everything put on ``bus`` so far has been through discovery: a marker event put after
    it (the queue is FIFO) has its schema."""
    source = name("marker")
    put(events, bus, (source, "Marker", {"m": 1}))
    wait_versions(schemas, f"{source}@Marker", 1)


def test_discovery_versions(schemas: Any, events: Any) -> None:
    bus, did = new_discovered_bus(schemas, events)
    source = name("shop")
    schema = f"{source}@OrderCreated"
    put(
        events,
        bus,
        *[
            (
                source,
                "Order Created",
                {
                    "id": f"o{i}",
                    "total": 10,
                    "at": "2024-01-01T10:00:00Z",
                    "customer": {"name": "ann", "vip": True},
                    "lines": [{"sku": "a", "qty": 1}],
                },
            )
            for i in range(5)
        ],
    )
    assert wait_versions(schemas, schema, 1) == ["1"]
    doc = content(schemas, schema)
    comps = doc["components"]["schemas"]
    env = comps["AWSEvent"]
    assert env["x-amazon-events-source"] == source
    assert env["x-amazon-events-detail-type"] == "Order Created"
    assert env["properties"]["detail"] == {"$ref": "#/components/schemas/OrderCreated"}
    assert env["properties"]["time"] == {"type": "string", "format": "date-time"}
    assert set(env["required"]) >= {"detail", "detail-type", "source", "time", "id"}
    detail = comps["OrderCreated"]
    assert detail["required"] == ["at", "customer", "id", "lines", "total"]
    assert detail["properties"]["total"] == {"type": "integer"}
    assert detail["properties"]["at"] == {"type": "string", "format": "date-time"}
    assert detail["properties"]["customer"] == {"$ref": "#/components/schemas/Customer"}
    assert detail["properties"]["lines"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/LinesItem"},
    }
    assert comps["Customer"]["properties"]["vip"] == {"type": "boolean"}

    # the same shape again: no new version
    put(
        events,
        bus,
        (
            source,
            "Order Created",
            {
                "id": "x",
                "total": 3,
                "at": "2024-02-01T00:00:00Z",
                "customer": {"name": "bob", "vip": False},
                "lines": [],
            },
        ),
    )
    settle(schemas, events, bus)
    assert wait_versions(schemas, schema, 1) == ["1"]

    # a new optional field, a float total and a non-date "at": one new version
    put(
        events,
        bus,
        (
            source,
            "Order Created",
            {
                "id": "y",
                "total": 2.5,
                "at": "soon",
                "customer": {"name": "cy", "vip": False},
                "lines": [{"sku": "b", "qty": 2, "note": "gift"}],
                "coupon": "SAVE",
            },
        ),
    )
    assert wait_versions(schemas, schema, 2) == ["1", "2"]
    detail = content(schemas, schema, "2")["components"]["schemas"]["OrderCreated"]
    assert "coupon" in detail["properties"] and "coupon" not in detail["required"]
    assert detail["properties"]["total"] == {"type": "number"}
    assert detail["properties"]["at"] == {"type": "string"}
    lines = content(schemas, schema, "2")["components"]["schemas"]["LinesItem"]
    assert lines["required"] == ["qty", "sku"] and "note" in lines["properties"]
    # version 1 is kept as it was
    assert content(schemas, schema, "1")["components"]["schemas"]["OrderCreated"]["properties"][
        "total"
    ] == {"type": "integer"}

    # a field that goes missing becomes optional: version 3; then nothing new
    put(
        events,
        bus,
        (source, "Order Created", {"id": "z", "total": 1, "at": "x", "customer": {"name": "d"}}),
    )
    assert wait_versions(schemas, schema, 3) == ["1", "2", "3"]
    detail = content(schemas, schema)["components"]["schemas"]["OrderCreated"]
    assert detail["required"] == ["at", "customer", "id", "total"]
    customer = content(schemas, schema)["components"]["schemas"]["Customer"]
    assert customer["required"] == ["name"]
    put(events, bus, (source, "Order Created", {"id": "w", "total": 4, "at": "y", "customer": {}}))
    settle(schemas, events, bus)
    assert len(wait_versions(schemas, schema, 3)) == 3

    # another detail type of the same source is another schema
    put(events, bus, (source, "Order Shipped", {"id": "o1", "carrier": "ups"}))
    assert wait_versions(schemas, f"{source}@OrderShipped", 1) == ["1"]
    found = schemas.search_schemas(RegistryName="discovered-schemas", Keywords=source)["Schemas"]
    assert {s["SchemaName"] for s in found} == {schema, f"{source}@OrderShipped"}

    # a stopped discoverer sees nothing
    schemas.stop_discoverer(DiscovererId=did)
    put(events, bus, (source, "While Stopped", {"a": 1}))
    schemas.start_discoverer(DiscovererId=did)
    settle(schemas, events, bus)
    expect_missing = schemas.exceptions.NotFoundException
    with pytest.raises(expect_missing):
        schemas.describe_schema(
            RegistryName="discovered-schemas", SchemaName=f"{source}@WhileStopped"
        )
    schemas.delete_discoverer(DiscovererId=did)


def bindings(schemas: Any, schema: str, language: str, dest: Path) -> Path:
    schemas.put_code_binding(
        RegistryName="discovered-schemas", SchemaName=schema, Language=language
    )
    body = schemas.get_code_binding_source(
        RegistryName="discovered-schemas", SchemaName=schema, Language=language
    )["Body"].read()
    zipfile.ZipFile(io.BytesIO(body)).extractall(dest)
    return dest


def discovered_event(schemas: Any, events: Any) -> tuple[str, dict[str, Any], str]:
    """A discovered schema and a real event of its type, read back from an SQS queue."""
    bus, did = new_discovered_bus(schemas, events)
    source = "acme." + name("app").replace("-", "_")
    sqs = client("sqs", events.meta.endpoint_url)
    qname = name("q")
    url = sqs.create_queue(QueueName=qname)["QueueUrl"]
    rule = name("rule")
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(
        Rule=rule,
        EventBusName=bus,
        Targets=[{"Id": "q", "Arn": f"arn:aws:sqs:us-east-1:000000000000:{qname}"}],
    )
    detail = {
        "order-id": "o-1",
        "amount": 12.5,
        "count": 3,
        "placed": "2024-03-04T05:06:07.123Z",
        "customer": {"name": "ann", "tags": ["a", "b"]},
        "lines": [{"sku": "x", "qty": 2}],
    }
    put(events, bus, (source, "Order Placed", detail))
    schema = f"{source}@OrderPlaced"
    wait_versions(schemas, schema, 1)
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
    schemas.delete_discoverer(DiscovererId=did)
    return schema, json.loads(got[0]["Body"]), source


def test_python_bindings_round_trip(schemas: Any, events: Any, tmp_path: Path) -> None:
    schema, event, source = discovered_event(schemas, events)
    root = bindings(schemas, schema, "Python36", tmp_path)
    package = f"schema.{source}.orderplaced"
    code = f"""
import datetime, json, sys
from {package} import AWSEvent, Marshaller, OrderPlaced, Customer
event = json.load(sys.stdin)
obj = Marshaller.unmarshall(event, AWSEvent)
assert isinstance(obj.detail, OrderPlaced), obj.detail
assert isinstance(obj.detail.customer, Customer)
assert obj.detail.order_id == "o-1" and obj.detail.count == 3
assert obj.detail.placed == datetime.datetime(2024, 3, 4, 5, 6, 7, 123000, datetime.timezone.utc)
assert isinstance(obj.time, datetime.datetime)
assert obj.detail.lines[0].qty == 2 and obj.detail.customer.tags == ["a", "b"]
obj.detail.customer.name = "bob"
back = Marshaller.marshall(obj)
event["detail"]["customer"]["name"] = "bob"
assert back == event, (back, event)
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(event),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def tsc(tmp: Path) -> Path | None:
    """A TypeScript compiler: on PATH, else installed from npm into ``tmp`` (None when that
    fails within the time budget)."""
    found = shutil.which("tsc")
    if found:
        return Path(found)
    npm = shutil.which("npm")
    if npm is None:
        return None
    try:
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", "typescript@5"],
            cwd=tmp,
            capture_output=True,
            timeout=TSC_INSTALL_S,
            check=True,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    path = tmp / "node_modules" / ".bin" / "tsc"
    return path if path.exists() else None


def test_typescript_bindings_round_trip(schemas: Any, events: Any, tmp_path: Path) -> None:
    schema, event, source = discovered_event(schemas, events)
    root = bindings(schemas, schema, "TypeScript3", tmp_path / "src")
    package = "./schema/" + source.replace(".", "/") + "/orderplaced"
    files = sorted(p.name for p in (root / package).iterdir())
    assert files == [
        "AWSEvent.ts",
        "Customer.ts",
        "LinesItem.ts",
        "Marshaller.ts",
        "OrderPlaced.ts",
        "index.ts",
    ]
    text = (root / package / "OrderPlaced.ts").read_text()
    assert '"placed": Date;' in text and '"customer": Customer;' in text
    node = shutil.which("node")
    compiler = tsc(tmp_path)
    if node is None or compiler is None:
        pytest.skip("no TypeScript compiler could be installed (npm) to compile the bindings")
    (root / "event.json").write_text(json.dumps(event))
    (root / "main.ts").write_text(
        f"""
import {{ Marshaller, AWSEvent }} from "{package}";
declare const require: any;
const fs = require("fs");
const raw = JSON.parse(fs.readFileSync("event.json", "utf8"));
const ev = Marshaller.unmarshal<AWSEvent>(raw, "AWSEvent");
if (!(ev.detail.placed instanceof Date)) throw new Error("placed is not a Date");
if (ev.detail.placed.getUTCMilliseconds() !== 123) throw new Error("millis");
if (ev.detail.lines[0].qty !== 2) throw new Error("qty");
const back = Marshaller.marshal(ev, "AWSEvent");
if (JSON.stringify(back) !== JSON.stringify(raw)) throw new Error(JSON.stringify(back));
console.log("ok");
"""
    )
    subprocess.run(
        [str(compiler), "--strict", "--target", "es2017", "--module", "commonjs", "main.ts"],
        cwd=root,
        check=True,
        timeout=120,
        capture_output=True,
    )
    out = subprocess.run([node, "main.js"], cwd=root, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


def test_survives_kill9(tmp_path: Path) -> None:
    broker = own_sqs_polymq(tmp_path)
    try:
        sch = client("schemas", broker.http_url)
        ev = client("events", broker.http_url)
        reg = name("reg")
        sch.create_registry(RegistryName=reg, Description="kept", Tags={"k": "v"})
        sch.create_schema(RegistryName=reg, SchemaName="S", Type="OpenApi3", Content=openapi())
        sch.update_schema(
            RegistryName=reg, SchemaName="S", Content=openapi(props={"n": {"type": "integer"}})
        )
        sch.put_resource_policy(RegistryName=reg, Policy=json.dumps({"Version": "2012-10-17"}))
        bus = name("bus")
        arn = ev.create_event_bus(Name=bus)["EventBusArn"]
        did = sch.create_discoverer(SourceArn=arn)["DiscovererId"]
        source = name("src")
        put(ev, bus, (source, "Thing", {"a": 1}))
        wait_versions(sch, f"{source}@Thing", 1)
        broker.kill9()
        broker.restart()
        sch = client("schemas", broker.http_url)
        ev = client("events", broker.http_url)
        got = sch.describe_registry(RegistryName=reg)
        assert got["Description"] == "kept" and got["Tags"] == {"k": "v"}
        rows = sch.list_schema_versions(RegistryName=reg, SchemaName="S")["SchemaVersions"]
        assert [r["SchemaVersion"] for r in rows] == ["1", "2"]
        assert (
            sch.describe_schema(RegistryName=reg, SchemaName="S", SchemaVersion="1")["Content"]
            == openapi()
        )
        assert json.loads(sch.get_resource_policy(RegistryName=reg)["Policy"]) == {
            "Version": "2012-10-17"
        }
        assert sch.describe_discoverer(DiscovererId=did)["State"] == "STARTED"
        # discovery goes on from the stored version after the restart: the same shape adds
        # nothing, an event without "a" makes it optional (merged with version 1)
        put(ev, bus, (source, "Thing", {"a": 2}))
        marker = name("marker")
        put(ev, bus, (marker, "Marker", {"m": 1}))
        wait_versions(sch, f"{marker}@Marker", 1)
        assert wait_versions(sch, f"{source}@Thing", 1) == ["1"]
        put(ev, bus, (source, "Thing", {"b": "new"}))
        assert wait_versions(sch, f"{source}@Thing", 2) == ["1", "2"]
        detail = content(sch, f"{source}@Thing", "2")["components"]["schemas"]["Thing"]
        assert set(detail["properties"]) == {"a", "b"}
        assert not detail.get("required")
    finally:
        broker.stop()


# -- in process: the discoverer's feed and the log ------------------------------------------------

TARGET_ARN = "arn:aws:sqs:us-east-1:000000000000:"


class InProcess:
    """A node with the EventBridge and schema registry adapters, driven by their actions."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.events = EventsAdapter(broker)
        self.schemas = SchemasAdapter(broker)

    @property
    def logged(self) -> int:
        return self.broker.node.commands_logged

    async def put(self, bus: str, source: str, detail: dict[str, Any]) -> None:
        entry = {
            "Source": source,
            "DetailType": "Thing",
            "Detail": json.dumps(detail),
            "EventBusName": bus,
        }
        reply = await self.events.handle("PutEvents", {"Entries": [entry]})
        assert reply["FailedEntryCount"] == 0, reply

    async def versions(self, schema: str, count: int) -> list[str]:
        with trio.fail_after(10):
            while True:
                try:
                    rows = await self.schemas.handle(
                        "ListSchemaVersions",
                        {"RegistryName": "discovered-schemas", "SchemaName": schema},
                    )
                    got = [r["SchemaVersion"] for r in rows["SchemaVersions"]]
                except Exception:  # noqa: BLE001 - not there yet
                    got = []
                if len(got) >= count:
                    return got
                await trio.sleep(0.05)

    async def logged_by_put(self, bus: str, source: str) -> int:
        """Commands logged by one PutEvents of an already discovered shape."""
        before = self.logged
        await self.put(bus, source, {"n": 1})
        return self.logged - before


async def running(data_dir: Path, body: Any) -> None:
    node = Node(Config(data_dir=str(data_dir)))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(node.run)
        app = InProcess(Broker(node))
        try:
            await nursery.start(app.events.run)
            await nursery.start(app.schemas.run)
            await body(app)
        finally:
            node.stop()
            with trio.fail_after(10):
                await node.wait_stopped()
            nursery.cancel_scope.cancel()


async def test_discovery_feed_is_transient_and_logs_nothing(tmp_path: Path) -> None:
    buses = ("plain", "targets")

    async def first(app: InProcess) -> None:
        for bus in buses:
            await app.events.handle("CreateEventBus", {"Name": bus})
        await app.broker.declare_queue("target", durable=True)
        await app.events.handle(
            "PutRule",
            {"Name": "r", "EventBusName": "targets", "EventPattern": json.dumps({"source": ["a"]})},
        )
        await app.events.handle(
            "PutTargets",
            {
                "Rule": "r",
                "EventBusName": "targets",
                "Targets": [{"Id": "q", "Arn": TARGET_ARN + "target"}],
            },
        )
        without = [await app.logged_by_put(bus, "a") for bus in buses]
        assert without == [0, 1]
        for bus in buses:
            did = SchemasAdapter.discoverer_id(bus)
            await app.schemas.handle(
                "CreateDiscoverer",
                {"SourceArn": f"arn:aws:events:us-east-1:000000000000:event-bus/{bus}"},
            )
            info = app.broker.queue_info(DISCOVERY_QUEUE_PREFIX + did)
            assert info is not None and not info["durable"] and not info["exclusive"]
            assert info["arguments"]["x-overflow"] == "drop-head"
            await app.put(bus, "a", {"n": 0})
        await app.versions("a@Thing", 1)
        # with a running discoverer: exactly the same logging as without one
        for _ in range(3):
            assert [await app.logged_by_put(bus, "a") for bus in buses] == without
        assert app.broker.queue_info("target")["messages_ready"] == 1 + 1 + 3  # type: ignore[index]

    async def after_restart(app: InProcess) -> None:
        # the discoverer is kept, its feed declared and bound again (transient, as before)
        for bus in buses:
            queue = DISCOVERY_QUEUE_PREFIX + SchemasAdapter.discoverer_id(bus)
            info = app.broker.queue_info(queue)
            assert info is not None and not info["durable"]
            assert any(b["destination"] == queue for b in app.broker.bindings_from("events:" + bus))
        assert await app.versions("a@Thing", 1) == ["1"]
        await app.put("plain", "a", {"n": 2, "extra": "x"})
        assert await app.versions("a@Thing", 2) == ["1", "2"]

    await running(tmp_path, first)
    await running(tmp_path, after_restart)


async def test_durable_feed_of_an_earlier_release_is_replaced(tmp_path: Path) -> None:
    queue = DISCOVERY_QUEUE_PREFIX + SchemasAdapter.discoverer_id("old")

    async def first(app: InProcess) -> None:
        await app.events.handle("CreateEventBus", {"Name": "old"})
        await app.schemas.handle(
            "CreateDiscoverer",
            {"SourceArn": "arn:aws:events:us-east-1:000000000000:event-bus/old"},
        )
        # as an earlier release left it: a durable queue in the log
        await app.broker.delete_queue(queue)
        await app.broker.declare_queue(queue, durable=True)
        await app.broker.bind("events:old", queue, "schemas/x")

    async def after_restart(app: InProcess) -> None:
        info = app.broker.queue_info(queue)
        assert info is not None and not info["durable"]
        before = app.logged
        await app.put("old", "b", {"n": 1})
        assert app.logged == before
        assert await app.versions("b@Thing", 1) == ["1"]

    await running(tmp_path, first)
    await running(tmp_path, after_restart)
