"""Amazon AppFlow on the AWS endpoint (REST-JSON, botocore model ``appflow`` 2020-08-23):
requests, already decoded into the operation's input shape by the HTTP layer, go to the AppFlow
adapter (``broker/adapters/appflow.py``); its refusals become ``AwsError``."""

from __future__ import annotations

import os
from typing import Any

from broker.adapters.appflow import AppflowAdapter
from broker.api import Broker
from broker.config import Config
from protocols.aws.service import AdapterService


class AppflowService(AdapterService[AppflowAdapter]):
    name = "appflow"
    model_name = "appflow"
    protocol = "rest-json"

    @classmethod
    def build(
        cls, cfg: Config, broker: Broker, sqs: Any = None, sns: Any = None, events: Any = None
    ) -> AppflowService:
        """The service and its adapter for a node's configuration: the AppFlow root is
        ``appflow_root_dir``, by default ``<data_dir>/appflow``. The SQS, SNS and EventBridge
        adapters are the connectors' way to those services (None leaves them out)."""
        root = cfg.appflow_root_dir or os.path.join(cfg.data_dir, "appflow")
        os.makedirs(root, exist_ok=True)
        adapter = AppflowAdapter(
            broker,
            sqs=sqs,
            sns=sns,
            events=events,
            root_dir=root,
            account_id=cfg.aws_account_id,
            region=cfg.aws_region,
        )
        return cls(adapter)
