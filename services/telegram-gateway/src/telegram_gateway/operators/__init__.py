"""Operators linked to Telegram users: who the bot acts for."""
