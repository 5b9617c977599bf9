"""The SNS service on the AWS endpoint: query-protocol requests (``Action=Publish&...``), parsed
into the model's JSON shape by the HTTP layer, go to the SNS adapter
(``broker/adapters/sns.py``); its refusals become ``AwsError`` (``<ErrorResponse>`` with AWS's
codes: ``NotFound``, ``InvalidParameter``, ``ParameterValueInvalid``, ...)."""

from __future__ import annotations

from broker.adapters.sns import Context, SnsAdapter
from protocols.aws.http import AwsRequest
from protocols.aws.service import AdapterService


class SnsService(AdapterService[SnsAdapter]):
    name = "sns"
    model_name = "sns"

    def context(self, req: AwsRequest) -> tuple[Context]:
        return (Context(host=req.host, access_key=req.access_key, region=req.region),)
