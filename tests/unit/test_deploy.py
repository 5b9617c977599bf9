"""deploy/ against the real command line: every flag, environment variable, configuration key
and port the Dockerfile, compose.yaml, the Kubernetes manifests and the systemd unit use is
one ``polymq serve`` accepts (``broker.cli``'s parser and ``broker.config.build``, not a copy
of them), and the ports are the defaults. Docker cannot run here: nothing is built."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker import cli, config
from broker.config import CLUSTER_PORT_DEFAULT, LISTENERS, Config, ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TLS_LISTENERS: frozenset[str] = getattr(config, "TLS_LISTENERS", frozenset())
#: listener name -> default port, for the plain (non-TLS) listeners, plus the cluster links
DEFAULT_PORTS = {
    name: default for name, (_field, default) in LISTENERS.items() if name not in TLS_LISTENERS
}
DEFAULT_PORTS["cluster"] = CLUSTER_PORT_DEFAULT
HEALTH_PATH = "/api/health"


def serve_config(
    argv: list[str], environ: dict[str, str] | None = None, tmp: Path | None = None
) -> Config:
    """What ``polymq`` makes of ``argv`` (starting with ``serve``) and ``environ``: the real
    parser, then the real configuration builder. A flag it does not know fails the test."""
    assert argv and argv[0] == "serve", argv
    try:
        args = cli._parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"polymq does not accept {argv}")
    try:
        return config.build(file=args.config, environ=environ or {}, flags=cli._flags(args))
    except ConfigError as exc:
        pytest.fail(f"polymq refuses {argv} with {environ}: {exc}")


def check_environ(environ: dict[str, str]) -> None:
    """Every POLYMQ_* variable names a configuration key."""
    try:
        config.from_environ(environ)
    except ConfigError as exc:
        pytest.fail(str(exc))


# -- Dockerfile --------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def exec_form(text: str) -> list[str]:
    value = yaml.safe_load(text)  # a JSON array is YAML
    assert isinstance(value, list), text
    return [str(v) for v in value]


def docker_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            for item in shlex.split(rest):
                key, sep, val = item.partition("=")
                assert sep, f"ENV {rest}: use KEY=VALUE"
                env[key] = val
    return env


def test_dockerfile() -> None:
    ins = dockerfile_instructions()
    words = [w for w, _ in ins]
    assert ins[0] == ("FROM", "python:3.11-slim")
    users = [rest for w, rest in ins if w == "USER"]
    assert users and users[-1] not in ("root", "0"), "the node must not run as root"
    exposed = {int(p.split("/")[0]) for w, rest in ins if w == "EXPOSE" for p in rest.split()}
    assert exposed == set(DEFAULT_PORTS.values())
    env = docker_env(ins)
    polymq_env = {k: v for k, v in env.items() if k.startswith("POLYMQ_")}
    check_environ(polymq_env)
    entry = exec_form(next(rest for w, rest in ins if w == "ENTRYPOINT"))
    cmd = exec_form(next(rest for w, rest in ins if w == "CMD"))
    assert entry == ["polymq"]
    cfg = serve_config(cmd, polymq_env)
    volumes = [v for w, rest in ins if w == "VOLUME" for v in exec_form(rest)]
    assert cfg.data_dir in volumes
    health = next(rest for w, rest in ins if w == "HEALTHCHECK")
    assert f"127.0.0.1:{cfg.admin_port}{HEALTH_PATH}" in health
    assert cfg.admin_port == DEFAULT_PORTS["admin"]
    assert "STOPSIGNAL" not in words or ("STOPSIGNAL", "SIGTERM") in ins


# -- compose.yaml ------------------------------------------------------------------------------


def compose_env(raw: dict[str, Any]) -> dict[str, str]:
    """Compose interpolation of ``${VAR:-default}`` with nothing set: the default."""
    out = {}
    for key, value in raw.items():
        text = str(value)
        out[key] = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)
        assert "$" not in out[key], f"{key}: unresolved {text}"
    return out


def test_compose_three_node_cluster() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert len(services) == 3
    peer_sets = set()
    ids = set()
    for name, svc in services.items():
        env = compose_env(svc["environment"])
        check_environ({k: v for k, v in env.items() if k.startswith("POLYMQ_")})
        cfg = serve_config(list(svc["command"]), env)
        peers = config.parse_peers(cfg.peers)
        ids.add(cfg.node_id)
        peer_sets.add(cfg.peers)
        assert peers[cfg.node_id] == (name, CLUSTER_PORT_DEFAULT), "a member is its service"
        assert cfg.cluster_port in (0, CLUSTER_PORT_DEFAULT)
        assert {port for _host, port in peers.values()} == {CLUSTER_PORT_DEFAULT}
        container_ports = {int(str(p).rsplit(":", 1)[1]) for p in svc["ports"]}
        defaults = {
            lname: cfg.listener_port(lname) for lname in DEFAULT_PORTS if lname in LISTENERS
        }
        assert container_ports <= {p for p in defaults.values() if p}
        assert defaults == {k: v for k, v in DEFAULT_PORTS.items() if k != "cluster"}
        mounts = [str(v).split(":", 1)[1] for v in svc["volumes"]]
        assert cfg.data_dir in mounts
        test = " ".join(str(t) for t in svc["healthcheck"]["test"])
        assert f"127.0.0.1:{cfg.admin_port}{HEALTH_PATH}" in test
    assert ids == set(services) and len(peer_sets) == 1
    assert set(config.parse_peers(peer_sets.pop())) == ids
    volumes = {str(v).split(":", 1)[0] for svc in services.values() for v in svc["volumes"]}
    assert volumes <= set(doc["volumes"]) and len(volumes) == 3


# -- Kubernetes ----------------------------------------------------------------------------------


def k8s_objects() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "polymq.yaml").read_text())]
    return {d["kind"]: d for d in docs if d}


def test_kubernetes_statefulset(tmp_path: Path) -> None:
    objs = k8s_objects()
    assert set(objs) == {"ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget"}
    sts, svc, cm, pdb = (
        objs["StatefulSet"],
        objs["Service"],
        objs["ConfigMap"],
        objs["PodDisruptionBudget"],
    )
    spec = sts["spec"]
    replicas = spec["replicas"]
    assert replicas >= 3 and replicas % 2 == 1
    assert spec["serviceName"] == svc["metadata"]["name"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    pod = spec["template"]
    labels = pod["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] == replicas // 2 + 1, "a majority stays up"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True

    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    by_name = {"aws": "http", "mqtt-ws": "mqtt_ws", "stomp-ws": "stomp_ws"}
    assert {by_name.get(n, n): p for n, p in ports.items()} == DEFAULT_PORTS
    service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert service_ports == {n: (p, n) for n, p in ports.items()}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == HEALTH_PATH and ports[get["port"]] == DEFAULT_PORTS["admin"]

    # the configuration file comes from the ConfigMap, mounted where --config points
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    args = [str(a) for a in container["args"]]
    conf_path = Path(args[args.index("--config") + 1])
    config_volume = next(v for v in pod["spec"]["volumes"] if "configMap" in v)
    assert config_volume["configMap"]["name"] == cm["metadata"]["name"]
    assert Path(mounts[config_volume["name"]]) == conf_path.parent
    (tmp_path / conf_path.name).write_text(cm["data"][conf_path.name])
    args[args.index("--config") + 1] = str(tmp_path / conf_path.name)
    env = {}
    for item in container["env"]:
        if item["name"].startswith("POLYMQ_"):
            env[item["name"]] = str(item.get("value", "from-a-secret"))
    check_environ(env)
    template_names = {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
    assert {m["name"] for m in container["volumeMounts"]} - {config_volume["name"]} <= (
        template_names
    )
    # each pod, with $(POD_NAME) as Kubernetes expands it, is a member of the peers
    name = sts["metadata"]["name"]
    for i in range(replicas):
        pod_name = f"{name}-{i}"
        cfg = serve_config([a.replace("$(POD_NAME)", pod_name) for a in args], env)
        peers = config.parse_peers(cfg.peers)
        assert set(peers) == {f"{name}-{j}" for j in range(replicas)}
        assert peers[pod_name] == (f"{pod_name}.{spec['serviceName']}", ports["cluster"])
        assert cfg.admin_port == ports["admin"] and cfg.amqp_port == ports["amqp"]
        assert cfg.data_dir == mounts["data"]
        assert not cfg.default_user_loopback_only


# -- systemd -----------------------------------------------------------------------------------


def test_systemd_unit() -> None:
    sections: dict[str, dict[str, list[str]]] = {}
    current = ""
    for raw in (DEPLOY / "polymq.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, _, value = line.partition("=")
        sections[current].setdefault(key, []).append(value)
    service = sections["Service"]
    assert service["User"][0] not in ("root", "0")
    assert service["KillSignal"] == ["SIGTERM"]
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]
    env: dict[str, str] = {}
    for value in service.get("Environment", []):
        for item in shlex.split(value):
            key, _, val = item.partition("=")
            env[key] = val
    check_environ(env)
    (exec_start,) = service["ExecStart"]
    argv = shlex.split(exec_start)
    assert Path(argv[0]).name == "polymq"
    args = cli._parser().parse_args(argv[1:])
    assert args.command == "serve"
    flags = cli._flags(args)
    cfg = config.build(environ=env, flags=flags)  # the --config file is the admin's own
    assert cfg.admin_port == DEFAULT_PORTS["admin"]
    assert service["ReadWritePaths"] == [str(Path(cfg.data_dir).parent)]
