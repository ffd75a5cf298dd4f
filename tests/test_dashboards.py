"""The Grafana dashboards (``deploy/grafana/dashboards/*.json``) and their provisioning in compose: each file is
a Grafana dashboard (the shape Grafana loads: ids, grid, targets, variables), every PromQL query parses
(``promtool``), and every metric a query reads is one the services export, as found by starting the four apps
in-process and scraping their ``/metrics`` after a few requests."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from servicekit.testing import running_app

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PACKAGES = ["order_api", "wallet_pool", "notifier", "telegram_gateway"]

PROMETHEUS_SERIES = {"up"}
"""Series Prometheus writes itself for every scrape target (no service exports them)."""

PANEL_TYPES = {"row", "timeseries", "stat"}

# --- reading metric names out of PromQL ----------------------------------------------------------------------

GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
MATCHERS = re.compile(r"\{[^{}]*\}")
RANGE = re.compile(r"\[[^\[\]]*\]")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
TOKEN = re.compile(
    r"(?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])*)"
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?P<call>\s*\()?"
)
KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
}
LABEL_VALUES = re.compile(r"^\s*label_values\((?P<args>.*)\)\s*$", re.S)


def with_variables_filled(expr: str) -> str:
    """Grafana's variables replaced as Grafana would before sending the query: intervals by a duration, the
    others by a value (they only ever stand in label values here)."""
    return GRAFANA_VARIABLE.sub(lambda m: "5m" if (m[1] or m[2]).startswith("__") else "x", expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: strings, label matchers, ranges and grouping clauses are
    dropped, and of what remains a name is a metric unless a call or a keyword (``rate(``, ``sum by``, ``and``)."""
    assert "__name__" not in expr, f"select metrics by name, not by a __name__ matcher: {expr}"
    text = STRING.sub('""', with_variables_filled(expr))
    text = MATCHERS.sub(" ", text)
    text = RANGE.sub(" ", text)
    text = GROUPING.sub(" ", text)
    names = set()
    for token in TOKEN.finditer(text):
        name = token["name"]
        if name and not token["call"] and name.lower() not in KEYWORDS:
            names.add(name)
    return names


def queried_metrics(query: str) -> set[str]:
    """The metrics a Grafana query reads: a PromQL expression, or a variable's ``label_values(<selector>,
    label)``."""
    match = LABEL_VALUES.match(query)
    if match is None:
        return metric_names(query)
    selector, _, _label = match["args"].rpartition(",")
    return metric_names(selector) if selector else set()


