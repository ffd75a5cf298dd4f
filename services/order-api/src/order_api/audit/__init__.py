"""The append-only, hash-chained audit trail of every operator, admin and order action (README, "Security": the audit log's roles and checkpoints)."""
