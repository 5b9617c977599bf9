"""The SQS service on the AWS endpoint: requests of either wire protocol, already parsed into
the model's JSON shape by the HTTP layer, go to the SQS adapter (``broker/adapters/sqs.py``);
its refusals become ``AwsError`` in the request's wire protocol."""

from __future__ import annotations

from typing import Any

from broker.adapters.errors import ServiceError
from broker.adapters.sqs import Context, SqsAdapter
from protocols.aws.errors import AwsError
from protocols.aws.http import AwsRequest
from protocols.aws.service import AdapterService

QUERY_NO_QUEUE = "The specified queue does not exist for this wsdl version."


class SqsService(AdapterService[SqsAdapter]):
    name = "sqs"
    model_name = "sqs"
    json_target_prefix = "AmazonSQS"

    def context(self, req: AwsRequest) -> tuple[Context]:
        ctx = Context(host=req.host, path=req.path, access_key=req.access_key, region=req.region)
        return (ctx,)

    async def handle(self, req: AwsRequest) -> dict[str, Any]:
        try:
            return await self.adapter.handle(req.action, req.params, *self.context(req))
        except ServiceError as exc:
            message = exc.message
            if exc.code == "QueueDoesNotExist" and req.protocol == "query":
                message = QUERY_NO_QUEUE  # the query API words it the old way
            raise AwsError(
                exc.code, message, status=exc.status, sender_fault=exc.sender_fault
            ) from None
