"""The EventBridge schema registry on the AWS endpoint (REST-JSON, botocore model ``schemas``
2019-12-02): requests, already decoded into the operation's input shape by the HTTP layer, go
to the schemas adapter (``broker/adapters/schemas.py``); its refusals become ``AwsError``."""

from __future__ import annotations

from broker.adapters.schemas import SchemasAdapter
from protocols.aws.service import AdapterService


class SchemasService(AdapterService[SchemasAdapter]):
    name = "schemas"
    model_name = "schemas"
    protocol = "rest-json"
