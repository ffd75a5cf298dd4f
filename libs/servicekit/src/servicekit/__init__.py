"""What every Exchange Desk service needs, each piece small: settings, database, errors, API keys,
telemetry and JSON logs, the typed service client, the transactional outbox and inbox, health and metrics."""
