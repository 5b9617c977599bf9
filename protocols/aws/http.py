"""The HTTP/1.1 endpoint every AWS-compatible API of polymq is served through (port 4566 by
default): one listener, requests routed to a service by ``X-Amz-Target`` (the JSON protocols),
by method and path (the REST-JSON protocol) or by ``Action`` (the query protocol), decoded into
the JSON-shaped params of the botocore model, handed to the service's ``handle``, and the output
dict or :class:`AwsError` encoded back in the protocol the request came in.

Wire facts this relies on:

* JSON: ``POST /``, ``X-Amz-Target: {targetPrefix}.{Operation}`` (``AmazonSQS.SendMessage``,
  ``AWSEvents.PutEvents``); an unknown target or operation is ``UnknownOperationException``.
* REST-JSON (services whose ``protocol`` is ``"rest-json"``): any request without
  ``X-Amz-Target`` whose method and path match one of the operations' URI templates
  (:mod:`protocols.aws.wire_rest`). A credential scope naming a rest-json service
  (``.../schemas/aws4_request``) restricts the match to that service and a path it does not know
  is ``UnknownOperationException`` (404); a scope naming another service, or an unsigned request
  carrying ``Action=``, is never taken by a rest-json route.
* Query: ``Action=...`` in a form-encoded ``POST`` body or in the query string of a ``GET``,
  possibly sent to a queue URL path; the service is the one named in the credential scope of
  the ``Authorization`` header (``Credential=AKID/20240101/us-east-1/sqs/aws4_request``), else
  the first registered service whose model has the operation; an unknown action is
  ``InvalidAction`` (400).
* Every reply carries ``x-amzn-RequestId`` (a uuid4 per request).
* HTTP is h11: keep-alive, pipelined requests answered in order, ``Expect: 100-continue``,
  chunked request bodies. Everything is bounded (:class:`HttpLimits`): a body over
  ``request_bytes_max`` gets 413 ``RequestEntityTooLarge`` and the connection is closed; headers
  over ``header_bytes_max`` and malformed HTTP get a 4xx and the connection is closed; past
  ``connections_max`` a new connection gets 503 and is closed; an idle connection is closed after
  ``keepalive_idle_s`` and a request that takes longer than ``request_timeout_s`` to arrive is
  dropped. A handler exception that is not :class:`AwsError` is logged and answered with 500
  ``InternalFailure``; the connection stays usable.
* HTTPS on the same port once a certificate is configured (``http_tls = "auto"``, as
  LocalStack's 4566): the first byte of a connection tells a TLS ClientHello from plain HTTP;
  ``"required"`` serves HTTPS only.
* While a resource alarm is raised the publishing calls (``PUBLISHING_ACTIONS``) are answered
  with the service's throttling error (SDKs back off and retry it); everything else is served.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Protocol

import h11
import msgpack
import trio
from botocore.model import OperationModel

from protocols._server import ConnectionLimiter, ResourceAlarms
from protocols._tls import TLS
from protocols.aws import wire_json, wire_query, wire_rest
from protocols.aws.access import AwsAccess
from protocols.aws.errors import AwsError, internal_failure
from protocols.aws.model import (
    error_http_status,
    error_namespace,
    json_content_type,
    operation,
    query_error_code,
    query_model,
    service_model,
    xml_namespace,
)
from protocols.aws.sigv4 import SigV4Verifier, authorization_credential

log = logging.getLogger("polymq.aws")

READ_BYTES_MAX = 64 << 10
DISCARD_BYTES_MAX = 8 << 20
DISCARD_S = 1.0
DEFAULT_REGION = "us-east-1"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
REST_JSON = "rest-json"


@dataclass
class AwsRequest:
    service: str
    action: str
    params: dict[str, Any]
    protocol: str
    host: str
    path: str
    headers: dict[str, str]
    request_id: str
    access_key: str | None
    region: str = DEFAULT_REGION


class AwsService(Protocol):
    """A service on the endpoint. ``model_name`` names its botocore model. Optional class
    attributes, read with defaults: ``protocol`` (``"json"``, the default, covers the JSON and
    query protocols routed by ``X-Amz-Target`` / ``Action``; ``"rest-json"`` routes by method
    and path) and ``json_target_prefix`` (the ``X-Amz-Target`` prefix, ``""`` for none).

    ``handle`` gets ``req.params`` shaped like the operation's input shape (for rest-json: URI
    labels, query-string, header and body members merged by member name, typed per the model)
    and returns a dict shaped like its output shape; refusals are :class:`AwsError`."""

    name: str
    model_name: str

    async def handle(self, req: AwsRequest) -> dict[str, Any]: ...


def service_protocol(service: AwsService) -> str:
    return str(getattr(service, "protocol", "json") or "json")


@dataclass(frozen=True)
class HttpLimits:
    request_bytes_max: int = 1 << 20
    header_bytes_max: int = 16 << 10
    connections_max: int = 256
    keepalive_idle_s: float = 75.0
    request_timeout_s: float = 60.0


class RouteUnavailable(Exception):
    """The leader could not be asked; ``retry``: a leader may come (wait for a change)."""

    def __init__(self, text: str, *, retry: bool) -> None:
        super().__init__(text)
        self.retry = retry


class Route(Protocol):
    """Cluster mode (``AwsHttpServer.route``): where a request is served."""

    #: how long a request waits for a leader that serves it
    wait_s: float

    def local(self) -> bool:
        """This node leads and its services run: serve here."""
        ...

    async def forward(self, payload: bytes) -> bytes:
        """Ask the leader (``serve_forwarded`` there); ``RouteUnavailable`` if it cannot."""
        ...

    async def changed(self) -> None:
        """Return when leadership or the services' state may have changed."""
        ...


