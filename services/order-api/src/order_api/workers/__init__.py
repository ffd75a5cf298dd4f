"""order-api's background workers: the order sweeps (expiry, allocation reconciliation, announcement,
assignment timeout)."""
