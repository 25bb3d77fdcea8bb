"""The shared SQLite state file and the tables of the cycle: ledger, usage, directory listings."""
