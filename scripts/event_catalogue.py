"""Print the event catalogue (every event between the services, from ``desk_contracts.events``) in Markdown,
for the README: ``.venv/bin/python scripts/event_catalogue.py``."""

from __future__ import annotations

import inspect
import types
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from desk_contracts.events import EVENTS, ActionFields, Event, OrderFields, PoolLevel, SealedPersonalData

GROUPS: list[tuple[str, type[Event]]] = [
    ("order fields", OrderFields),
    ("action fields", ActionFields),
    ("sealed personal data", SealedPersonalData),
    ("pool figures", PoolLevel),
]
"""Fields many events share, listed once each: an event names the groups it carries."""
SCALARS: dict[Any, str] = {
    str: "string",
    int: "integer",
    bool: "boolean",
    Decimal: "decimal string",
    datetime: "ISO-8601 time",
}


def type_name(annotation: Any) -> str:
    """How a field's type reads in the catalogue."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_name(args[0])
    if origin in (Union, types.UnionType):
        named = [type_name(arg) for arg in args if arg is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return " or ".join(f"`{value}`" for value in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return "{" + ", ".join(annotation.model_fields) + "}"
    return SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def own_fields(model: type[BaseModel], inherited: type[BaseModel] | None = None) -> list[str]:
    """The fields of ``model`` that ``inherited`` does not have."""
    skip = set(inherited.model_fields) if inherited else set()
    return [name for name in model.model_fields if name not in skip]


def field_rows(model: type[BaseModel], names: list[str]) -> list[str]:
    rows = []
    for name in names:
        field = model.model_fields[name]
        wire = field.alias or name
        kind = type_name(field.annotation) + ("" if field.is_required() else ", optional")
        description = summary(field.description)
        rows.append(f"| `{wire}` | {kind} | {description} |")
    return rows


def table(model: type[BaseModel], names: list[str]) -> str:
    return "\n".join(["| field | type | meaning |", "|---|---|---|", *field_rows(model, names)])


def summary(text: str | None) -> str:
    """A docstring as one Markdown paragraph."""
    return " ".join(inspect.cleandoc(text or "").split()).replace("``", "`")


def shared_groups() -> list[tuple[str, type[Event], type[Event] | None]]:
    """Each shared group with the group it extends (whose fields it does not repeat)."""
    return [
        (title, group, GROUPS[index - 1][1] if index and issubclass(group, GROUPS[index - 1][1]) else None)
        for index, (title, group) in enumerate(GROUPS)
    ]


def groups_of(model: type[Event]) -> list[tuple[str, type[Event], type[Event] | None]]:
    """The shared groups ``model`` carries."""
    return [(title, group, extends) for title, group, extends in shared_groups() if issubclass(model, group)]


def catalogue() -> str:
    """The catalogue: the shared field groups, then one section per event type."""
    parts = []
    for title, group, extends in shared_groups():
        parts.append(
            f"**{title.capitalize()}**: {summary(group.__doc__)}\n\n{table(group, own_fields(group, extends))}"
        )
    parts.append(
        "| type | version | producers → consumers |\n|---|---|---|\n"
        + "\n".join(
            f"| [`{name}`](#{anchor(name)}) | {event.event_version} | "
            f"{', '.join(event.producers)} → {', '.join(event.consumers)} |"
            for name, event in EVENTS.items()
        )
    )
    for name, event in EVENTS.items():
        carried = groups_of(event)
        shared = set().union(*(group.model_fields for _, group, _ in carried)) if carried else set()
        rest = [field for field in event.model_fields if field not in shared]
        lines = [
            f"### `{name}`",
            "",
            f"Version {event.event_version}; {', '.join(event.producers)} → {', '.join(event.consumers)}. "
            f"{summary(event.__doc__)}",
        ]
        if carried:
            titles = [f"the {title}" for title, _, _ in carried]
            listed = titles[0] if len(titles) == 1 else f"{', '.join(titles[:-1])} and {titles[-1]}"
            lines += ["", f"Payload: {listed}{', and:' if rest else '.'}"]
        if rest:
            lines += ["", table(event, rest)]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def anchor(name: str) -> str:
    """GitHub's heading anchor of ``### `name` ``."""
    return name.replace(".", "")


def webhook_catalogue() -> str:
    """The website's webhook events (``notifier.webhooks.events``): their types and the ``data`` of an order's."""
    from notifier.webhooks.events import DESCRIPTIONS, OrderData

    types = ["| type | when |", "|---|---|", *(f"| `{t}` | {d} |" for t, d in DESCRIPTIONS.items())]
    return "\n\n".join(
        [
            "\n".join(types),
            f"`data` of every `order.*` event: {summary(OrderData.__doc__)}",
            table(OrderData, list(OrderData.model_fields)),
        ]
    )


def main() -> None:
    print(catalogue())


def webhooks_main() -> None:
    print(webhook_catalogue())


if __name__ == "__main__":
    main()
