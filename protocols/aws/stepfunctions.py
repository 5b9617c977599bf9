"""The Step Functions service on the AWS endpoint (AWS JSON 1.0,
``X-Amz-Target: AWSStepFunctions.*``): requests, already decoded into the model's JSON shape by
the HTTP layer, go to the Step Functions adapter (``broker/adapters/stepfunctions.py``); its
refusals become ``AwsError``."""

from __future__ import annotations

from broker.adapters.stepfunctions import StepFunctionsAdapter
from protocols.aws.service import AdapterService


class StepFunctionsService(AdapterService[StepFunctionsAdapter]):
    name = "stepfunctions"
    model_name = "stepfunctions"
    json_target_prefix = "AWSStepFunctions"
