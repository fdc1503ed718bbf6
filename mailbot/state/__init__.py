"""State: the SQLite store, the seat ledger, the outbox, retention, the instance lock, private files."""
