"""State: the SQLite store, the seat ledger, the outbox, retention, the daemon and write locks, private files."""
