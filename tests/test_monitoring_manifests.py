"""The optional Prometheus Operator kustomization (``deploy/k8s/monitoring``), checked offline: its ServiceMonitor
against the operator's own CRD schema (vendored in ``tests/schemas``; kubernetes-validate knows no CRDs), with
unknown fields refused as a strict apply would, and against the base it scrapes: every Service it selects is
one of the desk's, each has the port it scrapes, and the series get the ``job`` and ``service`` labels the
dashboards and alerting rules use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # check-jsonschema's, a dev dependency; no stubs
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "deploy" / "k8s"
MONITORING = BASE / "monitoring"
SCHEMA = ROOT / "tests" / "schemas" / "servicemonitor-v1.json"
SERVICES = {"order-api", "wallet-pool", "notifier", "telegram-gateway"}


def documents(directory: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += [document for document in yaml.safe_load_all(path.read_text()) if document]
    return found


def kustomization(directory: Path) -> dict[str, Any]:
    loaded = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def common_labels(directory: Path) -> dict[str, str]:
    """The labels a kustomization puts on every resource's metadata."""
    return {
        key: value
        for entry in kustomization(directory).get("labels", [])
        for key, value in entry["pairs"].items()
    }


def strict(schema: Any) -> Any:
    """The CRD schema refusing fields it does not define (the API server prunes them silently; a strict apply,
    like ``kubernetes-validate --strict`` for built-in kinds, refuses them)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    return schema


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = strict(json.loads(SCHEMA.read_text()))
    schema["properties"]["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "labels": {"type": "object"}},
    }
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def service_monitor() -> dict[str, Any]:
    (monitor,) = [document for document in documents(MONITORING) if document["kind"] == "ServiceMonitor"]
    return monitor


def test_the_monitoring_kustomization_is_separate_from_the_base() -> None:
    monitoring = kustomization(MONITORING)
    assert monitoring["resources"] == ["servicemonitor.yaml"]
    assert {path.name for path in MONITORING.glob("*.yaml")} == {"kustomization.yaml", "servicemonitor.yaml"}
    assert monitoring["namespace"] == kustomization(BASE)["namespace"]
    base_resources = kustomization(BASE)["resources"]
    assert not [resource for resource in base_resources if "monitoring" in resource], (
        "the base must apply where the Prometheus Operator's CRDs are absent"
    )
    assert not [document for document in documents(BASE) if document["apiVersion"].startswith("monitoring.")]


def test_the_service_monitor_follows_the_operators_crd_schema(
    service_monitor: dict[str, Any], validator: Any
) -> None:
    assert service_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    errors = [
        f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(service_monitor)
    ]
    assert not errors


def test_the_schema_check_refuses_a_misspelt_or_mistyped_field(
    service_monitor: dict[str, Any], validator: Any
) -> None:
    misspelt = json.loads(json.dumps(service_monitor))
    misspelt["spec"]["endpoints"][0]["scrapeInterval"] = "15s"
    assert not validator.is_valid(misspelt)
    mistyped = json.loads(json.dumps(service_monitor))
    mistyped["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert not validator.is_valid(mistyped)


def test_it_scrapes_every_desk_service_with_the_labels_the_dashboards_use(
    service_monitor: dict[str, Any],
) -> None:
    spec = service_monitor["spec"]
    base_labels = common_labels(BASE)
    services = {
        document["metadata"]["name"]: document
        for document in documents(BASE)
        if document["kind"] == "Service"
    }
    selected = {
        name
        for name, service in services.items()
        if spec["selector"]["matchLabels"].items()
        <= (base_labels | service["metadata"].get("labels", {})).items()
    }
    assert selected >= SERVICES
    (endpoint,) = spec["endpoints"]
    for name in selected:
        ports = {port.get("name") for port in services[name]["spec"]["ports"]}
        assert endpoint["port"] in ports, f"Service {name} has no port {endpoint['port']}"
    assert endpoint["path"] == "/metrics"
    assert spec["namespaceSelector"]["matchNames"] == [kustomization(BASE)["namespace"]]

    # job="exchange-desk" as in compose's Prometheus (the alerting rules select it); `service` is the
    # Service's name, which the operator adds to every target
    compose_prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    desk_jobs = [
        job["job_name"] for job in compose_prometheus["scrape_configs"] if job["job_name"] != "prometheus"
    ]
    assert [base_labels[spec["jobLabel"]]] == desk_jobs


def test_it_reads_metrics_with_a_key_from_a_secret(service_monitor: dict[str, Any]) -> None:
    """In production /metrics answers only a metrics:read key (the services' default)."""
    (endpoint,) = service_monitor["spec"]["endpoints"]
    authorization = endpoint["authorization"]
    assert authorization["type"] == "Bearer"
    secret = authorization["credentials"]
    assert (secret["name"], secret["key"]) == ("exchange-desk-metrics-reader", "token")
    assert "exchange-desk-metrics-reader" in (ROOT / "deploy" / "README.md").read_text()
