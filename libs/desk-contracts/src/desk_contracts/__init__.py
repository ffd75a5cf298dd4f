"""The contracts between the Exchange Desk services, written once: ``desk_contracts.events`` (the payload of
every event one service sends another) and ``desk_contracts.errors`` (the problem ``code`` values callers
match on). Producers build from these models and consumers parse with them, so a change on either side breaks
a test rather than a peer."""