def test_metric_names_are_read_from_promql_as_prometheus_would() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (service, route, le) (rate(http_request_duration_seconds_bucket{route!="'
        '/v1/orders/{order_id}/events", service=~"$service"}[$__rate_interval])))\n'
        "  / on (service) group_left (route) max without (instance) (orders_open offset 1h)"
        ' > bool 1e3 and ignoring(le) topk(5, outbox_pending) or label_replace(vector(0), "a", "$1",'
        ' "b", "(.*)") unless up @ end() - 0x1F * wallet_pool_queue_length[5m:30s]'
    )
    assert metric_names(expr) == {
        "http_request_duration_seconds_bucket",
        "orders_open",
        "outbox_pending",
        "up",
        "wallet_pool_queue_length",
    }
    assert queried_metrics('label_values(http_requests_total{service="$service"}, route)') == {
        "http_requests_total"
    }
    assert queried_metrics("label_values(service)") == set()


# --- what the services export --------------------------------------------------------------------------------

SERIES_OF_TYPE = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}


def exported_series(exposition: str) -> set[str]:
    """Every series name a ``/metrics`` page offers PromQL: the samples present, and for a family with no
    sample yet (a labelled counter nothing has counted) the names its type gives it."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in SERIES_OF_TYPE.get(family.type, ("",))}
    return names


@pytest.fixture(scope="module")
async def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Per service, the series its ``/metrics`` offers after a few requests (embedded storage, workers
    running)."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        settings = importlib.import_module(f"{package}.settings").Settings(
            var_dir=tmp_path_factory.mktemp(package)
        )
        app = importlib.import_module(f"{package}.main").create_app(settings)
        async with running_app(app) as client:
            for path in ("/health/live", "/health/ready", "/no-such-route"):
                await client.get(path)
            await client.get("/metrics")
            page = await client.get("/metrics")
        assert page.status_code == 200, page.text
        found[package] = exported_series(page.text)
    return found


def test_the_services_export_the_metrics_the_desk_is_watched_by(exported: dict[str, set[str]]) -> None:
    every = set.intersection(*exported.values())
    assert {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "process_resident_memory_bytes",
    } <= every
    assert {
        "orders_open",
        "orders_untouched",
        "orders_untouched_oldest_seconds",
        "orders_created_total",
        "orders_closed_total",
        "order_take_seconds_bucket",
        "order_handling_seconds_bucket",
        "outbox_pending",
    } <= exported["order_api"]
    assert {
        "wallet_pool_free_wallets",
        "wallet_pool_queue_length",
        "wallet_pool_queue_oldest_wait_seconds",
    } <= exported["wallet_pool"]
    assert {"notifier_alerts_live", "notifier_delivery_queue_pending"} <= exported["notifier"]


# --- the dashboards ------------------------------------------------------------------------------------------


def load_dashboard(path: Path) -> dict[str, Any]:
    board = json.loads(path.read_text())
    assert isinstance(board, dict), path
    return board


def panels_of(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    panels: list[dict[str, Any]] = []
    for panel in board["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def queries_of(board: dict[str, Any]) -> list[tuple[str, str]]:
    """``(where, expr)`` for every panel target and every query variable."""
    found = [
        (f"{board['uid']} panel {panel['title']!r} {target['refId']}", target["expr"])
        for panel in panels_of(board)
        for target in panel.get("targets", [])
    ]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            found.append((f"{board['uid']} variable {variable['name']}", query.get("query", query)))
    return found


def test_there_are_dashboards() -> None:
    assert {path.name for path in DASHBOARDS} >= {"desk-overview.json", "service.json"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.stem for path in DASHBOARDS])
def test_each_dashboard_has_the_shape_grafana_loads(path: Path) -> None:
    board = load_dashboard(path)
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"]), "a stable uid: links and provisioning use it"
    assert board["title"]
    assert isinstance(board["schemaVersion"], int)
    assert {"from", "to"} <= set(board["time"])
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    panels = panels_of(board)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        where = f"{path.name}: {panel.get('title')!r}"
        assert panel["type"] in PANEL_TYPES, where
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) and grid[key] >= 0 for key in ("h", "w", "x", "y")), where
        assert min(grid["w"], grid["h"]) >= 1, where
        assert grid["x"] + grid["w"] <= 24, f"{where} is wider than the grid"
        cells = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not cells & occupied, f"{where} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["title"], where
        assert panel.get("description"), f"{where}: say what the panel shows"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        targets = panel["targets"]
        assert targets, f"{where} queries nothing"
        assert len({target["refId"] for target in targets}) == len(targets), where
        for target in targets:
            assert target["expr"].strip(), where
            assert target["datasource"] == panel["datasource"], where

    for where, expr in queries_of(board):
        for match in GRAFANA_VARIABLE.finditer(expr):
            name = match[1] or match[2]
            assert name.startswith("__") or name in variables, f"{where} uses undefined ${name}"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: run scripts/ensure-promtool.sh (make test does)")
    return subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True, timeout=60)


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each query, its variables filled as Grafana fills them, as a recording rule ``promtool`` checks."""
    rules = []
    for path in DASHBOARDS:
        for number, (_, query) in enumerate(queries_of(load_dashboard(path))):
            label_values = LABEL_VALUES.match(query)
            expr = label_values["args"].rpartition(",")[0] if label_values else query
            if expr:
                record = f"dashboard:{path.stem.replace('-', '_')}_{number}"
                rules.append({"record": record, "expr": with_variables_filled(expr)})
    rules_file = tmp_path / "dashboards.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    checked = promtool("check", "rules", rules_file)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.stem for path in DASHBOARDS])
def test_every_metric_a_dashboard_queries_is_exported(path: Path, exported: dict[str, set[str]]) -> None:
    available = set.union(*exported.values()) | PROMETHEUS_SERIES
    board = load_dashboard(path)
    queried = {name: where for where, expr in queries_of(board) for name in queried_metrics(expr)}
    missing = {name: where for name, where in queried.items() if name not in available}
    assert not missing, f"queried but exported by no service: {missing}"
    assert len(queried) >= 5


def test_every_metric_an_alerting_rule_queries_is_exported(exported: dict[str, set[str]]) -> None:
    """deploy/prometheus/alerts.yml watches series the services really export (a rule on a missing one never
    fires)."""
    available = set.union(*exported.values()) | PROMETHEUS_SERIES
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())["groups"]
    queried = {rule["alert"]: metric_names(rule["expr"]) for group in rules for rule in group["rules"]}
    missing = {alert: names - available for alert, names in queried.items() if names - available}
    assert not missing, f"alerting on series no service exports: {missing}"
    assert {"wallet_pool_queue_oldest_wait_seconds", "orders_untouched_oldest_seconds"} <= set().union(
        *queried.values()
    )


