"""Cluster mode for the AWS endpoint: the services run on the leader, other nodes relay.

The AWS adapters keep indexes and background work (schedules, delivery workers, discovery,
executions) in memory, built from the core's state when they start. In a cluster they start on
the leader only (``Broker.run_while_leading``), and every node's endpoint hands the requests it
reads to the leader over the cluster link (``Broker.call_leader``), relaying the reply. A new
leader starts its services from the replicated state, so clients carry on through any node.
"""

from __future__ import annotations

import trio

from broker.api import Broker, LeaderUnavailable
from protocols.aws.http import RouteUnavailable

#: the name requests are served under on the cluster link
SERVICE = "aws-http"
#: how long a request waits for a leader whose services run
WAIT_S = 10.0
#: how long a relayed request may take on the leader (long polls last up to 20 s for SQS,
#: 60 s for activity tasks)
CALL_TIMEOUT_S = 75.0
#: how often a waiting request looks again for a leader
RETRY_S = 0.05


class LeaderRoute:
    """``protocols.aws.http.Route`` over the cluster."""

    wait_s = WAIT_S

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.running = False

    def local(self) -> bool:
        return self.running and self.broker.leading()

    async def forward(self, payload: bytes) -> bytes:
        if self.broker.leading():
            # leading, services still starting (or stopping): wait for them
            raise RouteUnavailable("the services are starting", retry=True)
        try:
            return await self.broker.call_leader(SERVICE, payload, timeout_s=CALL_TIMEOUT_S)
        except LeaderUnavailable as exc:
            raise RouteUnavailable(str(exc), retry=not exc.served) from None

    async def changed(self) -> None:
        await trio.sleep(RETRY_S)
