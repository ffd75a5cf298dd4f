"""The Telegram channel: operator messages posted through telegram-gateway's ``POST /v1/messages``."""
