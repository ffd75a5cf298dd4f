"""Allocations: which order holds which deposit address, the fair wait queue, and release."""
