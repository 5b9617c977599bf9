"""boto3 clients, fixtures and checks for the schema registry interop suites
(``test_schemas_*.py``).

The endpoint under test is a polymq process serving the AWS APIs (``open_sqs_broker``: the
schema registry shares the SQS endpoint), or ``POLYMQ_TEST_SQS_URL``. A test module takes the
fixtures by assignment::

    schemas_broker, schemas, events = (
        schemas_helpers.schemas_broker, schemas_helpers.schemas, schemas_helpers.events
    )

Clients make exactly one attempt per call; every wait (``wait_versions``) is bounded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.interop.events_helpers import ACCOUNT, REGION, client, expect_error, name
from tests.polymq_process import SqsBroker, open_sqs_broker

__all__ = [
    "ACCOUNT",
    "REGION",
    "client",
    "expect_error",
    "name",
    "openapi",
    "put",
    "wait_versions",
]

WAIT_S = 15.0


@pytest.fixture(scope="module")
def schemas_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqsBroker]:
    broker = open_sqs_broker(tmp_path_factory.mktemp("polymq-schemas"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def schemas(schemas_broker: SqsBroker) -> Any:
    return client("schemas", schemas_broker.http_url)


@pytest.fixture(scope="module")
def events(schemas_broker: SqsBroker) -> Any:
    return client("events", schemas_broker.http_url)


def openapi(title: str = "Event", props: dict[str, Any] | None = None) -> str:
    """A small valid OpenApi3 schema document."""
    return json.dumps(
        {
            "openapi": "3.0.0",
            "info": {"version": "1.0.0", "title": title},
            "paths": {},
            "components": {
                "schemas": {
                    title: {
                        "type": "object",
                        "properties": props or {"name": {"type": "string"}},
                    }
                }
            },
        }
    )


def put(events: Any, bus: str, *entries: tuple[str, str, dict[str, Any]]) -> None:
    """PutEvents of ``(source, detail-type, detail)`` entries on ``bus``; none may fail."""
    for i in range(0, len(entries), 10):
        reply = events.put_events(
            Entries=[
                {
                    "Source": source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                    "EventBusName": bus,
                }
                for source, detail_type, detail in entries[i : i + 10]
            ]
        )
        assert reply["FailedEntryCount"] == 0, reply


def wait_versions(
    schemas: Any, schema: str, count: int, timeout: float = WAIT_S, registry: str = ""
) -> list[str]:
    """The versions of a discovered schema once it has ``count`` of them (within ``timeout``)."""
    registry = registry or "discovered-schemas"
    deadline = time.monotonic() + timeout
    versions: list[str] = []
    while time.monotonic() < deadline:
        try:
            rows = schemas.list_schema_versions(RegistryName=registry, SchemaName=schema)
            versions = [r["SchemaVersion"] for r in rows["SchemaVersions"]]
        except schemas.exceptions.NotFoundException:
            versions = []
        if len(versions) >= count:
            return versions
        time.sleep(0.1)
    raise AssertionError(f"{schema}: {len(versions)} of {count} versions within {timeout} s")


def content(schemas: Any, schema: str, version: str | None = None) -> dict[str, Any]:
    kw = {"SchemaVersion": version} if version else {}
    got = schemas.describe_schema(RegistryName="discovered-schemas", SchemaName=schema, **kw)
    doc: dict[str, Any] = json.loads(got["Content"])
    return doc
