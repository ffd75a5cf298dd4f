"""The durable delivery queue: notifications, their attempts, the worker that sends them, the admin routes."""
