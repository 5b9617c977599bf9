"""The EventBridge service on the AWS endpoint (AWS JSON 1.1, ``X-Amz-Target: AWSEvents.*``):
requests, already decoded into the model's JSON shape by the HTTP layer, go to the EventBridge
adapter (``broker/adapters/events.py``); its refusals become ``AwsError``."""

from __future__ import annotations

from broker.adapters.events import EventsAdapter
from protocols.aws.service import AdapterService


class EventsService(AdapterService[EventsAdapter]):
    name = "events"
    model_name = "events"
    json_target_prefix = "AWSEvents"
