"""Alembic environment of wallet-pool: its own schema only (see servicekit.migrations)."""

from logging.config import fileConfig

from alembic import context

import wallet_pool.models  # noqa: F401  (registers every table on the metadata)
from servicekit.migrations import MigrationTimeouts, database_url, run_env
from servicekit.settings import load_settings
from wallet_pool.db import SCHEMA, metadata
from wallet_pool.settings import Settings

if context.config.config_file_name and not context.config.attributes.get("quiet"):
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)

settings = load_settings(Settings)  # an invalid setting: one line naming it, not a traceback
run_env(
    metadata=metadata,
    schema=settings.database_schema or SCHEMA,
    url=database_url(settings),
    timeouts=MigrationTimeouts.of(settings),
    statement_cache_size=settings.database_statement_cache_size,
)