@dataclass
class _Reply:
    status: int
    content_type: str
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False


class _Timeout(Exception):
    pass


class _Deadline:
    """When the request being read must have arrived: ``keepalive_idle_s`` while the connection
    waits for its first byte, then ``request_timeout_s`` from that byte."""

    def __init__(self, idle_s: float, request_s: float) -> None:
        self.at = trio.current_time() + idle_s
        self.request_s = request_s
        self.started = False

    def data_arrived(self) -> None:
        if not self.started:
            self.started = True
            self.at = trio.current_time() + self.request_s


#: Common (unmodelled) errors whose JSON protocol name differs from their query code, as
#: AWS's awsQueryCompatible services send them (the query code rides in x-amzn-query-error).
JSON_ERROR_NAMES = {
    "AccessDenied": "AccessDeniedException",
    "MissingParameter": "MissingRequiredParameterException",
    "InvalidParameterValue": "InvalidParameterValueException",
}


#: The calls that publish: refused with ``throttled`` while a resource alarm is raised
PUBLISHING_ACTIONS = frozenset(
    {
        ("sqs", "SendMessage"),
        ("sqs", "SendMessageBatch"),
        ("sns", "Publish"),
        ("sns", "PublishBatch"),
        ("events", "PutEvents"),
    }
)


def throttled(service: str, alarms: Any) -> AwsError:
    """The throttling error each service documents: SQS ``RequestThrottled`` (modelled on
    SendMessage*), SNS the common ``Throttling``, EventBridge ``ThrottlingException``; SDKs
    retry each of them with backoff."""
    text = (
        "Rate exceeded: publishing is paused while the broker is low on "
        + " and ".join(sorted(alarms))
        + "."
    )
    if service == "sqs":
        return AwsError("RequestThrottled", text, status=403)
    if service == "sns":
        return AwsError("Throttling", text, status=400)
    return AwsError("ThrottlingException", text, status=400)


