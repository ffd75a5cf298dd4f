"""Delivery statistics: what was sent, what failed, how long it took, per channel and template."""
