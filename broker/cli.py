"""``polymq`` command line: ``polymq serve`` runs one node (alone, or as a member of a cluster
with ``--peers``); ``polymq cluster up | status`` run and inspect a local dev cluster;
``polymq --version``.

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

from broker import __version__, bench, chaos, cli_flow, cli_users, config, logs, runtime
from broker.config import LISTENERS, TLS_LISTENERS, Config, ConfigError
from broker.node import Node, RecoveryError, cluster_peers
from protocols._tls import TLS, TLSSetupError, server_context
from storage.log import LogError

log = logging.getLogger("polymq.cli")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

# Listeners this version serves; the others accept their flag and report they are not available.
AVAILABLE_LISTENERS: tuple[str, ...] = ("admin", "amqp", "mqtt", "mqtt_ws", "stomp", "stomp_ws")
AVAILABLE_LISTENERS += ("http", "amqps", "mqtts", "mqtt_wss", "stomps", "stomp_wss", "admin_tls")


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
    serve.add_argument(
        "--peers",
        metavar="ID=HOST:PORT,...",
        help="cluster members, this node (--node-id) included; without it: a single node",
    )
    serve.add_argument(
        "--cluster-port", metavar="PORT", type=int, help="cluster link port (default: from --peers)"
    )
    serve.add_argument("--cluster-id", metavar="NAME", help="nodes refuse other cluster ids")
    serve.add_argument("--tls-cert-file", metavar="PEM", help="certificate chain of the TLS ports")
    serve.add_argument("--tls-key-file", metavar="PEM", help="private key of --tls-cert-file")
    serve.add_argument("--tls-ca-file", metavar="PEM", help="CAs that client certificates chain to")
    serve.add_argument(
        "--tls-verify-peer",
        choices=config.TLS_VERIFY_PEER,
        help="client certificates: none (default), optional, required",
    )
    serve.add_argument(
        "--http-tls", choices=config.HTTP_TLS_MODES, help="HTTPS on the AWS port (default auto)"
    )
    serve.add_argument(
        "--memory-high-watermark", metavar="FRACTION", help="memory alarm at this share of RAM"
    )
    serve.add_argument("--memory-high-watermark-bytes", metavar="BYTES")
    serve.add_argument("--disk-free-limit-bytes", metavar="BYTES", help="disk alarm below this")
    serve.add_argument("--resource-check-interval-ms", metavar="MS")
    _cluster_parser(sub)
    chaos.add_parser(sub)
    bench.add_parser(sub)
    cli_users.add_parser(sub)
    cli_flow.add_parser(sub)
    return parser


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    keys = ["data_dir", "host", "node_id", "fsync", "fsync_interval_ms", "log_level"]
    keys += ["aws_auth", "aws_access_keys", "aws_account_id", "peers", "cluster_port"]
    keys += ["cluster_id"]
    keys += ["tls_cert_file", "tls_key_file", "tls_ca_file", "tls_verify_peer", "http_tls"]
    keys += ["memory_high_watermark", "memory_high_watermark_bytes", "disk_free_limit_bytes"]
    keys += ["resource_check_interval_ms"]
    keys += [field for field, _ in LISTENERS.values()]
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


async def _bind(cfg: Config) -> dict[str, list[trio.SocketListener]]:
    bound: dict[str, list[trio.SocketListener]] = {}
    for name, (field, _default) in LISTENERS.items():
        port = getattr(cfg, field)
        if name in TLS_LISTENERS and not cfg.tls_enabled:
            continue  # TLS listeners are served only with a certificate
        if port is None:
            log.info("listener disabled", extra={"listener": name})
            continue
        if name in ("mqtt_ws", "mqtt_wss") and cfg.mqtt_port is None and not _tls_on(cfg, "mqtts"):
            # the WebSocket transport is part of the MQTT front end: off along with it
            log.info("listener skipped", extra={"listener": name, "reason": "mqtt is off"})
            continue
        if (
            name in ("stomp_ws", "stomp_wss")
            and cfg.stomp_port is None
            and not _tls_on(cfg, "stomps")
        ):
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


def _tls_on(cfg: Config, name: str) -> bool:
    return cfg.tls_enabled and cfg.listener_port(name) is not None


def _tls(cfg: Config) -> TLS | None:
    """The TLS side of the listeners (None without a certificate); a file that cannot be
    loaded stops the start before any port is bound."""
    if not cfg.tls_enabled:
        return None
    try:
        context = server_context(
            cfg.tls_cert_file, cfg.tls_key_file, cfg.tls_ca_file, cfg.tls_verify_peer
        )
    except TLSSetupError as exc:
        raise StartupError(str(exc)) from None
    return TLS(context, cfg.tls_handshake_timeout_ms / 1000)


async def serve(cfg: Config) -> None:
    tls = _tls(cfg)
    bound = await _bind(cfg)
    node = Node(cfg)
    node.listeners = [
        {"name": name, "host": cfg.host, "port": ls[0].socket.getsockname()[1]}
        for name, ls in bound.items()
    ]
    cluster_listeners: list[trio.SocketListener] = []
    peers = cluster_peers(cfg)
    if peers is not None:
        port = cfg.cluster_port or peers[cfg.node_id][1]
        try:
            cluster_listeners = await trio.open_tcp_listeners(port, host=cfg.host)
        except OSError as exc:
            for ls in bound.values():
                for listener in ls:
                    await listener.aclose()
            raise StartupError(
                f"cannot listen on cluster port {cfg.host}:{port}: {exc.strerror or exc}"
            ) from None
        log.info("listening", extra={"listener": "cluster", "host": cfg.host, "port": port})
    try:
        node.recover()
    except (RecoveryError, LogError) as exc:
        for ls in [*bound.values(), cluster_listeners]:
            for listener in ls:
                await listener.aclose()
        raise StartupError(str(exc)) from None
    if node.cluster is not None:
        node.cluster.listeners = cluster_listeners
    runtime.tune_gc(freeze=True)

    from broker.admin.http import AdminServer

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await cli_users.seed_default_user(cfg, node)
            await nursery.start(node.alarms.monitor)
            if "admin" in bound or "admin_tls" in bound:
                admin = AdminServer(node)
                if "admin" in bound:
                    nursery.start_soon(admin.serve, bound["admin"])
                if "admin_tls" in bound and tls is not None:
                    wrapped = tls.wrap(admin.handle, "admin_tls")
                    nursery.start_soon(trio.serve_listeners, wrapped, bound["admin_tls"])
            if "amqp" in bound or "amqps" in bound:
                nursery.start_soon(
                    _serve_amqp, cfg, node, bound.get("amqp", []), bound.get("amqps", []), tls
                )
            if "mqtt" in bound or "mqtts" in bound:
                nursery.start_soon(
                    _serve_mqtt,
                    cfg,
                    node,
                    bound.get("mqtt", []),
                    bound.get("mqtt_ws", []),
                    bound.get("mqtts", []),
                    bound.get("mqtt_wss", []),
                    tls,
                )
            if "stomp" in bound or "stomps" in bound:
                nursery.start_soon(
                    _serve_stomp,
                    cfg,
                    node,
                    bound.get("stomp", []),
                    bound.get("stomp_ws", []),
                    bound.get("stomps", []),
                    bound.get("stomp_wss", []),
                    tls,
                )
            if "http" in bound:
                nursery.start_soon(_serve_http, cfg, node, bound["http"], tls)
            log.info("started", extra={"version": __version__, "data_dir": cfg.data_dir})
            async for signum in signals:
                log.info("shutting down", extra={"signal": signal.Signals(signum).name})
                break
            node.stop()
            with trio.move_on_after(60):
                await node.wait_stopped()
            nursery.cancel_scope.cancel()


async def _serve_http(
    cfg: Config, node: Node, listeners: list[trio.SocketListener], tls: TLS | None = None
) -> None:
    """The AWS-compatible APIs (SQS, SNS, EventBridge, its schema registry) on one HTTP
    endpoint; with a certificate it serves HTTPS on the same port too (``http_tls``)."""
    from broker.adapters.events import EventsAdapter
    from broker.adapters.schemas import SchemasAdapter
    from broker.adapters.sns import SnsAdapter
    from broker.adapters.sqs import SqsAdapter, SqsSettings
    from broker.api import Broker
    from protocols.aws import route as aws_route
    from protocols.aws.access import AwsAccess
    from protocols.aws.appflow import AppflowService
    from protocols.aws.events import EventsService
    from protocols.aws.http import AwsHttpServer, AwsService, HttpLimits
    from protocols.aws.route import LeaderRoute
    from protocols.aws.schemas import SchemasService
    from protocols.aws.sigv4 import SigV4Verifier
    from protocols.aws.sns import SnsService
    from protocols.aws.sqs import SqsService

    broker = Broker(node)
    sqs = SqsAdapter(broker, SqsSettings(account_id=cfg.aws_account_id, region=cfg.aws_region))
    sns = SnsAdapter(broker, account_id=cfg.aws_account_id, region=cfg.aws_region)
    events = EventsAdapter(broker, account_id=cfg.aws_account_id, region=cfg.aws_region)
    schemas = SchemasAdapter(broker, account_id=cfg.aws_account_id, region=cfg.aws_region)
    auth = None
    if cfg.aws_auth == "verify":
        auth = SigV4Verifier(config.parse_access_keys(cfg.aws_access_keys))
    limits = HttpLimits(
        request_bytes_max=cfg.http_request_bytes_max, connections_max=cfg.http_connections_max
    )
    services: list[AwsService] = [
        SqsService(sqs),
        SnsService(sns),
        EventsService(events),
        SchemasService(schemas),
    ]
    appflow = AppflowService.build(cfg, broker, sqs, sns, events)
    services.append(appflow)
    from broker.adapters.stepfunctions import StepFunctionsAdapter
    from protocols.aws.stepfunctions import StepFunctionsService

    sfn = StepFunctionsAdapter(
        broker,
        account_id=cfg.aws_account_id,
        region=cfg.aws_region,
        sqs=sqs,
        sns=sns,
        events=events,
        lambda_endpoints=config.parse_lambda_endpoints(cfg.sfn_lambda_endpoints),
    )
    services.append(StepFunctionsService(sfn))
    server = AwsHttpServer(services, limits, auth=auth)
    server.alarms = node.alarms
    if auth is not None:
        server.access = AwsAccess(
            broker,
            config.parse_access_key_users(cfg.aws_access_keys),
            default_user=cfg.default_user,
            account_id=cfg.aws_account_id,
            region=cfg.aws_region,
        )
    # Started in this order (later adapters may call earlier ones).
    adapters: list[Any] = [sqs, sns, events, schemas]
    adapters.append(appflow.adapter)
    adapters.append(sfn)

    async def run_adapters(
        route: LeaderRoute | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as inner:
            for adapter in adapters:
                await inner.start(adapter.run)
            task_status.started()
            if route is None:
                await trio.sleep_forever()
            route.running = True
            try:
                await trio.sleep_forever()
            finally:
                route.running = False

    async with trio.open_nursery() as nursery:
        if node.cluster is None:
            await nursery.start(run_adapters)
        else:
            # The adapters run on the leader; every node relays requests to it (route.py).
            route = LeaderRoute(broker)
            server.route = route
            broker.serve_for_followers(aws_route.SERVICE, server.serve_forwarded)
            nursery.start_soon(broker.run_while_leading, functools.partial(run_adapters, route))
        # its connections are listed by the management API like the other front ends'
        tracked = node.connections.track("http", server.handle_stream)
        server.handle_stream = tracked  # type: ignore[method-assign,assignment]
        await server.serve(listeners, None if cfg.http_tls == "off" else tls, cfg.http_tls)
        nursery.cancel_scope.cancel()


async def _serve_mqtt(
    cfg: Config,
    node: Node,
    listeners: list[trio.SocketListener],
    ws_listeners: list[trio.SocketListener],
    tls_listeners: list[trio.SocketListener],
    wss_listeners: list[trio.SocketListener],
    tls: TLS | None,
) -> None:
    """TCP and WebSocket MQTT listeners, plain and TLS, over one hub: sessions, takeover and
    wills are shared, and ``mqtt_connections_max`` counts the connections of all."""
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
    limiter = _server.ConnectionLimiter("mqtt", cfg.mqtt_connections_max, node.connections)

    # a partial, not a wrapper coroutine: no extra frame per connection
    handler = functools.partial(mqtt_io.handle, hub=hub, limits=limits, alarms=node.alarms)

    async def ws_handler(stream: _server.ConnStream) -> None:
        await mqtt_ws.handle(stream, hub, limits, node.alarms)

    async with trio.open_nursery() as nursery:
        hub.nursery = nursery
        if ws_listeners:
            nursery.start_soon(_server.serve, ws_listeners, ws_handler, limiter)
        if tls is not None and tls_listeners:
            nursery.start_soon(_server.serve, tls_listeners, handler, limiter, tls)
        if tls is not None and wss_listeners:
            nursery.start_soon(_server.serve, wss_listeners, ws_handler, limiter, tls)
        await _server.serve(listeners, handler, limiter)


async def _serve_stomp(
    cfg: Config,
    node: Node,
    listeners: list[trio.SocketListener],
    ws_listeners: list[trio.SocketListener],
    tls_listeners: list[trio.SocketListener],
    wss_listeners: list[trio.SocketListener],
    tls: TLS | None,
) -> None:
    """TCP and WebSocket STOMP listeners, plain and TLS, over one broker API;
    ``stomp_connections_max`` counts the connections of all."""
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
    limiter = _server.ConnectionLimiter("stomp", cfg.stomp_connections_max, node.connections)

    async def handler(stream: _server.ConnStream) -> None:
        await stomp_io.handle(stream, broker, settings, limits, decoder_limits, node.alarms)

    async def ws_handler(stream: _server.ConnStream) -> None:
        await stomp_ws.handle(stream, broker, settings, limits, decoder_limits, node.alarms)

    async with trio.open_nursery() as nursery:
        if ws_listeners:
            nursery.start_soon(_server.serve, ws_listeners, ws_handler, limiter)
        if tls is not None and tls_listeners:
            nursery.start_soon(_server.serve, tls_listeners, handler, limiter, tls)
        if tls is not None and wss_listeners:
            nursery.start_soon(_server.serve, wss_listeners, ws_handler, limiter, tls)
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


async def _serve_amqp(
    cfg: Config,
    node: Node,
    listeners: list[trio.SocketListener],
    tls_listeners: list[trio.SocketListener],
    tls: TLS | None,
) -> None:
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
    limiter = _server.ConnectionLimiter("amqp", cfg.amqp_connections_max, node.connections)

    async def handler(stream: _server.ConnStream) -> None:
        await amqp_io.handle(stream, broker, settings, limits, node.alarms)

    async with trio.open_nursery() as nursery:
        if tls is not None and tls_listeners:
            nursery.start_soon(_server.serve, tls_listeners, handler, limiter, tls)
        await _server.serve(listeners, handler, limiter)


# -- polymq cluster up | status ---------------------------------------------------------------

DEV_CLUSTER_LISTENERS = ("amqp", "mqtt", "stomp", "http", "admin", "cluster")
DEV_CLUSTER_NODES_MAX = 9
DEV_CLUSTER_STATE_FILE = "cluster.json"
STATUS_TIMEOUT_S = 3.0
DEV_CLUSTER_STOP_TIMEOUT_S = 15.0


def _cluster_parser(sub: Any) -> None:
    cluster = sub.add_parser("cluster", help="run or inspect a cluster")
    csub = cluster.add_subparsers(dest="cluster_command", metavar="ACTION")
    up = csub.add_parser("up", help="start a local dev cluster (Ctrl-C stops every node)")
    up.add_argument("-n", "--nodes", type=int, default=3, help="number of nodes (default 3)")
    up.add_argument(
        "--data-root", default="./data/cluster", help="data dirs go under it (default %(default)s)"
    )
    up.add_argument("--host", default="127.0.0.1", help="listen address (default %(default)s)")
    up.add_argument("--fsync", choices=config.FSYNC_POLICIES, default="always")
    status = csub.add_parser("status", help="role, term, commit index and lag of each node")
    status.add_argument(
        "--admin",
        action="append",
        metavar="URL",
        help="a node's admin URL (repeatable); default: the nodes `cluster up` started",
    )
    status.add_argument("--data-root", default="./data/cluster")
    status.add_argument("--json", action="store_true", help="print the raw answers")


def _free_ports(host: str, n: int) -> list[int]:
    import socket

    socks = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind((host, 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _cluster_main(args: argparse.Namespace) -> int:
    if args.cluster_command == "up":
        return _cluster_up(args)
    if args.cluster_command == "status":
        return _cluster_status(args)
    print("polymq: error: cluster needs an action: up or status", file=sys.stderr)
    return EXIT_USAGE


def _cluster_up(args: argparse.Namespace) -> int:
    import json
    import os
    import subprocess

    n = args.nodes
    if not 1 <= n <= DEV_CLUSTER_NODES_MAX:
        print(f"polymq: error: -n must be 1-{DEV_CLUSTER_NODES_MAX}", file=sys.stderr)
        return EXIT_USAGE
    ports = _free_ports(args.host, n * len(DEV_CLUSTER_LISTENERS))
    nodes: list[dict[str, Any]] = []
    for i in range(n):
        k = len(DEV_CLUSTER_LISTENERS)
        own = dict(zip(DEV_CLUSTER_LISTENERS, ports[i * k : i * k + k], strict=True))
        nodes.append({"id": f"n{i + 1}", "ports": own})
    peers = ",".join(f"{nd['id']}={args.host}:{nd['ports']['cluster']}" for nd in nodes)
    os.makedirs(args.data_root, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    logs_open = []
    try:
        for nd in nodes:
            data_dir = os.path.join(args.data_root, str(nd["id"]))
            nd["data_dir"] = data_dir
            nd["log"] = data_dir + ".log"
            p = nd["ports"]
            cmd = [sys.executable, "-m", "broker", "serve", "--node-id", str(nd["id"])]
            cmd += ["--data-dir", data_dir, "--host", args.host, "--peers", peers]
            cmd += ["--fsync", args.fsync, "--mqtt-ws-port", "off", "--stomp-ws-port", "off"]
            for name in ("amqp", "mqtt", "stomp", "http", "admin"):
                cmd += [f"--{name}-port", str(p[name])]
            logf = open(str(nd["log"]), "ab")  # noqa: SIM115 - closed in the finally below
            logs_open.append(logf)
            procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf))
        with open(os.path.join(args.data_root, DEV_CLUSTER_STATE_FILE), "w") as f:
            json.dump({"nodes": nodes}, f, indent=2)
        print(f"polymq dev cluster: {n} nodes, peers {peers}")
        for nd in nodes:
            p = nd["ports"]
            print(
                f"  {nd['id']}: amqp {p['amqp']}  mqtt {p['mqtt']}  stomp {p['stomp']}  "
                f"aws http://{args.host}:{p['http']}  "
                f"admin http://{args.host}:{p['admin']}  cluster {p['cluster']}"
                f"  data {nd['data_dir']}  log {nd['log']}"
            )
        print("Ctrl-C stops every node.", flush=True)
        try:
            while all(proc.poll() is None for proc in procs):
                try:
                    procs[0].wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
            for nd, proc in zip(nodes, procs, strict=True):
                if proc.poll() is not None:
                    print(f"{nd['id']} exited with code {proc.returncode}; see {nd['log']}")
        except KeyboardInterrupt:
            print("stopping...", flush=True)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=DEV_CLUSTER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for logf in logs_open:
            logf.close()
    return EXIT_OK


def _cluster_status(args: argparse.Namespace) -> int:
    import json
    import os
    import urllib.request

    urls: list[str] = list(args.admin or [])
    if not urls:
        state = os.path.join(args.data_root, DEV_CLUSTER_STATE_FILE)
        try:
            with open(state) as f:
                nodes = json.load(f)["nodes"]
        except (OSError, ValueError, KeyError):
            print(
                f"polymq: error: no --admin URL and no dev cluster state in {state}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        urls = [f"http://127.0.0.1:{nd['ports']['admin']}" for nd in nodes]
    rows = []
    answers = []
    failed = False
    for url in urls:
        try:
            with urllib.request.urlopen(
                url.rstrip("/") + "/api/cluster", timeout=STATUS_TIMEOUT_S
            ) as resp:
                info = json.load(resp)
        except (OSError, ValueError) as exc:
            failed = True
            rows.append((url, "down", "-", "-", "-", "-", "-", str(exc)[:40]))
            continue
        answers.append(info)
        rows.append(
            (
                url,
                str(info.get("role")),
                str(info.get("term", "-")),
                str(info.get("commit_index", "-")),
                str(info.get("applied_index", "-")),
                str(info.get("lag", "-")),
                str(info.get("leader")),
                str(info.get("node")),
            )
        )
    if args.json:
        print(json.dumps(answers, indent=2))
        return EXIT_ERROR if failed else EXIT_OK
    head = ("admin", "role", "term", "commit", "applied", "lag", "leader", "node")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return EXIT_ERROR if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "cluster":
        return _cluster_main(args)
    if args.command == "chaos":
        return chaos.main(args)
    if args.command == "bench":
        return bench.main(args)
    if args.command == "users":
        return cli_users.main(args)
    if args.command == "flow":
        return cli_flow.main(args)
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
