"""Orders: intake, reading, cancelling, the lifecycle every status change goes through, expiry."""
