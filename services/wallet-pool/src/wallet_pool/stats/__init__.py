"""Pool health: what is free, reserved and waiting, per currency."""
