"""What wallet-pool's routes and workers work with, built once by ``create_app``.

Routes get it through one dependency (``Ctx``); workers get the parts they need when they are built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.applications import Starlette

from servicekit.app import Runtime
from servicekit.state import RuntimeContext, service_context
from wallet_pool.metrics import PoolMetrics
from wallet_pool.settings import Settings


@dataclass(frozen=True, slots=True)
class WalletPoolContext(RuntimeContext):
    settings: Settings
    runtime: Runtime
    metrics: PoolMetrics
    """The pool's business metrics, on the runtime's ``/metrics``."""

    @classmethod
    def build(cls, *, settings: Settings, runtime: Runtime) -> WalletPoolContext:
        return cls(settings=settings, runtime=runtime, metrics=PoolMetrics(runtime.metrics_registry))


def context_of(app: Starlette) -> WalletPoolContext:
    """The context of a wallet-pool app (tests, and the one hot route that skips the dependency)."""
    return service_context(app, WalletPoolContext)


async def wallet_pool_context(request: Request) -> WalletPoolContext:
    return service_context(request.app, WalletPoolContext)


Ctx = Annotated[WalletPoolContext, Depends(wallet_pool_context)]
