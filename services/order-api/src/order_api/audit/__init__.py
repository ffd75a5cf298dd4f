"""The append-only, hash-chained audit trail of every operator, admin and order action (DESIGN §6)."""
