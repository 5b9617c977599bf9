"""Node configuration: one frozen ``Config`` built from defaults, a TOML file, ``POLYMQ_*``
environment variables and command-line flags, in that order of precedence (a flag wins).

Every limit is named with its unit last. An unknown key in the file or an unparsable value is a
``ConfigError`` whose message names the key and the source; the CLI prints it on one line.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

FSYNC_POLICIES = ("always", "interval", "never")
AWS_AUTH_MODES = ("any", "verify")
LOG_LEVELS = ("debug", "info", "warning", "error")
#: client certificates, as RabbitMQ's verify / fail_if_no_peer_cert (see protocols/_tls.py)
TLS_VERIFY_PEER = ("none", "optional", "required")
#: HTTPS on the AWS port: "auto" serves plain HTTP and HTTPS there once a certificate is
#: configured (as LocalStack's 4566 does), "off" plain only, "required" HTTPS only
HTTP_TLS_MODES = ("auto", "off", "required")

# listener name -> (config field, default port)
LISTENERS: dict[str, tuple[str, int]] = {
    "amqp": ("amqp_port", 5672),
    "mqtt": ("mqtt_port", 1883),
    "mqtt_ws": ("mqtt_ws_port", 15675),  # MQTT over WebSocket; off while "mqtt" is off
    "stomp": ("stomp_port", 61613),
    "stomp_ws": ("stomp_ws_port", 15674),  # STOMP over WebSocket; off while "stomp" is off
    "http": ("http_port", 4566),
    "admin": ("admin_port", 15672),
    # TLS listeners (RabbitMQ's ports): off unless tls_cert_file is set
    "amqps": ("amqps_port", 5671),
    "mqtts": ("mqtts_port", 8883),
    "mqtt_wss": ("mqtt_wss_port", 15676),  # off while "mqtt" and "mqtts" are off
    "stomps": ("stomps_port", 61614),
    "stomp_wss": ("stomp_wss_port", 15673),  # off while "stomp" and "stomps" are off
    "admin_tls": ("admin_tls_port", 15671),
}
TLS_LISTENERS = frozenset(("amqps", "mqtts", "mqtt_wss", "stomps", "stomp_wss", "admin_tls"))


#: the cluster link port of DESIGN.md (a node listens on its own entry of ``peers``); the
#: deploy/ manifests name every member with it
CLUSTER_PORT_DEFAULT = 25672


class ConfigError(Exception):
    """A configuration value or key that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: str = "./data"
    host: str = "0.0.0.0"
    node_id: str = "polymq@localhost"
    # A port of None means the listener is off; 0 picks a free port.
    amqp_port: int | None = 5672
    mqtt_port: int | None = 1883
    mqtt_ws_port: int | None = 15675
    stomp_port: int | None = 61613
    stomp_ws_port: int | None = 15674
    http_port: int | None = 4566
    admin_port: int | None = 15672
    amqps_port: int | None = 5671
    mqtts_port: int | None = 8883
    mqtt_wss_port: int | None = 15676
    stomps_port: int | None = 61614
    stomp_wss_port: int | None = 15673
    admin_tls_port: int | None = 15671
    #: PEM files; the TLS listeners are served only when a certificate is configured
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    tls_verify_peer: str = "none"
    tls_handshake_timeout_ms: int = 5000
    http_tls: str = "auto"
    #: resource alarms (broker/alarms.py): the memory watermark is memory_high_watermark_bytes
    #: when not 0, else this fraction of the memory available to the process
    memory_high_watermark: float = 0.6
    memory_high_watermark_bytes: int = 0
    #: 0 turns the disk alarm off
    disk_free_limit_bytes: int = 50_000_000
    resource_check_interval_ms: int = 1000
    fsync: str = "always"
    fsync_interval_ms: int = 200
    log_level: str = "info"
    segment_bytes_max: int = 64 << 20
    entry_bytes_max: int = 16 << 20
    pending_bytes_max: int = 256 << 20
    pipeline_entries_max: int = 1_000_000
    snapshot_entries_interval: int = 200_000
    tick_interval_ms_max: int = 100
    default_user: str = "guest"
    default_pass: str = "guest"
    default_user_loopback_only: bool = True
    amqp_frame_bytes_max: int = 131072
    amqp_channels_max: int = 2047
    amqp_heartbeat_s: int = 60
    amqp_message_bytes_max: int = 16 << 20
    amqp_connections_max: int = 10_000
    amqp_outbuf_bytes_max: int = 16 << 20
    mqtt_packet_bytes_max: int = 1 << 20
    mqtt_session_queue_messages_max: int = 100_000
    mqtt_receive_maximum: int = 1024
    mqtt_keepalive_s_max: int = 3600
    mqtt_allow_anonymous: bool = True
    mqtt_connections_max: int = 100_000
    mqtt_outbuf_bytes_max: int = 16 << 20
    stomp_frame_bytes_max: int = 4 << 20
    stomp_connections_max: int = 100_000
    stomp_outbuf_bytes_max: int = 16 << 20
    stomp_heartbeat_ms_min: int = 100
    http_request_bytes_max: int = 4 << 20
    http_connections_max: int = 1024
    aws_account_id: str = "000000000000"
    aws_region: str = "us-east-1"
    #: "any" accepts any (or no) credentials, for development; "verify" checks SigV4
    #: signatures against aws_access_keys
    aws_auth: str = "any"
    #: "AKID:SECRET,AKID2:SECRET2:USER": with a third field the key acts as that user (its
    #: permissions in vhost "/" apply), without one as the default user
    aws_access_keys: str = ""
    #: Step Functions Lambda tasks: "FUNCTION_ARN=URL,..."; a task whose Resource is that
    #: function (or arn:aws:states:::lambda:invoke naming it) POSTs its payload to the URL
    sfn_lambda_endpoints: str = ""
    #: cluster mode: "n1=host:port,n2=host:port,..." naming every member, this node included
    #: (by ``node_id``); empty or only this node means a single node
    peers: str = ""
    #: the port this node's cluster link listens on (default: its own entry in ``peers``)
    cluster_port: int = 0
    #: nodes refuse links from another cluster id
    cluster_id: str = "polymq"
    cluster_tick_ms: int = 50
    cluster_election_ticks: int = 10
    #: a durable command that is not committed within this answers the client with an error
    cluster_propose_timeout_ms: int = 5000
    #: the sessions of a node unreachable for this long are closed by the leader (their
    #: unsettled deliveries go back to their queues)
    cluster_session_timeout_ms: int = 5000
    cluster_frame_bytes_max: int = 64 << 20
    cluster_send_queue_frames_max: int = 4096
    cluster_snapshot_chunk_bytes_max: int = 1 << 20
    #: AppFlow's local file connectors (S3 buckets are directories under it) and SQLite files;
    #: empty means ``<data_dir>/appflow``
    appflow_root_dir: str = ""

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert_file)

    def listener_port(self, name: str) -> int | None:
        field, _ = LISTENERS[name]
        value: int | None = getattr(self, field)
        return value

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in fields(Config)}
_PORT_FIELDS = {field for field, _ in LISTENERS.values()}


