"""Order cards: what each Telegram message shows, and which message shows which order."""
