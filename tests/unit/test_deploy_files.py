"""The deployment files under assets/deploy/, checked without Docker or a cluster.

The image cannot be built here (no Docker daemon) and no cluster is at hand, so this reads the
files and holds them to what they promise: every Kubernetes manifest against the API's own
OpenAPI schemas (kubernetes-validate bundles them; strict, so an unknown field fails), the
probes, drain, resources, labels, ports and volumes against one another and against the
service's code, and the Dockerfile against the Makefile and pyproject.toml (the torch pin and
its order, the `serve` group), the manifests' port and user.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]

from engine.cli.serve import DRAIN_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "assets" / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
MANIFESTS = sorted((DEPLOY / "kubernetes").rglob("*.yaml"))

# The oldest Kubernetes the manifests are for (autoscaling/v2, generic ephemeral volumes and
# startup probes are all GA there), and the newest the bundled schemas know.
K8S_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
WORKLOAD_KINDS = ("Deployment", "StatefulSet")

Doc = dict[str, Any]


# --- reading the files ---------------------------------------------------------------------


@functools.cache
def _docs(path: Path) -> tuple[Doc, ...]:
    return tuple(doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None)


def _all_docs() -> list[tuple[Path, Doc]]:
    return [(path, doc) for path in MANIFESTS for doc in _docs(path)]


def _one(kind: str) -> Doc:
    found = [doc for _, doc in _all_docs() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} under assets/deploy/kubernetes, got {len(found)}"
    return found[0]


def _workloads() -> list[Doc]:
    return [doc for _, doc in _all_docs() if doc["kind"] in WORKLOAD_KINDS]


def _container(workload: Doc) -> Doc:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per pod: the service"
    container: Doc = containers[0]
    return container


def _http_port(container: Doc) -> Doc:
    (port,) = (p for p in container["ports"] if p.get("name") == "http")
    return port  # type: ignore[no-any-return]


def _resolve_port(container: Doc, port: int | str) -> int:
    """A probe's or a Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    assert named, f"no container port named {port!r}"
    return int(named[0])


def _flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} given {args.count(name)} times in {args}"
    return args[args.index(name) + 1]


@functools.cache
def _dockerfile() -> tuple[tuple[str, str], ...]:
    """(INSTRUCTION, value) pairs in order, comments left out, continuation lines joined."""
    parser = DockerfileParser(fileobj=io.BytesIO(DOCKERFILE.read_bytes()))
    return tuple(
        (item["instruction"], item["value"])
        for item in parser.structure
        if item["instruction"] != "COMMENT"
    )


def _instructions(name: str) -> list[str]:
    return [value for instruction, value in _dockerfile() if instruction == name]


def _last(name: str) -> str:
    values = _instructions(name)
    assert values, f"the Dockerfile has no {name}"
    return values[-1]


def _exec_form(value: str) -> list[str]:
    """A JSON array of strings (exec form), or a failed assertion (shell form)."""
    try:
        words = json.loads(value)
    except json.JSONDecodeError:
        words = None
    assert isinstance(words, list), f"not exec form: {value}"
    assert all(isinstance(w, str) for w in words), f"not exec form: {value}"
    return words


def _run_commands() -> list[str]:
    """Each command of each RUN, split at `&&`, in order, whitespace normalised."""
    return [
        " ".join(part.split())
        for value in _instructions("RUN")
        for part in value.split("&&")
        if part.strip()
    ]


def _makefile_torch_install() -> str:
    """The Makefile's torch install line for the project's own environment, without its
    `$(BIN)/` prefix (the MLServer benchmark's environment has its own)."""
    lines = [
        line.strip()
        for line in (ROOT / "Makefile").read_text().splitlines()
        if "torch==" in line and line.strip().startswith("$(BIN)/")
    ]
    assert len(lines) == 1, f"expected one torch install in the Makefile, got {lines}"
    return lines[0].removeprefix("$(BIN)/")


def _pin(text: str) -> str:
    found = re.findall(r"torch==([\w.+]+)", text)
    assert len(found) == 1, f"expected one torch pin in {text!r}"
    return str(found[0])


def _pyproject() -> Doc:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


# --- the manifests ---------------------------------------------------------------------------


