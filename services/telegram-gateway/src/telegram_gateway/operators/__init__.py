"""Who the bot acts for: the operators linked to Telegram users, as order-api says."""
