"""The SNS service on the AWS endpoint: query-protocol requests (``Action=Publish&...``), parsed
into the model's JSON shape by the HTTP layer, go to the SNS adapter
(``broker/adapters/sns.py``); its refusals become ``AwsError`` (``<ErrorResponse>`` with AWS's
codes: ``NotFound``, ``InvalidParameter``, ``ParameterValueInvalid``, ...)."""

from __future__ import annotations

from typing import Any

from broker.adapters.sns import Context, SnsAdapter
from protocols.aws.errors import service_errors
from protocols.aws.http import AwsRequest


class SnsService:
    name = "sns"
    model_name = "sns"
    json_target_prefix = ""

    def __init__(self, adapter: SnsAdapter) -> None:
        self.adapter = adapter

    async def handle(self, req: AwsRequest) -> dict[str, Any]:
        ctx = Context(host=req.host, access_key=req.access_key, region=req.region)
        with service_errors():
            return await self.adapter.handle(req.action, req.params, ctx)
