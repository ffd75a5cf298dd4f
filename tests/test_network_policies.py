"""The network of ``deploy/k8s``, checked against the code: the NetworkPolicies allow exactly the calls the
services' peer settings make (and the backing stores, the ingress controller and Prometheus), and the
Ingress routes order-api's public API and the Telegram webhook, nothing internal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from order_api.main import create_app as create_order_api
from order_api.settings import Settings as OrderApiSettings
from servicekit.openapi import documents_of
from servicekit.settings import PeerSettings
from telegram_gateway.bot.webhook import router as webhook_router

K8S_DIR = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
NAMESPACE = "exchange-desk"


class Service(NamedTuple):
    name: str
    package: str
    port: int


SERVICES = [
    Service("order-api", "order_api", 8001),
    Service("wallet-pool", "wallet_pool", 8002),
    Service("notifier", "notifier", 8003),
    Service("telegram-gateway", "telegram_gateway", 8004),
]
BY_NAME = {svc.name: svc for svc in SERVICES}
Labels = dict[str, str]


def documents() -> Iterator[dict[str, Any]]:
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            yield from (d for d in yaml.safe_load_all(path.read_text()) if d)


@pytest.fixture(scope="module")
def policies() -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == "NetworkPolicy"]


@pytest.fixture(scope="module")
def pods() -> dict[str, Labels]:
    """The labels of every pod the manifests create, by workload."""
    found: dict[str, Labels] = {}
    for document in documents():
        spec = document.get("spec", {})
        template = spec.get("jobTemplate", {}).get("spec", spec).get("template")
        if document["kind"] in ("Deployment", "Job", "CronJob") and template:
            found[f"{document['kind']} {document['metadata']['name']}"] = template["metadata"]["labels"]
    return found


def call_graph() -> set[tuple[str, str]]:
    """Who calls whom, from the code: each service's ``PeerSettings`` fields (``<PREFIX>_<PEER>__URL``)."""
    edges = set()
    for svc in SERVICES:
        settings = __import__(f"{svc.package}.settings", fromlist=["Settings"]).Settings
        for name, field in settings.model_fields.items():
            if field.annotation is PeerSettings:
                peer = name.replace("_", "-")
                assert peer in BY_NAME, f"{svc.name}.{name} names no known service"
                edges.add((svc.name, peer))
    return edges


def selects(selector: dict[str, Any] | None, labels: Labels) -> bool:
    assert "matchExpressions" not in (selector or {}), "only matchLabels is understood here"
    wanted: Labels = (selector or {}).get("matchLabels", {})
    return wanted.items() <= labels.items()


def peer_matches(peer: dict[str, Any], labels: Labels | None, namespace: str) -> bool:
    """Whether a ``from``/``to`` entry covers a pod (``labels``, in ``namespace``) or, with ``labels`` None,
    an address outside the cluster."""
    if "ipBlock" in peer:
        return True  # any address, pods included: only the rule's ports keep it narrow
    if labels is None:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}):
            return False
    elif namespace != NAMESPACE:
        return False
    return selects(peer.get("podSelector"), labels)


def rule_allows(rule: dict[str, Any], side: str, labels: Labels | None, namespace: str, port: int) -> bool:
    ports = rule.get("ports")
    if ports is not None and not any(p.get("protocol", "TCP") == "TCP" and p["port"] == port for p in ports):
        return False
    peers = rule.get(side)
    return peers is None or any(peer_matches(peer, labels, namespace) for peer in peers)


def allows(
    policies: list[dict[str, Any]],
    direction: str,
    pod: Labels,
    other: Labels | None,
    namespace: str,
    port: int,
) -> bool:
    """Whether ``pod`` may send (``Egress``) to, or receive (``Ingress``) from, ``other`` on ``port``: some
    policy selecting it allows it (default deny selects every pod)."""
    side = "to" if direction == "Egress" else "from"
    selecting = [
        p
        for p in policies
        if selects(p["spec"]["podSelector"], pod) and direction in p["spec"]["policyTypes"]
    ]
    assert selecting, f"no {direction} policy selects {pod}: the default deny is missing"
    rules = [rule for p in selecting for rule in p["spec"].get(direction.lower(), [])]
    return any(rule_allows(rule, side, other, namespace, port) for rule in rules)


def service_labels(pods: dict[str, Labels], name: str) -> Labels:
    return pods[f"Deployment {name}"]


def test_policies_allow_exactly_the_calls_the_peer_settings_make(
    policies: list[dict[str, Any]], pods: dict[str, Labels]
) -> None:
    graph = call_graph()
    assert graph == {
        ("order-api", "wallet-pool"),
        ("order-api", "notifier"),
        ("wallet-pool", "order-api"),
        ("wallet-pool", "notifier"),
        ("notifier", "telegram-gateway"),
        ("telegram-gateway", "order-api"),
        ("telegram-gateway", "wallet-pool"),
    }, "the services' peers changed: update network-policies.yaml, then this list"
    allowed = set()
    for source_workload, source in pods.items():
        for target in SERVICES:
            target_labels = service_labels(pods, target.name)
            if source == target_labels:
                continue
            sends = allows(policies, "Egress", source, target_labels, NAMESPACE, target.port)
            receives = allows(policies, "Ingress", target_labels, source, NAMESPACE, target.port)
            if sends and receives:
                allowed.add((source_workload, target.name))
    assert allowed == {(f"Deployment {caller}", callee) for caller, callee in graph}


