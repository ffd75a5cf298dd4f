"""``POST /v1/messages``: the notifier's order cards and alerts, posted or edited exactly once."""
