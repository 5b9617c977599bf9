"""The EventBridge service on the AWS endpoint (AWS JSON 1.1, ``X-Amz-Target: AWSEvents.*``):
requests, already decoded into the model's JSON shape by the HTTP layer, go to the EventBridge
adapter (``broker/adapters/events.py``); its refusals become ``AwsError``."""

from __future__ import annotations

from typing import Any

from broker.adapters.events import EventsAdapter
from protocols.aws.errors import service_errors
from protocols.aws.http import AwsRequest


class EventsService:
    name = "events"
    model_name = "events"
    json_target_prefix = "AWSEvents"

    def __init__(self, adapter: EventsAdapter) -> None:
        self.adapter = adapter

    async def handle(self, req: AwsRequest) -> dict[str, Any]:
        with service_errors():
            return await self.adapter.handle(req.action, req.params)
