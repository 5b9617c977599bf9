"""``polymq`` command line: ``polymq serve`` runs one node; ``polymq --version``.

Startup order matters for "bad input changes nothing": the configuration is validated first, then
every listener is bound (a port in use stops here, before the data directory is touched), then the
data directory is recovered (a corrupt one stops here, before anything is written), and only then
does the node write (the session reset) and serve. Fatal startup errors are one line on stderr,
``polymq: error: ...``, with exit code 2 for usage/configuration and 1 for everything else.
"""

from __future__ import annotations

import argparse
import errno
import functools
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

import trio

from broker import __version__, config, logs, runtime
from broker.config import LISTENERS, Config, ConfigError
from broker.node import Node, RecoveryError
from storage.log import LogError

log = logging.getLogger("polymq.cli")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

# Listeners this version serves; the others accept their flag and report they are not available.
AVAILABLE_LISTENERS = ("admin", "amqp", "mqtt", "mqtt_ws", "stomp", "stomp_ws", "http")


class StartupError(Exception):
    """A fatal startup problem; the message is the one line the user sees."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polymq",
        description="polymq: a self-hosted message broker (AMQP 0-9-1, MQTT, STOMP, AWS APIs).",
    )
    parser.add_argument("--version", action="version", version=f"polymq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run a broker node")
    serve.add_argument("--config", metavar="FILE", help="TOML configuration file")
    serve.add_argument("--data-dir", metavar="DIR", help="data directory (default ./data)")
    serve.add_argument("--host", metavar="ADDR", help="listen address (default 0.0.0.0)")
    serve.add_argument("--node-id", metavar="NAME", help="node name in logs")
    for name, (field, default) in LISTENERS.items():
        serve.add_argument(
            f"--{name.replace('_', '-')}-port",
            dest=field,
            metavar="PORT",
            help=f"{name} listener port (default {default}; 0 picks a free port; 'off' disables)",
        )
    serve.add_argument("--fsync", choices=config.FSYNC_POLICIES, help="log fsync policy")
    serve.add_argument("--fsync-interval-ms", type=int, metavar="MS")
    serve.add_argument("--log-level", choices=config.LOG_LEVELS)
    serve.add_argument(
        "--aws-auth",
        choices=config.AWS_AUTH_MODES,
        help="AWS API credentials: 'any' accepts any (dev); 'verify' checks SigV4 signatures",
    )
    serve.add_argument(
        "--aws-access-keys", metavar="KEY:SECRET,...", help="access keys for --aws-auth verify"
    )
    serve.add_argument("--aws-account-id", metavar="DIGITS", help="account id in queue URLs")
    return parser


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    keys = ["data_dir", "host", "node_id", "fsync", "fsync_interval_ms", "log_level"]
    keys += ["aws_auth", "aws_access_keys", "aws_account_id"]
    keys += [field for field, _ in LISTENERS.values()]
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


async def _bind(cfg: Config) -> dict[str, list[trio.SocketListener]]:
    bound: dict[str, list[trio.SocketListener]] = {}
    for name, (field, _default) in LISTENERS.items():
        port = getattr(cfg, field)
        if port is None:
            log.info("listener disabled", extra={"listener": name})
            continue
        if name == "mqtt_ws" and cfg.mqtt_port is None:
            # the WebSocket transport is part of the MQTT front end: off along with it
            log.info("listener skipped", extra={"listener": name, "reason": "mqtt is off"})
            continue
        if name == "stomp_ws" and cfg.stomp_port is None:
            # likewise the STOMP front end's WebSocket transport
            log.info("listener skipped", extra={"listener": name, "reason": "stomp is off"})
            continue
        if name not in AVAILABLE_LISTENERS:
            log.warning(
                "listener not available in this version",
                extra={"listener": name, "port": port},
            )
            continue
        try:
            listeners = await trio.open_tcp_listeners(port, host=cfg.host)
        except OSError as exc:
            for ls in bound.values():
                for listener in ls:
                    await listener.aclose()
            reason = (
                "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or exc)
            )
            raise StartupError(
                f"cannot listen on {name} port {cfg.host}:{port}: {reason}"
            ) from None
        bound[name] = listeners
        actual = listeners[0].socket.getsockname()[1]
        log.info("listening", extra={"listener": name, "host": cfg.host, "port": actual})
    return bound


async def serve(cfg: Config) -> None:
    bound = await _bind(cfg)
    node = Node(cfg)
    node.listeners = [
        {"name": name, "host": cfg.host, "port": ls[0].socket.getsockname()[1]}
        for name, ls in bound.items()
    ]
    try:
        node.recover()
    except (RecoveryError, LogError) as exc:
        for ls in bound.values():
            for listener in ls:
                await listener.aclose()
        raise StartupError(str(exc)) from None
    runtime.tune_gc(freeze=True)

    from broker.admin.http import AdminServer

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            if "admin" in bound:
                nursery.start_soon(AdminServer(node).serve, bound["admin"])
            if "amqp" in bound:
                nursery.start_soon(_serve_amqp, cfg, node, bound["amqp"])
            if "mqtt" in bound:
                nursery.start_soon(_serve_mqtt, cfg, node, bound["mqtt"], bound.get("mqtt_ws", []))
            if "stomp" in bound:
                nursery.start_soon(
                    _serve_stomp, cfg, node, bound["stomp"], bound.get("stomp_ws", [])
                )
            if "http" in bound:
                nursery.start_soon(_serve_http, cfg, node, bound["http"])
            log.info("started", extra={"version": __version__, "data_dir": cfg.data_dir})
            async for signum in signals:
                log.info("shutting down", extra={"signal": signal.Signals(signum).name})
                break
            node.stop()
            with trio.move_on_after(60):
                await node.wait_stopped()
            nursery.cancel_scope.cancel()


async def _serve_http(cfg: Config, node: Node, listeners: list[trio.SocketListener]) -> None:
    """The AWS-compatible APIs (SQS, SNS, EventBridge) on one HTTP endpoint."""
    from broker.adapters.events import EventsAdapter
    from broker.adapters.sns import SnsAdapter
    from broker.adapters.sqs import SqsAdapter, SqsSettings
    from broker.api import Broker
    from protocols.aws.events import EventsService
    from protocols.aws.http import AwsHttpServer, AwsService, HttpLimits
    from protocols.aws.sigv4 import SigV4Verifier
    from protocols.aws.sns import SnsService
    from protocols.aws.sqs import SqsService

    broker = Broker(node)
    sqs = SqsAdapter(broker, SqsSettings(account_id=cfg.aws_account_id, region=cfg.aws_region))
    sns = SnsAdapter(broker, account_id=cfg.aws_account_id, region=cfg.aws_region)
    events = EventsAdapter(broker, account_id=cfg.aws_account_id, region=cfg.aws_region)
    auth = None
    if cfg.aws_auth == "verify":
        auth = SigV4Verifier(config.parse_access_keys(cfg.aws_access_keys))
    limits = HttpLimits(
        request_bytes_max=cfg.http_request_bytes_max, connections_max=cfg.http_connections_max
    )
    services: list[AwsService] = [SqsService(sqs), SnsService(sns), EventsService(events)]
    server = AwsHttpServer(services, limits, auth=auth)
    async with trio.open_nursery() as nursery:
        await nursery.start(sqs.run)
        await nursery.start(sns.run)
        await nursery.start(events.run)
        await server.serve(listeners)
        nursery.cancel_scope.cancel()


async def _serve_mqtt(
    cfg: Config,
    node: Node,
    listeners: list[trio.SocketListener],
    ws_listeners: list[trio.SocketListener],
) -> None:
    """TCP and WebSocket MQTT listeners over one hub: sessions, takeover and wills are shared,
    and ``mqtt_connections_max`` counts the connections of both."""
    from broker.api import Broker
    from protocols import _server
    from protocols.mqtt import io as mqtt_io
    from protocols.mqtt import ws as mqtt_ws
    from protocols.mqtt.processor import MQTTHub, MQTTSettings

    settings = MQTTSettings(
        packet_bytes_max=cfg.mqtt_packet_bytes_max,
        session_queue_messages_max=cfg.mqtt_session_queue_messages_max,
        receive_maximum=cfg.mqtt_receive_maximum,
        keepalive_s_max=cfg.mqtt_keepalive_s_max,
        allow_anonymous=cfg.mqtt_allow_anonymous,
        default_user=cfg.default_user,
        default_pass=cfg.default_pass,
        default_user_loopback_only=cfg.default_user_loopback_only,
    )
    limits = mqtt_io.IOLimits(outbuf_bytes_max=cfg.mqtt_outbuf_bytes_max)
    hub = MQTTHub(Broker(node), settings)
    node.mqtt_hub = hub
    limiter = _server.ConnectionLimiter("mqtt", cfg.mqtt_connections_max)

    # a partial, not a wrapper coroutine: no extra frame per connection
    handler = functools.partial(mqtt_io.handle, hub=hub, limits=limits)

    async def ws_handler(stream: trio.SocketStream) -> None:
        await mqtt_ws.handle(stream, hub, limits)

    async with trio.open_nursery() as nursery:
        hub.nursery = nursery
        if ws_listeners:
            nursery.start_soon(_server.serve, ws_listeners, ws_handler, limiter)
        await _server.serve(listeners, handler, limiter)


async def _serve_stomp(
    cfg: Config,
    node: Node,
    listeners: list[trio.SocketListener],
    ws_listeners: list[trio.SocketListener],
) -> None:
    """TCP and WebSocket STOMP listeners over one broker API; ``stomp_connections_max`` counts
    the connections of both."""
    from broker.api import Broker
    from protocols import _server
    from protocols.stomp import io as stomp_io
    from protocols.stomp import ws as stomp_ws
    from protocols.stomp.processor import StompSettings

    settings = StompSettings(
        default_user=cfg.default_user,
        default_pass=cfg.default_pass,
        default_user_loopback_only=cfg.default_user_loopback_only,
        heartbeat_ms_min=cfg.stomp_heartbeat_ms_min,
    )
    limits = stomp_io.IOLimits(outbuf_bytes_max=cfg.stomp_outbuf_bytes_max)
    decoder_limits = {"frame_bytes_max": cfg.stomp_frame_bytes_max}
    broker = Broker(node)
    limiter = _server.ConnectionLimiter("stomp", cfg.stomp_connections_max)

    async def handler(stream: trio.SocketStream) -> None:
        await stomp_io.handle(stream, broker, settings, limits, decoder_limits)

    async def ws_handler(stream: trio.SocketStream) -> None:
        await stomp_ws.handle(stream, broker, settings, limits, decoder_limits)

    async with trio.open_nursery() as nursery:
        if ws_listeners:
            nursery.start_soon(_server.serve, ws_listeners, ws_handler, limiter)
        await _server.serve(listeners, handler, limiter)


def _first_fatal(group: BaseExceptionGroup[Any]) -> BaseException | None:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _first_fatal(exc)
            if found is not None:
                return found
        elif isinstance(exc, (LogError, OSError)):
            return exc
    return None


async def _serve_amqp(cfg: Config, node: Node, listeners: list[trio.SocketListener]) -> None:
    from broker.api import Broker
    from protocols import _server
    from protocols.amqp091 import io as amqp_io
    from protocols.amqp091.processor import AMQPSettings

    settings = AMQPSettings(
        frame_max=cfg.amqp_frame_bytes_max,
        channel_max=cfg.amqp_channels_max,
        heartbeat_s=cfg.amqp_heartbeat_s,
        message_bytes_max=cfg.amqp_message_bytes_max,
        default_user=cfg.default_user,
        default_pass=cfg.default_pass,
        default_user_loopback_only=cfg.default_user_loopback_only,
    )
    limits = amqp_io.IOLimits(outbuf_bytes_max=cfg.amqp_outbuf_bytes_max)
    broker = Broker(node)
    limiter = _server.ConnectionLimiter("amqp", cfg.amqp_connections_max)

    async def handler(stream: trio.SocketStream) -> None:
        await amqp_io.handle(stream, broker, settings, limits)

    await _server.serve(listeners, handler, limiter)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help()
        return EXIT_USAGE
    try:
        cfg = config.build(file=args.config, flags=_flags(args))
    except ConfigError as exc:
        print(f"polymq: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logs.setup(cfg.log_level, cfg.node_id)
    try:
        trio.run(serve, cfg)
    except StartupError as exc:
        print(f"polymq: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except LogError as exc:
        print(f"polymq: error: storage failure: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BaseExceptionGroup as group:
        fatal = _first_fatal(group)
        if fatal is None:
            raise
        print(f"polymq: error: storage failure: {fatal}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
