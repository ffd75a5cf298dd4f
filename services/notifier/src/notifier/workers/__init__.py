"""Background work of the notifier, started in the lifespan and stopped before it exits: delivery (one worker
per channel), alert evaluation, and what retention removes."""
