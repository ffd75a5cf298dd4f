"""Clients generated from order-api's OpenAPI document work, as a website's developer would generate them:
openapi-python-client's and openapi-typescript + openapi-fetch's. Each drives a live order-api through the
same flow (``clients/python/order_flow.py``, ``clients/typescript/src/order-flow.ts``): create an order
anonymously, read a 422 and a 404 as typed problems naming their fields, cancel with ``If-Match``. tsc
type-checks the TypeScript usage against the generated types before node runs it, so a change to the
document that breaks either client fails here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from desk_testing.stack import Stack
from order_api.main import create_app
from order_api.settings import Settings
from servicekit.testing import migrate_embedded

ROOT = Path(__file__).resolve().parents[1]
PYTHON_FLOW = ROOT / "clients" / "python" / "order_flow.py"
TYPESCRIPT = ROOT / "clients" / "typescript"
PYTHON_PACKAGE = "order_api_client"


def run(*argv: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    """Run a command; its output, or the test fails showing what it said."""
    done = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """order-api's public OpenAPI document, as its app factory makes it, in a file."""
    directory = tmp_path_factory.mktemp("openapi")
    path = directory / "order-api.json"
    path.write_text(json.dumps(create_app(Settings(var_dir=directory)).openapi()))
    return path


@pytest.fixture(scope="module")
async def order_api_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A live order-api on loopback (embedded SQLite). No wallet-pool answers, so an order is accepted
    ``awaiting_address``, and the customer may cancel it."""
    logs = tmp_path_factory.mktemp("order-api")
    await migrate_embedded(logs / "var", "order-api")
    order_api = Stack(database_url=None, logs=logs, var_dir=logs / "var").order_api()
    await order_api.start()
    try:
        yield order_api.url
    finally:
        await order_api.stop()


def assert_the_flow_worked(report: dict[str, Any]) -> None:
    """What either example reports after creating, failing twice, and cancelling."""
    created, cancelled = report["created"], report["cancelled"]
    assert created["status"] == "awaiting_address"
    assert created["sent"] == created["amount"] == "0.05"  # decimal strings, never floats
    assert report["invalid"] == {"status": 422, "code": "order_invalid", "fields": ["amount"]}
    assert report["missing"] == {"status": 404, "code": "order_not_found", "fields": []}
    assert cancelled == {"id": created["id"], "status": "cancelled", "version": created["version"] + 1}


def test_the_generated_python_client_type_checks_and_runs(
    document: Path, order_api_url: str, tmp_path: Path
) -> None:
    bin_dir = Path(sys.executable).parent
    run(
        bin_dir / "openapi-python-client",
        "generate",
        "--path",
        document,
        "--output-path",
        tmp_path / PYTHON_PACKAGE,
        "--meta",
        "none",
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},  # it formats what it writes with ruff
    )
    with_client = {"PYTHONPATH": str(tmp_path), "MYPYPATH": str(tmp_path)}
    # mypy reads the example against the generated client as tsc reads the TypeScript one
    run(
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--follow-imports=silent",
        PYTHON_FLOW,
        cwd=tmp_path,
        env=with_client,
    )
    output = run(sys.executable, PYTHON_FLOW, order_api_url, env=with_client)
    assert_the_flow_worked(json.loads(output))


def test_the_generated_typescript_client_type_checks_and_runs(
    document: Path, order_api_url: str, tmp_path: Path
) -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    assert not missing, f"Node.js 20+ and npm are needed for this test; not found: {missing}"
    assert (TYPESCRIPT / "node_modules" / ".bin" / "tsc").exists(), (
        "clients/typescript has no node_modules: `make clients` installs them (`make test` does too)"
    )
    # The example project as a developer has it, with its locked packages, generating from this document.
    project = tmp_path / "typescript"
    shutil.copytree(TYPESCRIPT, project, ignore=shutil.ignore_patterns("node_modules", "generated", "dist"))
    (project / "node_modules").symlink_to(TYPESCRIPT / "node_modules")
    quiet = {"npm_config_update_notifier": "false"}
    run("npm", "run", "--silent", "generate", cwd=project, env={**quiet, "ORDER_API_OPENAPI": str(document)})
    run("npm", "run", "--silent", "build", cwd=project, env=quiet)  # tsc: type-checks, then writes dist/
    output = run("node", project / "dist" / "src" / "order-flow.js", order_api_url)
    assert_the_flow_worked(json.loads(output))
