"""Typed clients for the peer services."""
