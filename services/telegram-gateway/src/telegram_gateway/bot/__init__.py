"""The aiogram bot: its lifecycle inside the service, the webhook route and the update handlers."""
