"""Figures as CSV when the caller asks for it (``Accept: text/csv``).

A statistics answer is a tree (currencies, their networks, hourly series ...). Its CSV is the same tree, one
leaf per line: ``figure,value``, where ``figure`` is the leaf's path, e.g.
``currencies[BTC].networks[bitcoin].wait.p90_seconds``. An item of a list is named by its first scalar field
(``currency``, ``network``, ``hour`` ...), which is not repeated as a line of its own. So the CSV holds exactly
what the JSON holds, whatever the model, and a spreadsheet filters it by prefix.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import Response
from pydantic import BaseModel

CSV_MEDIA_TYPE = "text/csv"
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}},
        "description": "The figures (JSON or CSV).",
    }
}
"""OpenAPI ``responses=`` entry for a route that also answers CSV."""


def wants_csv(accept: str | None) -> bool:
    """Whether ``Accept`` asks for CSV rather than JSON (the first of the two it names wins)."""
    for media_range in (accept or "").lower().split(","):
        media_type = media_range.split(";", 1)[0].strip()
        if media_type == CSV_MEDIA_TYPE:
            return True
        if media_type in ("application/json", "*/*", "application/*"):
            return False
    return False


def figure_lines(document: Any, path: str = "") -> list[tuple[str, str]]:
    """``(figure, value)`` for every leaf of a JSON-shaped ``document``; null is an empty value."""
    if isinstance(document, dict):
        lines: list[tuple[str, str]] = []
        for key, value in document.items():
            lines += figure_lines(value, f"{path}.{key}" if path else str(key))
        return lines
    if isinstance(document, list):
        lines = []
        for index, item in enumerate(document):
            name = _item_name(item)
            if name is None:
                lines += figure_lines(item, f"{path}[{index}]")
            else:
                key, label = name
                rest = {k: v for k, v in item.items() if k != key}
                lines += figure_lines(rest, f"{path}[{label}]")
        return lines
    return [(path, _scalar(document))]


def figures_csv(model: BaseModel) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("figure", "value"))
    writer.writerows(figure_lines(model.model_dump(mode="json")))
    return out.getvalue()


def csv_or_model(model: BaseModel, *, accept: str | None, filename: str) -> BaseModel | Response:
    """``model`` as the route's JSON answer, or as CSV when ``Accept`` asks for it."""
    if not wants_csv(accept):
        return model
    return Response(
        figures_csv(model),
        media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _item_name(item: Any) -> tuple[str, str] | None:
    if not isinstance(item, dict):
        return None
    for key, value in item.items():
        if not isinstance(value, dict | list):
            return key, "null" if value is None else _scalar(value)
    return None


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
