"""telegram-gateway: the operators' Telegram bot, acting on order-api on their behalf."""
