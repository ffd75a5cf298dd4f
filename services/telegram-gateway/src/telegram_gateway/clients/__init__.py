"""Typed clients for the peer services the bot calls (order-api, wallet-pool)."""