def test_manifests_are_there_and_parse() -> None:
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= {
        doc["kind"] for _, doc in _all_docs()
    }
    for path, doc in _all_docs():
        assert isinstance(doc, dict), path
        assert doc.get("apiVersion") and doc.get("kind"), path
        assert doc["metadata"]["name"] == "inferdeck-serve", path


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_manifest_matches_kubernetes_schema(path: Path, version: str) -> None:
    for doc in _docs(path):
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("spec", "bogus"), 1),  # an unknown field at the top of the spec
        (("spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "pth"), "/"),
        (("spec", "template", "spec", "terminationGracePeriodSeconds"), "45"),  # a wrong type
    ],
    ids=["unknown-field", "unknown-nested-field", "wrong-type"],
)
def test_schema_check_rejects_a_broken_manifest(where: tuple[str | int, ...], value: Any) -> None:
    """The schema check is live: the same Deployment, broken in one place, fails it."""
    doc = copy.deepcopy(_one("Deployment"))
    kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)
    node: Any = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("workload", _workloads(), ids=lambda d: d["kind"])
def test_probes_hit_ready_and_health_on_the_container_port(workload: Doc) -> None:
    container = _container(workload)
    port = _http_port(container)["containerPort"]
    assert int(_flag(container["args"], "--port")) == port
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/ready"
    assert liveness["path"] == "/health"
    assert _resolve_port(container, readiness["port"]) == port
    assert _resolve_port(container, liveness["port"]) == port
    if "startupProbe" in container:
        startup = container["startupProbe"]["httpGet"]
        assert startup["path"] == "/health"
        assert _resolve_port(container, startup["port"]) == port


@pytest.mark.parametrize("workload", _workloads(), ids=lambda d: d["kind"])
def test_grace_period_outlasts_the_pause_and_the_drain(workload: Doc) -> None:
    pod = workload["spec"]["template"]["spec"]
    container = _container(workload)
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        pause = float(pre_stop["sleep"]["seconds"])
    else:
        command = pre_stop["exec"]["command"]
        assert command[0] == "sleep", f"preStop should pause, got {command}"
        pause = float(command[1])
    assert 0 < pause <= 15
    assert pod["terminationGracePeriodSeconds"] > pause + DRAIN_TIMEOUT_S


@pytest.mark.parametrize("workload", _workloads(), ids=lambda d: d["kind"])
def test_resources_are_requested_and_limited(workload: Doc) -> None:
    resources = _container(workload)["resources"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[bound]), f"{bound}: {resources[bound]}"


@pytest.mark.parametrize("workload", _workloads(), ids=lambda d: d["kind"])
def test_runs_as_the_images_non_root_user(workload: Doc) -> None:
    pod = workload["spec"]["template"]["spec"]
    container = _container(workload)
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert context["runAsNonRoot"] is True
    assert context.get("runAsUser", 0) != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert str(context["runAsUser"]) == _dockerfile_user().split(":")[0]


@pytest.mark.parametrize("workload", _workloads(), ids=lambda d: d["kind"])
def test_workers_argument_is_given(workload: Doc) -> None:
    assert int(_flag(_container(workload)["args"], "--workers")) >= 1


@pytest.mark.parametrize("workload", _workloads(), ids=lambda d: d["kind"])
def test_selector_matches_the_pod_labels(workload: Doc) -> None:
    selector = workload["spec"]["selector"]["matchLabels"]
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert selector
    assert selector.items() <= labels.items()


@pytest.mark.parametrize("workload", _workloads(), ids=lambda d: d["kind"])
def test_prometheus_scrapes_metrics_on_the_container_port(workload: Doc) -> None:
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    port = _http_port(_container(workload))["containerPort"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


def _data_volume_name(workload: Doc) -> str:
    """The volume that holds the `--db` file: the one mounted on the file's folder."""
    container = _container(workload)
    folder = PurePosixPath(_flag(container["args"], "--db")).parent
    mounts = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) == folder]
    assert len(mounts) == 1, f"no volume mounted on the database's folder {folder}"
    assert not mounts[0].get("readOnly", False)
    return str(mounts[0]["name"])


def test_deployment_gives_each_pod_its_own_database_volume() -> None:
    """One writer per file: a generic ephemeral volume is a claim per pod, made and deleted
    with it; ReadWriteOnce keeps it on one node."""
    deployment = _one("Deployment")
    name = _data_volume_name(deployment)
    (volume,) = (v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == name)
    assert set(volume) == {"name", "ephemeral"}, f"the database volume is not per pod: {volume}"
    claim = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"]


