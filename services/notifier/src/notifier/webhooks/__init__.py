"""Signed webhooks to the website: endpoints, the events they receive, signing and delivery (README, "Webhooks")."""