def _parse_port(key: str, value: Any, source: str) -> int | None:
    if value is None or value is False:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("off", "none", "disabled", "false"):
            return None
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(
                f"{key} in {source}: expected a port number or 'off', got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} in {source}: expected a port number or 'off', got {value!r}")
    if not 0 <= value <= 65535:
        raise ConfigError(f"{key} in {source}: port {value} is out of range 0-65535")
    return value


def _coerce(key: str, value: Any, source: str) -> Any:
    if key not in _FIELDS:
        raise ConfigError(f"unknown config key {key!r} in {source}")
    if key in _PORT_FIELDS:
        return _parse_port(key, value, source)
    default = _FIELDS[key].default
    if isinstance(default, bool):
        if isinstance(value, str):
            value = value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if isinstance(default, float):
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise ConfigError(f"{key} in {source}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} in {source}: expected a number, got {value!r}")
        if not 0 <= value <= 1:
            raise ConfigError(f"{key} in {source}: expected a fraction 0-1, got {value}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ConfigError(
                    f"{key} in {source}: expected an integer, got {value!r}"
                ) from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} in {source}: expected an integer, got {value!r}")
        if value < 0:
            raise ConfigError(f"{key} in {source}: must not be negative, got {value}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{key} in {source}: expected a string, got {value!r}")
    if key == "fsync" and value not in FSYNC_POLICIES:
        choices = ", ".join(FSYNC_POLICIES)
        raise ConfigError(f"fsync in {source}: expected one of {choices}, got {value!r}")
    if key == "aws_auth" and value not in AWS_AUTH_MODES:
        choices = ", ".join(AWS_AUTH_MODES)
        raise ConfigError(f"aws_auth in {source}: expected one of {choices}, got {value!r}")
    if key == "tls_verify_peer" and value not in TLS_VERIFY_PEER:
        choices = ", ".join(TLS_VERIFY_PEER)
        raise ConfigError(f"tls_verify_peer in {source}: expected one of {choices}, got {value!r}")
    if key == "http_tls" and value not in HTTP_TLS_MODES:
        choices = ", ".join(HTTP_TLS_MODES)
        raise ConfigError(f"http_tls in {source}: expected one of {choices}, got {value!r}")
    if key == "aws_access_keys":
        parse_access_keys(value, source)
    if key == "peers":
        parse_peers(value, source)
    if key == "sfn_lambda_endpoints":
        parse_lambda_endpoints(value, source)
    if key == "aws_account_id" and not (len(value) == 12 and value.isdigit()):
        raise ConfigError(f"aws_account_id in {source}: expected 12 digits, got {value!r}")
    if key == "log_level":
        value = value.lower()
        if value not in LOG_LEVELS:
            raise ConfigError(
                f"log_level in {source}: expected one of {', '.join(LOG_LEVELS)}, got {value!r}"
            )
    return value


