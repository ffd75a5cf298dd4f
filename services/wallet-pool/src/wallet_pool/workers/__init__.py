"""Background workers started in the lifespan and stopped before the service exits."""
