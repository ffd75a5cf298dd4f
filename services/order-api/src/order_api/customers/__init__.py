"""Customers: who orders, found by a blind index of their email, whose email is stored only sealed."""
