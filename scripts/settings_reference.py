"""Print the configuration reference (every setting of every service, as environment variables) in
Markdown, for the README: ``.venv/bin/python scripts/settings_reference.py``."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from pydantic_settings import BaseSettings

from notifier.settings import Settings as NotifierSettings
from order_api.settings import Settings as OrderApiSettings
from servicekit.settings import ServiceSettings
from telegram_gateway.settings import Settings as TelegramGatewaySettings
from wallet_pool.settings import Settings as WalletPoolSettings

SERVICES: list[tuple[str, type[BaseSettings]]] = [
    ("order-api", OrderApiSettings),
    ("wallet-pool", WalletPoolSettings),
    ("notifier", NotifierSettings),
    ("telegram-gateway", TelegramGatewaySettings),
]


def environment_variables(settings: type[BaseSettings]) -> list[tuple[str, str, str]]:
    """(variable, default, description) for every field, nested peer settings flattened with ``__``."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    rows: list[tuple[str, str, str]] = []
    for name, field in settings.model_fields.items():
        default = field.get_default(call_default_factory=False)
        annotation = field.annotation
        if (
            isinstance(default, BaseModel)
            and isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
        ):
            for sub_name, sub_field in annotation.model_fields.items():
                sub_default = getattr(default, sub_name)
                shown = "" if "key" in sub_name else str(sub_default)
                meaning = f"{field.description or name}: {sub_field.description or ''}"
                rows.append((f"{prefix}{name}__{sub_name}".upper(), shown, meaning))
            continue
        if field.default_factory is not None:
            shown = "var/" if name == "var_dir" else as_json(field.get_default(call_default_factory=True))
        else:
            shown = "" if default is None else str(default)
        base = ServiceSettings.model_fields.get(name)
        description = field.description or (base.description if base else None) or ""
        rows.append(((prefix + name).upper(), shown, description))
    return rows


def as_json(default: Any) -> str:
    """A default as the JSON an operator would write to the variable (Decimal amounts as strings)."""
    return json.dumps(to_jsonable_python(default), separators=(", ", ": "))


def main() -> None:
    for service, settings in SERVICES:
        print(f"\n#### {service}\n")
        print("| variable | default | meaning |")
        print("|---|---|---|")
        for variable, default, description in environment_variables(settings):
            print(
                f"| `{variable}` | `{default}` | {description} |"
                if default
                else f"| `{variable}` |  | {description} |"
            )


if __name__ == "__main__":
    main()
