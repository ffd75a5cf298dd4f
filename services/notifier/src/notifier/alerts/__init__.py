"""Alerts for operators and admins: deduplicated by key, escalated by rules, with hysteresis."""