def test_statefulset_gives_each_replica_its_own_claim() -> None:
    statefulsets = [doc for _, doc in _all_docs() if doc["kind"] == "StatefulSet"]
    assert len(statefulsets) == 1, "the README promises one StatefulSet variant"
    (statefulset,) = statefulsets
    name = _data_volume_name(statefulset)
    pod_volumes = statefulset["spec"]["template"]["spec"].get("volumes", [])
    assert name not in {v["name"] for v in pod_volumes}, "shared pod volume, not a claim"
    (template,) = statefulset["spec"]["volumeClaimTemplates"]
    assert template["metadata"]["name"] == name
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_service_selects_the_pods_and_targets_the_container_port() -> None:
    service = _one("Service")
    deployment = _one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"]
    assert service["spec"]["selector"].items() <= labels.items()
    container = _container(deployment)
    (port,) = service["spec"]["ports"]
    assert _resolve_port(container, port["targetPort"]) == _http_port(container)["containerPort"]


def test_autoscaler_scales_the_deployment_on_cpu() -> None:
    hpa = _one("HorizontalPodAutoscaler")
    deployment = _one("Deployment")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource"
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


# --- the Dockerfile --------------------------------------------------------------------------


def _dockerfile_user() -> str:
    return _last("USER")


def test_image_is_slim_python_311() -> None:
    (base,) = _instructions("FROM")
    assert base == "python:3.11-slim"


def test_image_runs_as_non_root() -> None:
    user = _dockerfile_user()
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user}: numeric, so runAsNonRoot can check it"
    assert int(uid) != 0


def test_torch_goes_in_first_exactly_as_the_makefile_installs_it() -> None:
    makefile = _makefile_torch_install()
    commands = _run_commands()
    assert makefile in commands, f"{makefile!r} is not a RUN command of the Dockerfile"
    torch_at = commands.index(makefile)
    project_at = [i for i, c in enumerate(commands) if re.search(r"pip install .*\"\.\[", c)]
    assert project_at, "the project is not installed"
    assert torch_at < project_at[0]


def test_torch_pin_is_the_same_everywhere() -> None:
    (dependency,) = (d for d in _pyproject()["project"]["dependencies"] if d.startswith("torch"))
    pins = {
        "Makefile": _pin(_makefile_torch_install()),
        "pyproject.toml": _pin(dependency),
        "Dockerfile": _pin(" ; ".join(c for c in _run_commands() if "torch" in c)),
    }
    assert len(set(pins.values())) == 1, pins


def test_project_installed_with_the_serve_group_only() -> None:
    installs = [c for c in _run_commands() if re.search(r"pip install .*\"\.\[", c)]
    assert len(installs) == 1, installs
    extras = re.findall(r"\"\.\[([^\]]*)\]\"", installs[0])
    assert extras == ["serve"]
    assert "serve" in _pyproject()["project"]["optional-dependencies"]
    everything = " ".join(_run_commands()).lower()
    for unwanted in ("desktop", "dev]", "pyside"):
        assert unwanted not in everything


def test_healthcheck_asks_health_on_the_exposed_port() -> None:
    options, _, command = _last("HEALTHCHECK").partition("CMD")
    assert all(word.startswith("--") for word in options.split()), options
    words = _exec_form(command.strip())
    url = re.search(r"http://[\w.]+:(\d+)(/[\w/]*)", " ".join(words))
    assert url, f"no URL in {words}"
    assert url.group(2) == "/health"
    assert int(url.group(1)) == _exposed_port()


def test_stops_with_sigterm() -> None:
    assert _last("STOPSIGNAL") == "SIGTERM"


def test_entrypoint_and_cmd_are_exec_form() -> None:
    entrypoint = _exec_form(_last("ENTRYPOINT"))
    cmd = _exec_form(_last("CMD"))
    assert entrypoint == ["inferdeck", "serve"]
    assert "inferdeck" in _pyproject()["project"]["scripts"]
    assert _flag(cmd, "--host") == "0.0.0.0"
    assert int(_flag(cmd, "--port")) == _exposed_port()
    db_folder = PurePosixPath(_flag(cmd, "--db")).parent
    volumes = [PurePosixPath(v) for value in _instructions("VOLUME") for v in _exec_form(value)]
    assert db_folder in volumes


def _exposed_port() -> int:
    (value,) = _instructions("EXPOSE")
    (port,) = shlex.split(value)
    return int(port.removesuffix("/tcp"))


def test_exposed_port_is_the_manifests_container_port() -> None:
    for workload in _workloads():
        assert _http_port(_container(workload))["containerPort"] == _exposed_port()
