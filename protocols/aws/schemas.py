"""The EventBridge schema registry on the AWS endpoint (REST-JSON, botocore model ``schemas``
2019-12-02): requests, already decoded into the operation's input shape by the HTTP layer, go
to the schemas adapter (``broker/adapters/schemas.py``); its refusals become ``AwsError``."""

from __future__ import annotations

from typing import Any

from broker.adapters.schemas import SchemasAdapter
from protocols.aws.errors import service_errors
from protocols.aws.http import AwsRequest


class SchemasService:
    name = "schemas"
    model_name = "schemas"
    json_target_prefix = ""
    protocol = "rest-json"

    def __init__(self, adapter: SchemasAdapter) -> None:
        self.adapter = adapter

    async def handle(self, req: AwsRequest) -> dict[str, Any]:
        with service_errors():
            return await self.adapter.handle(req.action, req.params)
