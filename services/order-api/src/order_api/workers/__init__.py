"""order-api's background workers: expiry and allocation reconciliation."""
