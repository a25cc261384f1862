"""deploy/k8s builds with kustomize and every object validates, strictly, against the schemas of
the Kubernetes version .env names (kubeconform); and the manifests agree with the service: the
probes speak gRPC health, the grace period covers the drain, selectors select the pods, every
USER_SERVICE_* variable is a real setting."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.k8s_schemas import write_standalone
from tests.conftest import require_tool
from tests.stack.conftest import env_versions
from user_service.config import ServerSettings

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy/k8s/base"


@pytest.fixture(scope="module")
def built() -> str:
    kustomize = require_tool("kustomize")
    return subprocess.run([kustomize, "build", str(BASE)], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def objects(built: str) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in yaml.safe_load_all(built) if o}


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("k8s-schemas")
    write_standalone(env_versions()["KUBERNETES_VERSION"], directory)
    return directory


def _kubeconform(manifests: str, schemas: Path) -> subprocess.CompletedProcess[str]:
    command = [
        require_tool("kubeconform"),
        "-strict",
        "-summary",
        "-kubernetes-version", env_versions()["KUBERNETES_VERSION"],
        "-schema-location", str(schemas),
        "-",
    ]  # fmt: skip
    return subprocess.run(command, input=manifests, capture_output=True, text=True)


def test_every_object_validates_strictly_against_the_named_kubernetes_version(
    built: str, objects: dict[str, dict[str, Any]], schemas: Path
) -> None:
    result = _kubeconform(built, schemas)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Valid: {len(objects)}, Invalid: 0, Errors: 0, Skipped: 0" in result.stdout
    assert set(objects) == {
        "ServiceAccount/user-service",
        "Deployment/user-service",
        "Service/user-service",
        "Service/user-service-headless",
        "HorizontalPodAutoscaler/user-service",
        "PodDisruptionBudget/user-service",
    }


def test_the_validation_rejects_an_unknown_field(built: str, schemas: Path) -> None:
    typo = built.replace("maxUnavailable: 0", "maxUnavailable: 0\n      maxUnavaliable: 0", 1)
    result = _kubeconform(typo, schemas)
    assert result.returncode == 1
    assert "additional properties 'maxUnavaliable' not allowed" in result.stdout


def _container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = objects["Deployment/user-service"]["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {entry["name"]: entry.get("value", entry.get("valueFrom")) for entry in container["env"]}


def test_probes_are_native_grpc_health_checks(objects: dict[str, dict[str, Any]]) -> None:
    container = _container(objects)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == 50051, probe
    assert container["readinessProbe"]["grpc"]["service"] == "user.v1.UserService"


def test_termination_grace_covers_drain_delay_and_grace_period(objects: dict[str, dict[str, Any]]) -> None:
    env = _env(_container(objects))
    pod = objects["Deployment/user-service"]["spec"]["template"]["spec"]
    needed = float(env["USER_SERVICE_DRAIN_DELAY"]) + float(env["USER_SERVICE_GRACE_PERIOD"])
    assert pod["terminationGracePeriodSeconds"] > needed


def test_the_database_url_comes_from_a_secret_and_every_variable_is_a_setting(
    objects: dict[str, dict[str, Any]],
) -> None:
    env = _env(_container(objects))
    assert env["USER_SERVICE_DATABASE_URL"] == {
        "secretKeyRef": {"name": "user-service-database", "key": "url"}
    }
    unknown = {name for name in env if name.startswith("USER_SERVICE_")} - {
        f"USER_SERVICE_{field.upper()}" for field in ServerSettings.model_fields
    }
    assert not unknown, f"not settings of the service: {unknown}"


def test_services_budget_and_autoscaler_select_the_server_pods(objects: dict[str, dict[str, Any]]) -> None:
    deployment = objects["Deployment/user-service"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for name in ("Service/user-service", "Service/user-service-headless"):
        assert objects[name]["spec"]["selector"].items() <= pod_labels.items(), name
    assert objects["Service/user-service-headless"]["spec"]["clusterIP"] == "None"
    assert (
        objects["PodDisruptionBudget/user-service"]["spec"]["selector"]["matchLabels"].items()
        <= pod_labels.items()
    )
    target = objects["HorizontalPodAutoscaler/user-service"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "user-service")


def test_scrape_annotations_name_the_metrics_port(objects: dict[str, dict[str, Any]]) -> None:
    annotations = objects["Deployment/user-service"]["spec"]["template"]["metadata"]["annotations"]
    ports = {port["name"]: port["containerPort"] for port in _container(objects)["ports"]}
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
