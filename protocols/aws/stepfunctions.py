"""The Step Functions service on the AWS endpoint (AWS JSON 1.0,
``X-Amz-Target: AWSStepFunctions.*``): requests, already decoded into the model's JSON shape by
the HTTP layer, go to the Step Functions adapter (``broker/adapters/stepfunctions.py``); its
refusals become ``AwsError``."""

from __future__ import annotations

from typing import Any

from broker.adapters.stepfunctions import StepFunctionsAdapter
from protocols.aws.errors import service_errors
from protocols.aws.http import AwsRequest


class StepFunctionsService:
    name = "stepfunctions"
    model_name = "stepfunctions"
    json_target_prefix = "AWSStepFunctions"

    def __init__(self, adapter: StepFunctionsAdapter) -> None:
        self.adapter = adapter

    async def handle(self, req: AwsRequest) -> dict[str, Any]:
        with service_errors():
            return await self.adapter.handle(req.action, req.params)
