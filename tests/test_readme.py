"""The README's configuration reference names every setting every service reads."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]


def script(name: str) -> ModuleType:
    """``scripts/<name>.py``, loaded as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def settings_reference() -> ModuleType:
    return script("settings_reference")


def test_every_environment_variable_is_documented() -> None:
    reference = settings_reference()
    readme = (ROOT / "README.md").read_text()
    missing = [
        variable
        for _, settings in reference.SERVICES
        for variable, _, _ in reference.environment_variables(settings)
        if f"`{variable}`" not in readme
    ]
    assert missing == [], f"undocumented settings (run scripts/update_readme_reference.py): {missing}"


def test_json_settings_show_their_real_default_and_an_example() -> None:
    """A JSON setting's documented default, written back to its variable, is the default the service uses;
    a per-currency one also shows how to override it."""
    reference = settings_reference()
    checked = 0
    for _, settings in reference.SERVICES:
        assert issubclass(settings, BaseSettings)
        prefix = str(settings.model_config.get("env_prefix", ""))
        for variable, shown, description in reference.environment_variables(settings):
            name = variable.removeprefix(prefix).lower()
            field = settings.model_fields.get(name)
            if field is None or field.default_factory is None or name == "var_dir":
                continue
            real = field.get_default(call_default_factory=True)
            rebuilt = settings.model_validate({name: json.loads(shown)}).model_dump()[name]
            assert rebuilt == settings.model_validate({name: real}).model_dump()[name], variable
            if "currenc" in description.lower():
                assert "e.g. `{" in description, f"{variable}: no JSON example"
            checked += 1
    assert checked >= 6


def test_the_two_commands_come_first() -> None:
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:20])
    assert "make run" in head
    assert "make test" in head


def test_the_event_catalogue_is_generated_from_the_contracts() -> None:
    """The README's event catalogue is what ``desk_contracts.events`` says now, to the character."""
    catalogue = script("event_catalogue")
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("<!-- event-catalogue:start -->\n", 1)[1].split("\n<!-- event-catalogue:end -->", 1)[
        0
    ]
    assert shown == catalogue.catalogue(), "stale event catalogue: run scripts/update_readme_reference.py"
    for name in ("order.created", "wallet.assigned", "pool.low", "outbox.dead_lettered"):
        assert f"### `{name}`" in shown


def test_the_webhook_catalogue_is_generated_from_the_payload_models() -> None:
    catalogue = script("event_catalogue")
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("<!-- webhook-catalogue:start -->\n", 1)[1].split(
        "\n<!-- webhook-catalogue:end -->"
    )[0]
    assert shown == catalogue.webhook_catalogue(), (
        "stale webhook catalogue: run scripts/update_readme_reference.py"
    )
    assert "| `order.address_assigned` |" in shown
