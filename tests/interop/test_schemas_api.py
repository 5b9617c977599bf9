"""The schema registry control plane through boto3's ``schemas`` client: registries, schemas
and versions, export, GetDiscoveredSchema, discoverers, code bindings, resource policies, tags,
the built-in registries, and AWS-shaped errors."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from tests.interop import schemas_helpers
from tests.interop.schemas_helpers import ACCOUNT, REGION, expect_error, name, openapi

schemas_broker, schemas, events = (
    schemas_helpers.schemas_broker,
    schemas_helpers.schemas,
    schemas_helpers.events,
)

ARN = f"arn:aws:schemas:{REGION}:{ACCOUNT}"


def strip(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k != "ResponseMetadata"}


def test_builtin_registries(schemas: Any) -> None:
    names = [r["RegistryName"] for r in schemas.list_registries()["Registries"]]
    assert "aws.events" in names and "discovered-schemas" in names
    assert [r["RegistryName"] for r in schemas.list_registries(Scope="AWS")["Registries"]] == [
        "aws.events"
    ]
    assert "aws.events" not in [
        r["RegistryName"] for r in schemas.list_registries(Scope="LOCAL")["Registries"]
    ]
    listed = schemas.list_schemas(RegistryName="aws.events")["Schemas"]
    got = {s["SchemaName"] for s in listed}
    assert {"aws.events@ScheduledEvent", "aws.ec2@EC2InstanceStateChangeNotification"} <= got
    doc = json.loads(
        schemas.describe_schema(
            RegistryName="aws.events", SchemaName="aws.ec2@EC2InstanceStateChangeNotification"
        )["Content"]
    )
    env = doc["components"]["schemas"]["AWSEvent"]
    assert env["x-amazon-events-source"] == "aws.ec2"
    assert env["x-amazon-events-detail-type"] == "EC2 Instance State-change Notification"
    assert env["properties"]["detail"] == {
        "$ref": "#/components/schemas/EC2InstanceStateChangeNotification"
    }
    expect_error(
        schemas.create_schema,
        "ForbiddenException",
        RegistryName="aws.events",
        SchemaName="mine",
        Type="OpenApi3",
        Content=openapi(),
    )
    expect_error(schemas.delete_registry, "ForbiddenException", RegistryName="aws.events")
    expect_error(schemas.create_registry, "ConflictException", RegistryName="aws.events")


def test_registry_lifecycle(schemas: Any) -> None:
    reg = name("reg")
    created = strip(schemas.create_registry(RegistryName=reg, Description="d", Tags={"k": "v"}))
    assert created == {
        "Description": "d",
        "RegistryArn": f"{ARN}:registry/{reg}",
        "RegistryName": reg,
        "Tags": {"k": "v"},
    }
    assert strip(schemas.describe_registry(RegistryName=reg)) == created
    updated = schemas.update_registry(RegistryName=reg, Description="e")
    assert updated["Description"] == "e"
    listed = schemas.list_registries(RegistryNamePrefix=reg)["Registries"]
    assert [r["RegistryName"] for r in listed] == [reg]
    expect_error(schemas.create_registry, "ConflictException", RegistryName=reg)
    schemas.delete_registry(RegistryName=reg)
    expect_error(
        schemas.describe_registry,
        "NotFoundException",
        f"Registry {reg} does not exist.",
        RegistryName=reg,
    )
    expect_error(schemas.delete_registry, "NotFoundException", RegistryName=reg)
    expect_error(schemas.update_registry, "NotFoundException", RegistryName=reg)
    expect_error(schemas.create_registry, "BadRequestException", RegistryName="bad/name")


def test_list_registries_pages(schemas: Any) -> None:
    prefix = name("page")
    regs = [f"{prefix}-{i}" for i in range(5)]
    for reg in regs:
        schemas.create_registry(RegistryName=reg)
    first = schemas.list_registries(RegistryNamePrefix=prefix, Limit=2)
    second = schemas.list_registries(
        RegistryNamePrefix=prefix, Limit=2, NextToken=first["NextToken"]
    )
    third = schemas.list_registries(
        RegistryNamePrefix=prefix, Limit=2, NextToken=second["NextToken"]
    )
    got = [r["RegistryName"] for p in (first, second, third) for r in p["Registries"]]
    assert got == regs
    assert "NextToken" not in third


def test_schema_versions(schemas: Any) -> None:
    reg = name("reg")
    schemas.create_registry(RegistryName=reg)
    v1 = openapi("Order")
    created = schemas.create_schema(
        RegistryName=reg, SchemaName="Order", Type="OpenApi3", Content=v1, Description="o"
    )
    assert created["SchemaVersion"] == "1"
    assert created["SchemaArn"] == f"{ARN}:schema/{reg}/Order"
    assert created["Type"] == "OpenApi3" and created["Description"] == "o"
    expect_error(
        schemas.create_schema,
        "ConflictException",
        RegistryName=reg,
        SchemaName="Order",
        Type="OpenApi3",
        Content=v1,
    )
    # same content: no new version; new content: version 2; description only: no new version
    assert (
        schemas.update_schema(RegistryName=reg, SchemaName="Order", Content=v1)["SchemaVersion"]
        == "1"
    )
    v2 = openapi("Order", {"id": {"type": "string"}, "n": {"type": "integer"}})
    assert (
        schemas.update_schema(RegistryName=reg, SchemaName="Order", Content=v2)["SchemaVersion"]
        == "2"
    )
    upd = schemas.update_schema(RegistryName=reg, SchemaName="Order", Description="new")
    assert upd["SchemaVersion"] == "2" and upd["Description"] == "new"
    assert schemas.describe_schema(RegistryName=reg, SchemaName="Order")["Content"] == v2
    old = schemas.describe_schema(RegistryName=reg, SchemaName="Order", SchemaVersion="1")
    assert old["Content"] == v1 and old["SchemaVersion"] == "1"
    rows = schemas.list_schema_versions(RegistryName=reg, SchemaName="Order")["SchemaVersions"]
    assert [(r["SchemaVersion"], r["Type"]) for r in rows] == [("1", "OpenApi3"), ("2", "OpenApi3")]
    listed = schemas.list_schemas(RegistryName=reg)["Schemas"]
    assert [(s["SchemaName"], s["VersionCount"]) for s in listed] == [("Order", 2)]
    found = schemas.search_schemas(RegistryName=reg, Keywords="ord")["Schemas"]
    assert [s["SchemaName"] for s in found] == ["Order"]
    assert [v["SchemaVersion"] for v in found[0]["SchemaVersions"]] == ["2", "1"]
    assert schemas.search_schemas(RegistryName=reg, Keywords="zzz")["Schemas"] == []
    assert [
        s["SchemaName"]
        for s in schemas.list_schemas(RegistryName=reg, SchemaNamePrefix="Or")["Schemas"]
    ] == ["Order"]
    schemas.delete_schema_version(RegistryName=reg, SchemaName="Order", SchemaVersion="1")
    expect_error(
        schemas.describe_schema,
        "NotFoundException",
        RegistryName=reg,
        SchemaName="Order",
        SchemaVersion="1",
    )
    expect_error(
        schemas.delete_schema_version,
        "NotFoundException",
        RegistryName=reg,
        SchemaName="Order",
        SchemaVersion="9",
    )
    schemas.delete_schema(RegistryName=reg, SchemaName="Order")
    expect_error(schemas.describe_schema, "NotFoundException", RegistryName=reg, SchemaName="Order")
    expect_error(schemas.delete_schema, "NotFoundException", RegistryName=reg, SchemaName="Order")
    expect_error(schemas.list_schemas, "NotFoundException", RegistryName=name("none"))


def test_schema_content_validation(schemas: Any) -> None:
    reg = name("reg")
    schemas.create_registry(RegistryName=reg)

    def refused(kind: str, content: str, words: str) -> None:
        err = expect_error(
            schemas.create_schema,
            "BadRequestException",
            RegistryName=reg,
            SchemaName="S",
            Type=kind,
            Content=content,
        )
        assert words in err.response["Error"]["Message"], err.response["Error"]

    refused("OpenApi3", "{not json", "not valid JSON")
    refused("OpenApi3", "[1]", "must be a JSON object")
    refused("OpenApi3", json.dumps({"openapi": "2.0", "components": {}}), "'openapi'")
    refused("OpenApi3", json.dumps({"openapi": "3.0.0"}), "components.schemas")
    refused(
        "OpenApi3",
        json.dumps({"openapi": "3.0.0", "components": {"schemas": {"A": {"type": 5}}}}),
        "schema 'A'",
    )
    refused(
        "OpenApi3",
        json.dumps(
            {
                "openapi": "3.0.0",
                "components": {"schemas": {"A": {"$ref": "#/components/schemas/B"}}},
            }
        ),
        "unresolvable reference",
    )
    refused("JSONSchemaDraft4", json.dumps({"type": "objectx"}), "JSON Schema draft 4")
    refused("JSONSchemaDraft4", json.dumps({"required": []}), "JSON Schema draft 4")
    refused("Avro", json.dumps({}), "Type")
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
    }
    got = schemas.create_schema(
        RegistryName=reg, SchemaName="D4", Type="JSONSchemaDraft4", Content=json.dumps(draft4)
    )
    assert got["Type"] == "JSONSchemaDraft4"
    exported = schemas.export_schema(RegistryName=reg, SchemaName="D4", Type="JSONSchemaDraft4")
    assert json.loads(exported["Content"]) == draft4


def test_export_openapi_as_draft4(schemas: Any) -> None:
    reg = name("reg")
    schemas.create_registry(RegistryName=reg)
    event = {
        "version": "0",
        "id": "1",
        "detail-type": "Thing Made",
        "source": "my.things",
        "account": ACCOUNT,
        "time": "2024-05-01T10:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": {"thing": {"id": "t", "size": 2}},
    }
    discovered = schemas.get_discovered_schema(Events=[json.dumps(event)], Type="OpenApi3")
    schemas.create_schema(
        RegistryName=reg, SchemaName="T", Type="OpenApi3", Content=discovered["Content"]
    )
    out = schemas.export_schema(RegistryName=reg, SchemaName="T", Type="JSONSchemaDraft4")
    assert out["Type"] == "JSONSchemaDraft4" and out["SchemaVersion"] == "1"
    doc = json.loads(out["Content"])
    assert doc["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert doc["properties"]["detail"] == {"$ref": "#/definitions/ThingMade"}
    assert doc["definitions"]["ThingMade"]["properties"]["thing"] == {"$ref": "#/definitions/Thing"}
    import jsonschema

    jsonschema.Draft4Validator(doc).validate(event)
    expect_error(
        schemas.export_schema,
        "BadRequestException",
        RegistryName=reg,
        SchemaName="T",
        Type="OpenApi3",
    )


def test_get_discovered_schema(schemas: Any) -> None:
    events = [
        {
            "source": "shop",
            "detail-type": "Order Placed",
            "detail": {"id": "a", "total": 3, "at": "2024-01-01T00:00:00Z"},
        },
        {"source": "shop", "detail-type": "Order Placed", "detail": {"id": "b", "total": 2.5}},
    ]
    out = schemas.get_discovered_schema(Events=[json.dumps(e) for e in events], Type="OpenApi3")
    doc = json.loads(out["Content"])
    assert doc["openapi"] == "3.0.0" and doc["paths"] == {}
    detail = doc["components"]["schemas"]["OrderPlaced"]
    assert detail["required"] == ["id", "total"]
    assert detail["properties"]["total"] == {"type": "number"}
    assert detail["properties"]["at"] == {"type": "string", "format": "date-time"}
    d4 = json.loads(
        schemas.get_discovered_schema(Events=[json.dumps(events[0])], Type="JSONSchemaDraft4")[
            "Content"
        ]
    )
    assert d4["$schema"].startswith("http://json-schema.org/draft-04")
    expect_error(
        schemas.get_discovered_schema, "BadRequestException", Events=["{x"], Type="OpenApi3"
    )


def test_discoverer_lifecycle(schemas: Any, events: Any) -> None:
    bus = name("bus")
    bus_arn = events.create_event_bus(Name=bus)["EventBusArn"]
    created = strip(schemas.create_discoverer(SourceArn=bus_arn, Description="d", Tags={"t": "1"}))
    did = created["DiscovererId"]
    assert did == f"events-event-bus-{bus}"
    assert created == {
        "Description": "d",
        "DiscovererArn": f"{ARN}:discoverer/{did}",
        "DiscovererId": did,
        "SourceArn": bus_arn,
        "State": "STARTED",
        "CrossAccount": True,
        "Tags": {"t": "1"},
    }
    assert strip(schemas.describe_discoverer(DiscovererId=did)) == created
    expect_error(schemas.create_discoverer, "ConflictException", SourceArn=bus_arn)
    upd = schemas.update_discoverer(DiscovererId=did, Description="e", CrossAccount=False)
    assert upd["Description"] == "e" and upd["CrossAccount"] is False
    assert strip(schemas.stop_discoverer(DiscovererId=did)) == {
        "DiscovererId": did,
        "State": "STOPPED",
    }
    assert schemas.describe_discoverer(DiscovererId=did)["State"] == "STOPPED"
    assert schemas.start_discoverer(DiscovererId=did)["State"] == "STARTED"
    listed = schemas.list_discoverers(DiscovererIdPrefix=did)["Discoverers"]
    assert [d["DiscovererId"] for d in listed] == [did]
    assert [
        d["DiscovererId"] for d in schemas.list_discoverers(SourceArnPrefix=bus_arn)["Discoverers"]
    ] == [did]
    schemas.delete_discoverer(DiscovererId=did)
    for call in (
        schemas.describe_discoverer,
        schemas.delete_discoverer,
        schemas.start_discoverer,
        schemas.stop_discoverer,
        schemas.update_discoverer,
    ):
        expect_error(call, "NotFoundException", DiscovererId=did)
    expect_error(
        schemas.create_discoverer, "BadRequestException", SourceArn="arn:aws:sqs:x:y:z" * 2
    )
    expect_error(
        schemas.create_discoverer,
        "BadRequestException",
        SourceArn=f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name('missing')}",
    )


def test_code_bindings(schemas: Any) -> None:
    reg = name("reg")
    schemas.create_registry(RegistryName=reg)
    schemas.create_schema(RegistryName=reg, SchemaName="S", Type="OpenApi3", Content=openapi("S"))
    expect_error(
        schemas.describe_code_binding,
        "NotFoundException",
        RegistryName=reg,
        SchemaName="S",
        Language="Python36",
    )
    expect_error(
        schemas.get_code_binding_source,
        "NotFoundException",
        RegistryName=reg,
        SchemaName="S",
        Language="Python36",
    )
    for language in ("Python36", "TypeScript3"):
        put = schemas.put_code_binding(RegistryName=reg, SchemaName="S", Language=language)
        assert put["Status"] == "CREATE_IN_PROGRESS" and put["SchemaVersion"] == "1"
        assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
        got = schemas.describe_code_binding(RegistryName=reg, SchemaName="S", Language=language)
        assert got["Status"] == "CREATE_COMPLETE"
        again = schemas.put_code_binding(RegistryName=reg, SchemaName="S", Language=language)
        assert again["Status"] == "CREATE_COMPLETE"
        body = schemas.get_code_binding_source(RegistryName=reg, SchemaName="S", Language=language)[
            "Body"
        ].read()
        names = zipfile.ZipFile(io.BytesIO(body)).namelist()
        if language == "Python36":
            assert f"schema/{reg.replace('-', '_')}/s/s.py" in names
            assert f"schema/{reg.replace('-', '_')}/s/marshaller.py" in names
        else:
            assert f"schema/{reg.replace('-', '_')}/s/S.ts" in names
            assert f"schema/{reg.replace('-', '_')}/s/Marshaller.ts" in names
    expect_error(
        schemas.put_code_binding,
        "BadRequestException",
        RegistryName=reg,
        SchemaName="S",
        Language="Cobol",
    )
    expect_error(
        schemas.put_code_binding,
        "BadRequestException",
        RegistryName=reg,
        SchemaName="S",
        Language="Java8",
    )
    expect_error(
        schemas.put_code_binding,
        "NotFoundException",
        RegistryName=reg,
        SchemaName="S",
        Language="Python36",
        SchemaVersion="7",
    )


def test_resource_policy(schemas: Any) -> None:
    reg = name("reg")
    schemas.create_registry(RegistryName=reg)
    expect_error(schemas.get_resource_policy, "NotFoundException", RegistryName=reg)
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": "*", "Action": "schemas:*", "Resource": "*"}
            ],
        }
    )
    put = schemas.put_resource_policy(RegistryName=reg, Policy=policy)
    got = schemas.get_resource_policy(RegistryName=reg)
    assert json.loads(got["Policy"]) == json.loads(policy)
    assert got["RevisionId"] == put["RevisionId"]
    expect_error(
        schemas.put_resource_policy,
        "PreconditionFailedException",
        RegistryName=reg,
        Policy=policy,
        RevisionId="stale",
    )
    second = schemas.put_resource_policy(
        RegistryName=reg, Policy=policy, RevisionId=put["RevisionId"]
    )
    assert second["RevisionId"] != put["RevisionId"]
    expect_error(
        schemas.put_resource_policy, "BadRequestException", RegistryName=reg, Policy="{nope"
    )
    schemas.delete_resource_policy(RegistryName=reg)
    expect_error(schemas.get_resource_policy, "NotFoundException", RegistryName=reg)
    expect_error(schemas.delete_resource_policy, "NotFoundException", RegistryName=reg)
    expect_error(schemas.get_resource_policy, "NotFoundException", RegistryName=name("missing"))


def test_tags(schemas: Any, events: Any) -> None:
    reg = name("reg")
    reg_arn = schemas.create_registry(RegistryName=reg)["RegistryArn"]
    schema_arn = schemas.create_schema(
        RegistryName=reg, SchemaName="S", Type="OpenApi3", Content=openapi(), Tags={"a": "1"}
    )["SchemaArn"]
    bus_arn = events.create_event_bus(Name=name("bus"))["EventBusArn"]
    disc_arn = schemas.create_discoverer(SourceArn=bus_arn)["DiscovererArn"]
    for arn in (reg_arn, schema_arn, disc_arn):
        schemas.tag_resource(ResourceArn=arn, Tags={"x": "y", "z": "w"})
        tags = schemas.list_tags_for_resource(ResourceArn=arn)["Tags"]
        assert tags["x"] == "y" and tags["z"] == "w"
        schemas.untag_resource(ResourceArn=arn, TagKeys=["z"])
        assert "z" not in schemas.list_tags_for_resource(ResourceArn=arn)["Tags"]
    assert schemas.list_tags_for_resource(ResourceArn=schema_arn)["Tags"] == {"a": "1", "x": "y"}
    assert schemas.describe_schema(RegistryName=reg, SchemaName="S")["Tags"] == {
        "a": "1",
        "x": "y",
    }
    missing = f"{ARN}:registry/{name('missing')}"
    expect_error(schemas.list_tags_for_resource, "NotFoundException", ResourceArn=missing)
    expect_error(schemas.tag_resource, "NotFoundException", ResourceArn=missing, Tags={"a": "b"})
    expect_error(schemas.untag_resource, "NotFoundException", ResourceArn=missing, TagKeys=["a"])
    schemas.delete_discoverer(DiscovererId=disc_arn.rsplit("/", 1)[1])


def test_error_shape(schemas: Any) -> None:
    err = expect_error(
        schemas.describe_registry,
        "NotFoundException",
        RegistryName="nothing-here",
    )
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert isinstance(err, schemas.exceptions.NotFoundException)
    err = expect_error(
        schemas.create_registry, "ConflictException", RegistryName="discovered-schemas"
    )
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    err = expect_error(
        schemas.create_schema,
        "BadRequestException",
        RegistryName="discovered-schemas",
        SchemaName="bad name!",
        Type="OpenApi3",
        Content=openapi(),
    )
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
