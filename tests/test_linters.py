"""The convention linters (``scripts/linters/``, run by ``make lint``): each one names the file and line of a
planted violation, leaves the allowed form alone, and passes the real tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINTERS = ROOT / "scripts" / "linters"

PLANTED: dict[str, dict[str, str]] = {
    "service_boundaries": {
        "services/alpha/src/alpha/__init__.py": "",
        "services/beta/src/beta/__init__.py": "",
        "services/alpha/src/alpha/orders.py": "import os\nfrom beta.clients import call\nfrom alpha import x\n",
        "services/alpha/tests/test_orders.py": "import beta\n",
        "libs/kit/src/kit/db.py": "from servicekit.db import Database\nimport alpha.orders\n",
    },
    "test_helpers": {
        "services/alpha/tests/test_a.py": (
            "import sys\nsys.path.insert(0, 'here')\nfrom conftest import Thing\nfrom alpha.testing import ok\n"
        ),
        "tests/test_b.py": "from test_a import body\n",
        "libs/kit/tests/test_c.py": "from libs.kit.tests.apps import demo\nfrom kit.testing import apps\n",
        "testing/desk/src/desk/stack.py": "import sys\nprint(sys.path)\n",
    },
    "thin_routers": {
        "services/alpha/src/alpha/orders/models.py": (
            "import enum\n\nclass Status(enum.StrEnum):\n    OPEN = 'open'\n\n"
            "class Order(Base):\n    __tablename__ = 'order'\n"
        ),
        "services/alpha/src/alpha/orders/router.py": (
            "from alpha.orders.models import Status\nfrom alpha.orders.models import Order\n"
            "from alpha.orders.repository import find\nfrom alpha.orders.service import place\n"
        ),
        "services/alpha/src/alpha/orders/admin_router.py": "from alpha.orders import models\n",
    },
    "workers_location": {
        "services/alpha/src/alpha/main.py": (
            "from servicekit.workers import PeriodicWorker\n"
            "sweep = PeriodicWorker(name='sweep', job=job, interval_seconds=1)\n"
        ),
        "services/alpha/src/alpha/orders/relay.py": "from servicekit import workers\n\nclass Relay(workers.QueueWorker):\n    pass\n",
        "services/alpha/src/alpha/workers/sweeps.py": (
            "from servicekit.workers import PeriodicWorker, QueueWorker\n"
            "class Relay(QueueWorker):\n    pass\n"
            "sweep = PeriodicWorker(name='sweep', job=job, interval_seconds=1)\n"
        ),
    },
    "portable_upsert": {
        "services/alpha/src/alpha/a.py": (
            "from sqlalchemy.dialects import postgresql\nstatement = postgresql.insert(table)\n"
        ),
        "services/alpha/src/alpha/b.py": "from sqlalchemy.dialects.sqlite import insert\n",
        "libs/servicekit/src/servicekit/db.py": "from sqlalchemy.dialects import sqlite\nstatement = sqlite.insert(table)\n",
        "services/alpha/src/alpha/c.py": "from servicekit.db import insert_or_ignore\n",
        "services/alpha/src/alpha/d.py": "import sqlalchemy.dialects.postgresql as pg\nstatement = pg.insert(table)\n",
    },
}
"""Per linter, a tree of files, some breaking its convention."""

CAUGHT: dict[str, set[str]] = {
    "service_boundaries": {
        "services/alpha/src/alpha/orders.py:2: service-boundaries",
        "services/alpha/tests/test_orders.py:1: service-boundaries",
        "libs/kit/src/kit/db.py:2: service-boundaries",
    },
    "test_helpers": {
        "services/alpha/tests/test_a.py:2: test-helpers",
        "services/alpha/tests/test_a.py:3: test-helpers",
        "tests/test_b.py:1: test-helpers",
        "libs/kit/tests/test_c.py:1: test-helpers",
        "testing/desk/src/desk/stack.py:2: test-helpers",
    },
    "thin_routers": {
        "services/alpha/src/alpha/orders/router.py:2: thin-routers",
        "services/alpha/src/alpha/orders/router.py:3: thin-routers",
        "services/alpha/src/alpha/orders/admin_router.py:1: thin-routers",
    },
    "workers_location": {
        "services/alpha/src/alpha/main.py:2: workers-location",
        "services/alpha/src/alpha/orders/relay.py:3: workers-location",
    },
    "portable_upsert": {
        "services/alpha/src/alpha/a.py:2: portable-upsert",
        "services/alpha/src/alpha/b.py:1: portable-upsert",
        "services/alpha/src/alpha/d.py:2: portable-upsert",
    },
}
"""What each linter must report of its tree (``path:line: rule``), and nothing else."""


def lint(name: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LINTERS / f"{name}.py"), str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_linter_is_tested() -> None:
    assert {path.stem for path in LINTERS.glob("[!_]*.py")} == set(PLANTED)


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_a_linter_names_the_file_and_line_of_each_violation(name: str, tmp_path: Path) -> None:
    for relative, text in PLANTED[name].items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    result = lint(name, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    reported = {line.split(": ", 2)[0] + ": " + line.split(": ", 2)[1] for line in result.stdout.splitlines()}
    assert reported == CAUGHT[name]


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_the_tree_keeps_each_convention(name: str) -> None:
    result = lint(name, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