def test_a_misspelt_metric_is_caught(exported: dict[str, set[str]]) -> None:
    available = set.union(*exported.values())
    names = metric_names('sum by (route) (rate(http_request_total{service="$service"}[$__rate_interval]))')
    assert names == {"http_request_total"}
    assert names - available == {"http_request_total"}


def test_the_overview_answers_what_on_call_asks() -> None:
    """Orders per second, latency per route (p50/p95/p99), errors, pool levels and queue, outbox and delivery
    backlog, alerts."""
    board = load_dashboard(GRAFANA / "dashboards" / "desk-overview.json")
    exprs = [expr for _, expr in queries_of(board)]
    queried = set().union(*(queried_metrics(expr) for expr in exprs))
    assert {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "orders_open",
        "wallet_pool_free_wallets",
        "wallet_pool_queue_length",
        "outbox_pending",
        "outbox_oldest_pending_age_seconds",
        "notifier_delivery_queue_pending",
        "notifier_alerts_live",
        "notifier_alerts_total",
    } <= queried
    per_route = [expr for expr in exprs if "histogram_quantile" in expr and "route, le" in expr]
    assert {expr.split("(", 2)[1].split(",")[0] for expr in per_route} >= {"0.5", "0.95", "0.99"}
    assert any('route="/v1/orders"' in expr and 'method="POST"' in expr for expr in exprs), "orders/s"


# --- provisioning in compose ---------------------------------------------------------------------------------


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """``target: source`` of a compose service's bind mounts (short syntax)."""
    found = {}
    for volume in service.get("volumes") or []:
        source, target, *_ = str(volume).split(":")
        found[target] = source
    return found


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service["environment"]
    assert isinstance(environment, dict), "environment as a mapping"
    return {str(key): str(value) for key, value in environment.items()}


def test_compose_provisions_grafana_with_prometheus_and_the_dashboards() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    grafana = mounts(compose["grafana"])
    assert grafana["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"

    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert (source["type"], source["url"], source["isDefault"]) == (
        "prometheus",
        "http://prometheus:9090",
        True,
    )
    assert "prometheus" in compose

    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "exchange-desk.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert grafana[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    home = environment_of(compose["grafana"])["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    mount, _, name = home.rpartition("/")
    assert grafana[mount] == "./deploy/grafana/dashboards"
    assert name == "desk-overview.json", "the overview is Grafana's home page"
    assert (GRAFANA / "dashboards" / name).is_file()
