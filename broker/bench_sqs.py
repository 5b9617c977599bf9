"""SQS clients of ``polymq bench``: the AWS JSON 1.0 protocol over one keep-alive HTTP/1.1
connection per client (h11 over trio). Producers send ``SendMessageBatch`` of up to ten
messages, consumers long-poll ``ReceiveMessage`` and delete with ``DeleteMessageBatch``.
Requests are unsigned, for an endpoint started with ``--aws-auth any`` (the default)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import h11
import trio

from broker.bench import READ_BYTES_MAX, BenchError, Pacer, Settings, Stats, split_url

RESPONSE_BYTES_MAX = 16 << 20
#: SQS's own limit on a batch
BATCH_MAX = 10
WAIT_TIME_S = 1
#: SQS message bodies are at most 256 KiB
SQS_BODY_BYTES_MAX = 256 << 10


class SqsConnection:
    def __init__(self, url: str) -> None:
        self.host, self.port, _ = split_url(
            url, ("http",), "an SQS endpoint is http://host:port", 4566
        )
        self.stream: trio.SocketStream | None = None
        self.conn = h11.Connection(h11.CLIENT)

    async def call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream(self.host, self.port)
        body = json.dumps(params).encode()
        conn = self.conn
        data = conn.send(
            h11.Request(
                method="POST",
                target="/",
                headers=[
                    ("host", f"{self.host}:{self.port}"),
                    ("content-type", "application/x-amz-json-1.0"),
                    ("x-amz-target", f"AmazonSQS.{action}"),
                    ("content-length", str(len(body))),
                ],
            )
        )
        data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)
        status = 0
        chunks = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                got = await self.stream.receive_some(READ_BYTES_MAX)
                if not got:
                    raise BenchError("the SQS endpoint closed the connection")
                conn.receive_data(got)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks += event.data
                if len(chunks) > RESPONSE_BYTES_MAX:
                    raise BenchError("SQS answer too large")
            elif isinstance(event, h11.EndOfMessage):
                break
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            await self.aclose()
        else:
            conn.start_next_cycle()
        reply: dict[str, Any] = json.loads(chunks or b"{}")
        if status != 200:
            raise BenchError(f"{action}: HTTP {status} {reply.get('message', reply)}")
        return reply

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
        self.stream = None
        self.conn = h11.Connection(h11.CLIENT)


class SqsDriver:
    def __init__(self, settings: Settings, stats: Stats) -> None:
        self.settings = settings
        self.stats = stats
        self.name = settings.queue or f"polymq-bench-{secrets.token_hex(4)}"
        self.queue_url = ""

    async def setup(self) -> None:
        if self.settings.size > SQS_BODY_BYTES_MAX:
            raise BenchError(f"SQS messages are at most {SQS_BODY_BYTES_MAX} bytes")
        conn = SqsConnection(self.settings.url)
        try:
            reply = await conn.call("CreateQueue", {"QueueName": self.name})
            self.queue_url = reply["QueueUrl"]
        finally:
            await conn.aclose()

    async def teardown(self) -> None:
        if not self.queue_url or self.settings.queue:
            return
        conn = SqsConnection(self.settings.url)
        try:
            await conn.call("DeleteQueue", {"QueueUrl": self.queue_url})
        finally:
            await conn.aclose()

    def _body(self, producer: int, seq: int) -> str:
        head = f"{time.monotonic_ns()}:{producer}:{seq}:"
        return head + "x" * max(0, self.settings.size - len(head))

    async def producer(self, index: int, stop: trio.Event) -> None:
        s, stats = self.settings, self.stats
        conn = SqsConnection(s.url)
        pacer = Pacer(s.rate_per_producer)
        batch = 1 if s.rate else BATCH_MAX
        seq = 0
        try:
            while not stop.is_set():
                entries = []
                for i in range(batch):
                    entries.append({"Id": str(i), "MessageBody": self._body(index, seq)})
                    seq += 1
                stats.sent += batch
                reply = await conn.call(
                    "SendMessageBatch", {"QueueUrl": self.queue_url, "Entries": entries}
                )
                failed = len(reply.get("Failed") or [])
                stats.confirmed += len(reply.get("Successful") or [])
                stats.nacked += failed
                await pacer.wait()
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose()

    async def consumer(self, index: int, ready: Callable[[], None], done: trio.Event) -> None:
        stats = self.stats
        conn = SqsConnection(self.settings.url)
        ready()
        try:
            while True:
                reply = await conn.call(
                    "ReceiveMessage",
                    {
                        "QueueUrl": self.queue_url,
                        "MaxNumberOfMessages": BATCH_MAX,
                        "WaitTimeSeconds": WAIT_TIME_S,
                    },
                )
                messages = reply.get("Messages") or []
                if not messages:
                    continue
                for m in messages:
                    stats.received_text(m.get("Body", ""))
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ]
                await conn.call(
                    "DeleteMessageBatch", {"QueueUrl": self.queue_url, "Entries": entries}
                )
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose()
