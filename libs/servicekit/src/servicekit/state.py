"""What an app built by ``servicekit.app.create_service_app`` holds, behind one typed accessor.

The service's own collaborators (its ``<service>.context`` dataclass) are built once at start-up and handed to
``create_service_app``; routes get them through one dependency of the service (``service_context``), never by
reading ``app.state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from starlette.applications import Starlette

if TYPE_CHECKING:
    from servicekit.apikeys import ApiKeyVerifier
    from servicekit.app import Runtime
    from servicekit.db import Database
    from servicekit.settings import ServiceSettings

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class ServiceState:
    """The app's runtime, settings and API keys (servicekit's routes and dependencies), and the service's
    context (``context``: whatever the service built, typed by ``service_context``)."""

    runtime: Runtime
    settings: ServiceSettings
    api_key_verifier: ApiKeyVerifier
    context: object


class RuntimeContext:
    """Base of a service's context dataclass, which holds the service's ``runtime``: what every context
    reaches through it."""

    __slots__ = ()
    runtime: Runtime

    @property
    def database(self) -> Database:
        return self.runtime.database


def attach_state(app: Starlette, state: ServiceState) -> None:
    app.state.service = state


def service_state(app: Starlette) -> ServiceState:
    """What ``create_service_app`` attached to ``app``."""
    state: ServiceState = app.state.service
    return state


def service_context(app: Starlette, kind: type[C]) -> C:
    """The service's context of ``app``; a ``TypeError`` when the app holds another kind (a wiring mistake)."""
    context = service_state(app).context
    if not isinstance(context, kind):
        raise TypeError(f"the app holds {type(context).__name__}, not {kind.__name__}")
    return context
