"""Completing an order from Telegram: the operator's answers (the transaction record) kept as a draft."""
