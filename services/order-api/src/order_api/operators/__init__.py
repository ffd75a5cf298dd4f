"""Operators, support and admins: accounts and tokens, and the work they do on orders (README, "Security": roles and scopes)."""
