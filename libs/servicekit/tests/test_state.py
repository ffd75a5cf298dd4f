"""What an app holds is reached through one typed accessor: the runtime and settings servicekit built, and
the service's own context, of the kind the service asks for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from servicekit.app import Runtime, create_service_app
from servicekit.state import service_context, service_state
from servicekit.testing.kitapps import KitSettings


@dataclass(frozen=True)
class ShopContext:
    greeting: str


@dataclass(frozen=True)
class OtherContext:
    greeting: str


def test_an_app_hands_out_its_context_only_as_the_kind_it_holds(tmp_path: Path) -> None:
    settings = KitSettings(var_dir=tmp_path)
    runtime = Runtime(settings, schema="kit")
    context = ShopContext(greeting="hello")
    app = create_service_app(
        settings=settings, runtime=runtime, title="kit", description="t", context=context
    )

    state = service_state(app)
    assert (state.runtime, state.settings, state.context) == (runtime, settings, context)
    assert service_context(app, ShopContext) is context
    with pytest.raises(TypeError, match="the app holds ShopContext, not OtherContext"):
        service_context(app, OtherContext)
