"""The sizing of ``deploy/k8s`` (deploy/README.md, "Sizing"): requests cover the memory measured, order-api
and wallet-pool scale on CPU, and every Deployment at its ceiling, mid-rollout, holds no more PostgreSQL
connections than the budget the namespace declares."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from dotenv import dotenv_values

from servicekit.settings import ServiceSettings

K8S_DIR = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
MEBI = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}


class Service(NamedTuple):
    name: str
    prefix: str
    peak_rss_mib: int
    """VmHWM after a burst of orders, measured as deploy/README.md says."""
    extra_connections: int = 0
    """Connections a replica opens besides its pool: order-api's LISTEN connection (its order streams)."""


SERVICES = [
    Service("order-api", "ORDER_API_", 133, extra_connections=1),
    Service("wallet-pool", "WALLET_POOL_", 125),
    Service("notifier", "NOTIFIER_", 131),
    Service("telegram-gateway", "TELEGRAM_GATEWAY_", 243),
]
IDS = [svc.name for svc in SERVICES]


def documents(directory: Path = K8S_DIR) -> Iterator[dict[str, Any]]:
    for path in sorted(directory.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            yield from (d for d in yaml.safe_load_all(path.read_text()) if d)


def find(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def autoscalers() -> dict[str, dict[str, Any]]:
    """HPAs by the Deployment they scale: those applied, and the examples one may apply."""
    found = {}
    for document in [*documents(), *documents(K8S_DIR / "examples")]:
        if document["kind"] == "HorizontalPodAutoscaler":
            target = document["spec"]["scaleTargetRef"]
            assert target["kind"] == "Deployment"
            found[target["name"]] = document
    return found


def config(svc: Service) -> dict[str, str]:
    """The service's ConfigMap data, from the manifest or from the env file a generator reads."""
    env_file = K8S_DIR / "config" / f"{svc.name}.env"
    if env_file.exists():
        return {key: value or "" for key, value in dotenv_values(env_file).items()}
    data: dict[str, str] = find("ConfigMap", f"{svc.name}-config")["data"]
    return data


def mebibytes(quantity: str) -> float:
    return float(quantity[:-2]) * MEBI[quantity[-2:]]


def cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def container(svc: Service) -> dict[str, Any]:
    pod = find("Deployment", svc.name)["spec"]["template"]["spec"]
    main: dict[str, Any] = next(c for c in pod["containers"] if c["name"] == svc.name)
    return main


@pytest.mark.parametrize("svc", SERVICES, ids=IDS)
def test_memory_requests_cover_the_measured_peak_with_room_to_burst(svc: Service) -> None:
    resources = container(svc)["resources"]
    request, limit = mebibytes(resources["requests"]["memory"]), mebibytes(resources["limits"]["memory"])
    assert request >= svc.peak_rss_mib * 1.2, "a request below what the service uses gets it evicted first"
    assert limit >= request * 1.5, "room for a larger burst than the one measured before the OOM killer"


@pytest.mark.parametrize("name", ["order-api", "wallet-pool"])
def test_the_services_on_every_orders_path_scale_on_a_realistic_cpu_request(name: str) -> None:
    hpa = autoscalers()[name]["spec"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 50 <= metric["resource"]["target"]["averageUtilization"] <= 80
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    request = cores(container(next(s for s in SERVICES if s.name == name))["resources"]["requests"]["cpu"])
    assert request >= 0.25, "a request far below what a replica spends makes the HPA scale on noise"


def connections_at_the_ceiling(svc: Service) -> tuple[int, str]:
    """A Deployment's PostgreSQL connections with every replica its autoscaler allows, plus the surge of a
    rollout, each holding a full pool."""
    deployment = find("Deployment", svc.name)["spec"]
    hpa = autoscalers().get(svc.name)
    replicas = hpa["spec"]["maxReplicas"] if hpa else deployment["replicas"]
    surge = deployment["strategy"]["rollingUpdate"]["maxSurge"]
    if isinstance(surge, str):
        surge = math.ceil(replicas * int(surge.rstrip("%")) / 100)
    settings = config(svc)
    pool = int(
        settings.get(
            f"{svc.prefix}DATABASE_POOL_SIZE", ServiceSettings.model_fields["database_pool_size"].default
        )
    )
    lease = 1 if settings.get(f"{svc.prefix}MODE") == "polling" else 0  # the gateway's poller lease
    per_pod = pool + svc.extra_connections + lease
    return (replicas + surge) * per_pod, f"{svc.name}: ({replicas} + {surge} surge) x {per_pod}"


def test_every_deployment_at_its_ceiling_fits_in_the_connection_budget() -> None:
    annotations = find("Namespace", "exchange-desk")["metadata"]["annotations"]
    budget = int(annotations["exchange-desk/postgresql-max-connections"]) - int(
        annotations["exchange-desk/postgresql-reserved-connections"]
    )
    counted = [connections_at_the_ceiling(svc) for svc in SERVICES]
    total = sum(count for count, _ in counted)
    assert total <= budget, f"{total} connections > {budget}: " + "; ".join(how for _, how in counted)
