"""Background work of telegram-gateway (started in the lifespan, stoppable)."""
