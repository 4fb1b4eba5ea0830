"""SQLite adapters: the embedded default. One database file under the data directory, WAL."""
