"""notifier: turns domain events into email to customers and admins and Telegram messages to operators."""