@pytest.mark.parametrize(("port", "what"), [(53, "DNS"), (5432, "PostgreSQL"), (6379, "Redis")])
def test_every_pod_reaches_names_and_the_backing_stores(
    policies: list[dict[str, Any]], pods: dict[str, Labels], port: int, what: str
) -> None:
    dns = {"k8s-app": "kube-dns"}
    for workload, labels in pods.items():
        target, namespace = (dns, "kube-system") if port == 53 else (None, "anywhere")
        assert allows(policies, "Egress", labels, target, namespace, port), f"{workload} cannot reach {what}"


def test_every_pod_sends_traces_to_the_collector(
    policies: list[dict[str, Any]], pods: dict[str, Labels]
) -> None:
    collector = {"app.kubernetes.io/name": "otel-collector"}
    for workload, labels in pods.items():
        assert allows(policies, "Egress", labels, collector, "observability", 4318), workload


@pytest.mark.parametrize(
    ("namespace", "reaches"),
    [
        ("ingress-nginx", {"order-api", "telegram-gateway"}),
        ("monitoring", {svc.name for svc in SERVICES}),
        (NAMESPACE, set()),  # a pod of the namespace that is none of the services: nothing
    ],
)
def test_only_the_ingress_controller_and_prometheus_come_in_from_outside(
    policies: list[dict[str, Any]], pods: dict[str, Labels], namespace: str, reaches: set[str]
) -> None:
    stranger = {"app.kubernetes.io/name": "someone-else"}
    reached = {
        svc.name
        for svc in SERVICES
        if allows(policies, "Ingress", service_labels(pods, svc.name), stranger, namespace, svc.port)
    }
    assert reached == reaches


def test_the_ingress_controller_reaches_cert_managers_http01_solver_and_nobody_else_does(
    policies: list[dict[str, Any]],
) -> None:
    """Without it the default deny drops the CA's challenge and the Ingress's certificate is never issued."""
    solver = {"acme.cert-manager.io/http01-solver": "true"}
    controller = {"app.kubernetes.io/name": "ingress-nginx"}
    assert allows(policies, "Ingress", solver, controller, "ingress-nginx", 8089)
    assert not allows(policies, "Ingress", solver, controller, "monitoring", 8089)
    assert not allows(policies, "Ingress", solver, {"app.kubernetes.io/name": "order-api"}, NAMESPACE, 8089)
    assert not allows(policies, "Ingress", solver, controller, "ingress-nginx", 8001)


# --- Ingress ------------------------------------------------------------------------------------------------


def ingress_routes() -> list[tuple[str, str, str]]:
    """``(path, pathType, service)`` of every Ingress rule."""
    routes = []
    for document in documents():
        if document["kind"] == "Ingress":
            spec = document["spec"]
            hosts = {host for tls in spec["tls"] for host in tls["hosts"]}
            assert "cert-manager.io/cluster-issuer" in document["metadata"]["annotations"]
            for rule in spec["rules"]:
                assert rule["host"] in hosts, f"{rule['host']} has no TLS"
                for path in rule["http"]["paths"]:
                    routes.append((path["path"], path["pathType"], path["backend"]["service"]["name"]))
    return routes


def routed_to(path: str) -> set[str]:
    return {
        service
        for prefix, kind, service in ingress_routes()
        if path == prefix or (kind == "Prefix" and path.startswith(prefix.rstrip("/") + "/"))
    }


def test_the_ingress_routes_order_apis_public_api_and_nothing_internal(tmp_path: Path) -> None:
    app = create_order_api(OrderApiSettings(var_dir=tmp_path))
    public = set(app.openapi()["paths"])
    internal = set(documents_of(app).internal()["paths"]) - public
    operational = {"/health/live", "/health/ready", "/metrics"}
    assert internal, "the internal routes are found"
    for path in public - operational:
        assert routed_to(path) == {"order-api"}, path
    for path in internal | operational | {"/docs", "/redoc", "/openapi.json", "/openapi.internal.json"}:
        assert routed_to(path) == set(), f"{path} must not be reachable from outside"


def test_the_ingress_routes_the_telegram_webhook_to_the_gateway_alone() -> None:
    webhook_paths = {route.path for route in webhook_router.routes if hasattr(route, "path")}
    assert webhook_paths == {"/telegram/webhook"}
    assert routed_to("/telegram/webhook") == {"telegram-gateway"}
    assert [service for *_, service in ingress_routes()].count("telegram-gateway") == 1
