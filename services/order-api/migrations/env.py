"""Alembic environment of order-api: its own schema only (see servicekit.migrations)."""

from logging.config import fileConfig

from alembic import context

import order_api.models  # noqa: F401  (registers every table on the metadata)
from order_api.db import SCHEMA, metadata
from order_api.settings import Settings
from servicekit.db import resolve_database_url
from servicekit.migrations import run_env

if context.config.config_file_name and not context.config.attributes.get("quiet"):
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)

settings = Settings()
run_env(
    metadata=metadata,
    schema=settings.database_schema or SCHEMA,
    url=resolve_database_url(
        settings.database_url, var_dir=settings.var_dir, service_name=settings.service_name
    ),
    runtime_role=settings.database_runtime_role,
)