class AwsHttpServer:
    def __init__(
        self,
        services: Sequence[AwsService],
        limits: HttpLimits = HttpLimits(),
        *,
        auth: SigV4Verifier | None = None,
    ) -> None:
        self.services = list(services)
        self.limits = limits
        self.auth = auth
        self.limiter = ConnectionLimiter("aws", limits.connections_max)
        self.requests = 0
        #: cluster mode: where requests are served (None: always here)
        self.route: Route | None = None
        #: the node's resource alarms: publishing calls are throttled while one is raised
        self.alarms: ResourceAlarms | None = None
        #: with verified signatures: access key -> user, and the user's permissions (access.py)
        self.access: AwsAccess | None = None
        self._by_target: dict[str, AwsService] = {}
        self._by_scope: dict[str, AwsService] = {}
        self._rest: list[tuple[AwsService, wire_rest.RestRouter]] = []
        self._rpc = [service for service in self.services if service_protocol(service) != REST_JSON]
        for service in self.services:
            model = service_model(service.model_name)
            if service_protocol(service) == REST_JSON:
                self._rest.append((service, wire_rest.RestRouter(model)))
            else:
                query_model(service.model_name)
                prefix = getattr(service, "json_target_prefix", "")
                if prefix:
                    self._by_target.setdefault(prefix, service)
            for name in (service.name, model.endpoint_prefix, model.signing_name):
                if name:
                    self._by_scope.setdefault(name, service)

    async def serve(
        self, listeners: list[trio.SocketListener], tls: TLS | None = None, http_tls: str = "auto"
    ) -> None:
        handler: Any = self.handle_stream
        if tls is not None:
            handler = tls.plain_or_tls(
                handler,
                "http",
                first_byte_timeout_s=self.limits.keepalive_idle_s,
                tls_only=http_tls == "required",
            )
        await trio.serve_listeners(handler, listeners)

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        limiter = self.limiter
        if limiter.open >= limiter.connections_max:
            limiter.refused += 1
            log.warning(
                "connection refused: limit reached",
                extra={"listener": "aws", "connections_max": limiter.connections_max},
            )
            body = wire_query.encode_error(
                "ServiceUnavailable", "Too many connections.", "Receiver", str(uuid.uuid4())
            )
            with trio.move_on_after(1.0):
                try:
                    await stream.send_all(
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/xml\r\n"
                        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
                    )
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            await trio.aclose_forcefully(stream)
            return
        limiter.open += 1
        limiter.accepted += 1
        try:
            await self._connection(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            log.exception("aws connection failed")
        finally:
            limiter.open -= 1
            await trio.aclose_forcefully(stream)

    # -- HTTP --------------------------------------------------------------------------------

    async def _connection(self, stream: trio.abc.Stream) -> None:
        limits = self.limits
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.header_bytes_max)
        while True:
            deadline = _Deadline(limits.keepalive_idle_s, limits.request_timeout_s)
            try:
                event = await self._next_event(stream, conn, deadline)
                if not isinstance(event, h11.Request):
                    return
                reply = await self._read_and_dispatch(stream, conn, event, deadline)
            except _Timeout:
                return
            except h11.RemoteProtocolError as exc:
                await self._bad_http(stream, conn, exc)
                return
            if reply is None:
                return
            sent = await self._send_reply(stream, conn, reply, head=event.method == b"HEAD")
            if not sent:
                return
            if reply.close or conn.our_state is h11.MUST_CLOSE:
                await self._close_gracefully(stream)
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _next_event(
        self, stream: trio.abc.Stream, conn: h11.Connection, deadline: _Deadline
    ) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                if event is not h11.PAUSED:
                    deadline.data_arrived()
                return event
            with trio.move_on_at(deadline.at):
                data = await stream.receive_some(READ_BYTES_MAX)
                if data:
                    deadline.data_arrived()
                conn.receive_data(bytes(data))
                continue
            raise _Timeout

    async def _read_and_dispatch(
        self,
        stream: trio.abc.Stream,
        conn: h11.Connection,
        request: h11.Request,
        deadline: _Deadline,
    ) -> _Reply | None:
        request_id = str(uuid.uuid4())
        self.requests += 1
        headers = _headers(request)
        json_wire = "x-amz-target" in headers
        head_bytes = len(request.target) + sum(len(k) + len(v) + 4 for k, v in request.headers)
        if head_bytes > self.limits.header_bytes_max:
            # h11 bounds only a head still incomplete in its buffer; one read may hold more.
            body = wire_query.encode_error(
                "RequestHeaderFieldsTooLarge",
                f"Request headers must be at most {self.limits.header_bytes_max} bytes.",
                "Sender",
                request_id,
            )
            return _Reply(431, wire_query.CONTENT_TYPE, body, close=True)
        length = headers.get("content-length", "")
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("latin-1")
        if length.isdigit() and int(length) > self.limits.request_bytes_max:
            return self._too_large(method, target, headers, request_id, json_wire)
        if conn.they_are_waiting_for_100_continue:
            with trio.move_on_after(self.limits.request_timeout_s) as scope:
                await stream.send_all(
                    conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
                )
            if scope.cancelled_caught:
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(stream, conn, deadline)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.limits.request_bytes_max:
                    return self._too_large(method, target, headers, request_id, json_wire)
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return None
        body = b"".join(chunks)
        if self.route is None:
            return await self.dispatch(method, target, headers, body, request_id)
        return await self._routed(method, target, headers, body, request_id)

    # -- cluster mode ------------------------------------------------------------------------

    async def _routed(
        self, method: str, target: str, headers: dict[str, str], body: bytes, request_id: str
    ) -> _Reply:
        """Cluster mode: the AWS APIs' state and background work live on the leader, so a
        request is served here only while this node leads and its services run; otherwise it
        is sent to the leader over the cluster link and its reply relayed. No leader within
        ``route.wait_s``, or a leader lost mid-request: 503 ``ServiceUnavailable`` (clients
        retry it)."""
        route = self.route
        assert route is not None
        payload = msgpack.packb([method, target, headers, body, request_id], use_bin_type=True)
        with trio.move_on_after(route.wait_s):
            while True:
                if route.local():
                    return await self.dispatch(method, target, headers, body, request_id)
                try:
                    answer = await route.forward(payload)
                except RouteUnavailable as exc:
                    if not exc.retry:
                        return self._early_error(
                            AwsError("ServiceUnavailable", str(exc), status=503),
                            method,
                            target,
                            headers,
                            request_id,
                        )
                    await route.changed()
                    continue
                status, content_type, reply_body, reply_headers, close = msgpack.unpackb(
                    answer, raw=False
                )
                return _Reply(
                    status, content_type, reply_body, [tuple(h) for h in reply_headers], close
                )
        return self._early_error(
            AwsError(
                "ServiceUnavailable",
                f"No cluster leader serves the AWS APIs within {route.wait_s} s.",
                status=503,
            ),
            method,
            target,
            headers,
            request_id,
        )

    async def serve_forwarded(self, payload: bytes) -> bytes:
        """The leader's side of ``_routed``."""
        method, target, headers, body, request_id = msgpack.unpackb(payload, raw=False)
        reply = await self.dispatch(method, target, headers, body, request_id)
        return bytes(
            msgpack.packb(
                [reply.status, reply.content_type, reply.body, reply.headers, reply.close],
                use_bin_type=True,
            )
        )

    def _too_large(
        self, method: str, target: str, headers: dict[str, str], request_id: str, json_wire: bool
    ) -> _Reply:
        err = AwsError(
            "RequestEntityTooLarge",
            f"Request body must be at most {self.limits.request_bytes_max} bytes.",
            status=413,
        )
        reply = self._early_error(err, method, target, headers, request_id)
        reply.close = True
        return reply

    def _early_error(
        self, err: AwsError, method: str, target: str, headers: dict[str, str], request_id: str
    ) -> _Reply:
        """``err`` in the protocol of a request not dispatched (yet)."""
        json_wire = "x-amz-target" in headers
        protocol = "json" if json_wire else "query"
        service = self._json_service(headers.get("x-amz-target", "")) if json_wire else None
        if not json_wire:
            path, _, query = target.partition("?")
            rest = self._rest_route(method, path, query, headers)
            if rest is not None:
                protocol, service = REST_JSON, rest[0]
        if service is None:
            service = self._scope_service(headers, "")
        return self._error(err, protocol, service, request_id)

    async def _bad_http(
        self, stream: trio.abc.Stream, conn: h11.Connection, exc: h11.RemoteProtocolError
    ) -> None:
        status = exc.error_status_hint or 400
        reply = _Reply(
            status,
            wire_query.CONTENT_TYPE,
            wire_query.encode_error("BadRequest", str(exc), "Sender", str(uuid.uuid4())),
            close=True,
        )
        try:
            await self._send_reply(stream, conn, reply, head=False)
        except h11.LocalProtocolError:
            pass
        await self._close_gracefully(stream)

    async def _send_reply(
        self, stream: trio.abc.Stream, conn: h11.Connection, reply: _Reply, *, head: bool
    ) -> bool:
        if reply.status in wire_rest.NO_BODY_STATUSES:
            # 204 and 304 have no body, hence neither Content-Length nor Content-Type.
            head = True
            headers = [("date", formatdate(usegmt=True)), ("server", "polymq"), *reply.headers]
        else:
            headers = [
                ("content-type", reply.content_type),
                ("content-length", str(len(reply.body))),
                ("date", formatdate(usegmt=True)),
                ("server", "polymq"),
                *reply.headers,
            ]
        if reply.close:
            headers.append(("connection", "close"))
        try:
            data = conn.send(h11.Response(status_code=reply.status, headers=headers)) or b""
            if not head:
                data += conn.send(h11.Data(data=reply.body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return False
        with trio.move_on_after(self.limits.request_timeout_s) as scope:
            await stream.send_all(data)
        return not scope.cancelled_caught

    async def _close_gracefully(self, stream: trio.abc.Stream) -> None:
        """Half-close, then read and drop what the peer still sends for a moment, so that the
        reply is not destroyed by a reset while the peer is still sending its body."""
        if isinstance(stream, trio.abc.HalfCloseableStream):
            try:
                await stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
        discarded = 0
        with trio.move_on_after(DISCARD_S):
            while discarded < DISCARD_BYTES_MAX:
                try:
                    data = await stream.receive_some(READ_BYTES_MAX)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                discarded += len(data)

    # -- routing -----------------------------------------------------------------------------

    def _json_service(self, target: str) -> AwsService | None:
        prefix = target.rpartition(".")[0]
        return self._by_target.get(prefix)

    def _fallback_service(self) -> AwsService | None:
        """Whose model shapes an error that names no service: the first JSON/query one."""
        return self._rpc[0] if self._rpc else None

    def _scope_service(self, headers: dict[str, str], query: str) -> AwsService | None:
        credential = authorization_credential(headers, query)
        if credential is not None and credential.service in self._by_scope:
            return self._by_scope[credential.service]
        return self._fallback_service()

    def _rest_route(
        self, method: str, path: str, query: str, headers: dict[str, str]
    ) -> tuple[AwsService, wire_rest.Match | None] | None:
        """The rest-json service (and its matching operation, None if none matches) that takes
        this request, or None if it is not a rest-json request."""
        if not self._rest or "x-amz-target" in headers:
            return None
        credential = authorization_credential(headers, query)
        scoped = self._by_scope.get(credential.service) if credential is not None else None
        if scoped is not None:
            if service_protocol(scoped) != REST_JSON:
                return None
            candidates = [(s, r) for s, r in self._rest if s is scoped]
        else:
            content_type = headers.get("content-type", "").lower()
            if content_type.startswith(FORM_CONTENT_TYPE) or "Action" in dict(
                wire_rest.query_pairs(query, strict=False)
            ):
                return None
            candidates = self._rest
        best: tuple[AwsService, wire_rest.Match] | None = None
        for service, router in candidates:
            found = router.match(method, path, query)
            if found is not None and (best is None or found.rank > best[1].rank):
                best = (service, found)
        if best is not None:
            return best
        if scoped is not None:
            return scoped, None
        return None

    async def dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes, request_id: str
    ) -> _Reply:
        """One request, already read: route, decode, call the service, encode."""
        path, _, query = target.partition("?")
        credential = authorization_credential(headers, query)
        region = credential.region if credential else DEFAULT_REGION
        access_key = credential.access_key if credential else None
        amz_target = headers.get("x-amz-target")
        rest = self._rest_route(method, path, query, headers)
        protocol = "json" if amz_target is not None else REST_JSON if rest is not None else "query"
        service: AwsService | None = None
        try:
            if rest is not None:
                service, found = rest
                if self.auth is not None:
                    access_key = self.auth.verify(method, target, headers, body)
                if found is None:
                    raise AwsError(
                        "UnknownOperationException",
                        f"No operation matches {method[:16]} {path[:128]}.",
                        status=404,
                    )
                op = found.operation
                params = wire_rest.decode_request(op, found.labels, query, headers, body)
            elif amz_target is not None:
                service = self._json_service(amz_target)
                if service is None:
                    service = self._fallback_service()
                    raise AwsError(
                        "UnknownOperationException", f"Unrecognized target: {amz_target[:128]}."
                    )
                if self.auth is not None:
                    access_key = self.auth.verify(method, target, headers, body)
                action = amz_target.rpartition(".")[2]
                op = operation(service_model(service.model_name), action)
                if op is None:
                    raise AwsError("UnknownOperationException", f"Unknown operation {action}.")
                params = wire_json.decode_request(op, body)
            else:
                form = wire_query.parse_form(query)
                content_type = headers.get("content-type", "")
                if method == "POST" and (
                    not content_type or content_type.lower().startswith(FORM_CONTENT_TYPE)
                ):
                    form.update(wire_query.parse_form(body))
                action = form.get("Action", "")
                if not action:
                    if method in ("GET", "HEAD") and not form:
                        return self._health(request_id)
                    service = self._scope_service(headers, query)
                    raise AwsError(
                        "MissingAction", "The request must contain the parameter Action."
                    )
                service, op = self._query_route(credential.service if credential else "", action)
                if self.auth is not None:
                    access_key = self.auth.verify(method, target, headers, body)
                if service is None or op is None:
                    service = service or self._scope_service(headers, query)
                    raise AwsError(
                        "InvalidAction",
                        f"The action {action[:128]} is not valid for this endpoint.",
                    )
                params = wire_query.decode_request(op, form)
        except AwsError as err:
            return self._error(err, protocol, service, request_id)
        req = AwsRequest(
            service=service.name,
            action=op.name,
            params=params,
            protocol=protocol,
            host=headers.get("host", ""),
            path=path,
            headers=headers,
            request_id=request_id,
            access_key=access_key,
            region=region,
        )
        return await self._call(service, op, req)

    def _query_route(
        self, scope_service: str, action: str
    ) -> tuple[AwsService | None, OperationModel | None]:
        scoped = self._by_scope.get(scope_service)
        if scoped is not None and service_protocol(scoped) != REST_JSON:
            return scoped, operation(query_model(scoped.model_name), action)
        for service in self._rpc:
            op = operation(query_model(service.model_name), action)
            if op is not None:
                return service, op
        return None, None

    async def _call(self, service: AwsService, op: OperationModel, req: AwsRequest) -> _Reply:
        if self.access is not None:
            refused = self.access.denied(req.service, req.action, req.params, req.access_key)
            if refused is not None:
                return self._error(refused, req.protocol, service, req.request_id)
        alarms = self.alarms
        if alarms is not None and (req.service, req.action) in PUBLISHING_ACTIONS:
            raised = alarms.raised()
            if raised:
                alarms.request_refused()
                err = throttled(req.service, raised)
                return self._error(err, req.protocol, service, req.request_id)
        try:
            output = await service.handle(req)
            if req.protocol == REST_JSON:
                reply = wire_rest.encode_response(op, output)
                return _Reply(
                    reply.status,
                    reply.content_type,
                    reply.body,
                    [("x-amzn-requestid", req.request_id), *reply.headers],
                )
            if req.protocol == "json":
                body = wire_json.encode_response(op, output)
                model = service_model(service.model_name)
                return _Reply(
                    200,
                    json_content_type(model),
                    body,
                    [("x-amzn-requestid", req.request_id)],
                )
            model = query_model(service.model_name)
            body = wire_query.encode_response(op, output, req.request_id, xml_namespace(model))
            return _Reply(
                200, wire_query.CONTENT_TYPE, body, [("x-amzn-requestid", req.request_id)]
            )
        except AwsError as err:
            return self._error(err, req.protocol, service, req.request_id)
        except Exception:
            log.exception(
                "aws handler failed",
                extra={"service": service.name, "action": req.action, "request_id": req.request_id},
            )
            return self._error(internal_failure(), req.protocol, service, req.request_id)

    def _health(self, request_id: str) -> _Reply:
        body = json.dumps(
            {"status": "ok", "services": [service.name for service in self.services]}
        ).encode()
        return _Reply(200, "application/json", body, [("x-amzn-requestid", request_id)])

    def _error(
        self, err: AwsError, protocol: str, service: AwsService | None, request_id: str
    ) -> _Reply:
        headers = [("x-amzn-requestid", request_id)]
        model_name = service.model_name if service is not None else None
        if protocol == REST_JSON:
            rest_model = service_model(model_name) if model_name is not None else None
            status = err.status
            if status == 400 and rest_model is not None:
                status = error_http_status(rest_model, err.code) or status
            headers.append(("x-amzn-ErrorType", err.code))
            body = wire_rest.encode_error(rest_model, err.code, err.message)
            return _Reply(status, wire_rest.CONTENT_TYPE, body, headers)
        code = query_error_code(model_name, err.code) if model_name else err.code
        if protocol == "json":
            if model_name is not None:
                model = service_model(model_name)
                name = JSON_ERROR_NAMES.get(err.code, err.code)
                error_type = f"{error_namespace(model)}#{name}"
                content_type = json_content_type(model)
                if "awsQueryCompatible" in model.metadata:
                    headers.append(("x-amzn-query-error", f"{code};{err.fault}"))
            else:
                error_type, content_type = err.code, "application/x-amz-json-1.0"
            body = wire_json.encode_error(error_type, err.message)
            return _Reply(err.status, content_type, body, headers)
        body = wire_query.encode_error(code, err.message, err.fault, request_id)
        return _Reply(err.status, wire_query.CONTENT_TYPE, body, headers)


def _headers(request: h11.Request) -> dict[str, str]:
    """Lower-cased names; repeated headers joined with commas, as SigV4 canonicalises them."""
    out: dict[str, str] = {}
    for raw_name, raw_value in request.headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1").strip()
        out[name] = f"{out[name]},{value}" if name in out else value
    return out
