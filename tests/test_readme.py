"""The README's configuration reference names every setting every service reads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_environment_variable_is_documented() -> None:
    spec = importlib.util.spec_from_file_location(
        "settings_reference", ROOT / "scripts" / "settings_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    readme = (ROOT / "README.md").read_text()
    missing = [
        variable
        for _, settings in reference.SERVICES
        for variable, _, _ in reference.environment_variables(settings)
        if f"`{variable}`" not in readme
    ]
    assert missing == [], f"undocumented settings (run scripts/update_readme_reference.py): {missing}"


def test_the_two_commands_come_first() -> None:
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:20])
    assert "make run" in head
    assert "make test" in head