def parse_access_keys(text: str, source: str = "the configuration") -> dict[str, str]:
    """``"AKID:SECRET,AKID2:SECRET2:USER"`` -> ``{AKID: SECRET, ...}`` (the optional third
    field names the user a key acts as, see ``parse_access_key_users``)."""
    keys: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        akid, sep, rest = item.partition(":")
        secret, _, user = rest.partition(":")
        if not sep or not akid or not secret or (_ and not user):
            raise ConfigError(
                f"aws_access_keys in {source}: expected ACCESS_KEY:SECRET[:USER] items separated"
                f" by commas, got {item.split(':')[0]!r}..."
            )
        keys[akid] = secret
    return keys


def parse_access_key_users(text: str) -> dict[str, str]:
    """``{AKID: USER}`` for the keys of ``aws_access_keys`` that name a user."""
    users: dict[str, str] = {}
    for item in text.split(","):
        parts = item.strip().split(":", 2)
        if len(parts) == 3 and parts[2]:
            users[parts[0]] = parts[2]
    return users


def parse_lambda_endpoints(text: str, source: str = "the configuration") -> dict[str, str]:
    """``"arn:aws:lambda:REGION:ACCOUNT:function:NAME=http://host:port/path,..."`` ->
    ``{function ARN: URL}`` (Step Functions Lambda tasks)."""
    out: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        arn, sep, url = item.partition("=")
        if not sep or ":function:" not in arn or not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"sfn_lambda_endpoints in {source}: expected FUNCTION_ARN=http(s)://URL items "
                f"separated by commas, got {item[:80]!r}"
            )
        out[arn.strip()] = url.strip()
    return out


def parse_peers(text: str, source: str = "the configuration") -> dict[str, tuple[str, int]]:
    """``"n1=host:port,n2=host:port"`` -> ``{n1: (host, port), ...}``."""
    peers: dict[str, tuple[str, int]] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, addr = item.partition("=")
        host, sep2, port_text = addr.rpartition(":")
        if not sep or not sep2 or not name or not host or not port_text.isdigit():
            raise ConfigError(
                f"peers in {source}: expected NAME=HOST:PORT items separated by commas, "
                f"got {item!r}"
            )
        port = int(port_text)
        if not 0 < port <= 65535:
            raise ConfigError(f"peers in {source}: port {port} of {name!r} is out of range")
        if name in peers:
            raise ConfigError(f"peers in {source}: {name!r} is named twice")
        peers[name] = (host.strip("[]"), port)
    return peers


def _apply(values: dict[str, Any], changes: Mapping[str, Any], source: str) -> None:
    for key, value in changes.items():
        values[key] = _coerce(key, value, source)


def load_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            # [listeners] / [storage] / [limits] tables are accepted as plain groupings.
            flat.update(value)
        else:
            flat[key] = value
    return flat


def from_environ(environ: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith("POLYMQ_"):
            continue
        key = name[len("POLYMQ_") :].lower()
        if key == "config":
            continue
        if key not in _FIELDS:
            raise ConfigError(f"unknown config key {key!r} in environment variable {name}")
        out[key] = value
    return out


def build(
    *,
    file: str | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults < file < environment < flags."""
    values: dict[str, Any] = {}
    env = os.environ if environ is None else environ
    if file is None:
        file = env.get("POLYMQ_CONFIG") or None
    if file is not None:
        _apply(values, load_file(file), f"config file {file}")
    _apply(values, from_environ(env), "the environment")
    if flags:
        _apply(values, {k: v for k, v in flags.items() if v is not None}, "the command line")
    cfg = Config(**values)
    if cfg.peers:
        peers = parse_peers(cfg.peers)
        if len(peers) > 1 and cfg.node_id not in peers:
            raise ConfigError(
                f"node_id {cfg.node_id!r} is not one of the peers ({', '.join(sorted(peers))})"
            )
    if cfg.cluster_port > 65535:
        raise ConfigError(f"cluster_port {cfg.cluster_port} is out of range 0-65535")
    if cfg.aws_auth == "verify" and not parse_access_keys(cfg.aws_access_keys):
        raise ConfigError("aws_auth is 'verify' but aws_access_keys names no key")
    _check_tls(cfg)
    return cfg


def _check_tls(cfg: Config) -> None:
    if cfg.tls_cert_file and not cfg.tls_key_file:
        raise ConfigError("tls_cert_file is set but tls_key_file is not: TLS needs both")
    if cfg.tls_key_file and not cfg.tls_cert_file:
        raise ConfigError("tls_key_file is set but tls_cert_file is not: TLS needs both")
    if cfg.tls_verify_peer != "none" and not cfg.tls_ca_file:
        raise ConfigError(
            f"tls_verify_peer is {cfg.tls_verify_peer!r} but tls_ca_file is not set: client "
            "certificates are checked against it"
        )
    if cfg.http_tls == "required" and not cfg.tls_cert_file:
        raise ConfigError("http_tls is 'required' but tls_cert_file is not set")
