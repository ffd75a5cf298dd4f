"""Alembic environment of telegram-gateway: its own schema only (see servicekit.migrations)."""

from logging.config import fileConfig

from alembic import context

import telegram_gateway.models  # noqa: F401  (registers every table on the metadata)
from servicekit.db import resolve_database_url
from servicekit.migrations import run_env
from telegram_gateway.db import SCHEMA, metadata
from telegram_gateway.settings import Settings

if context.config.config_file_name and not context.config.attributes.get("quiet"):
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)

settings = Settings()
run_env(
    metadata=metadata,
    schema=settings.database_schema or SCHEMA,
    url=resolve_database_url(
        settings.database_url, var_dir=settings.var_dir, service_name=settings.service_name
    ),
)
