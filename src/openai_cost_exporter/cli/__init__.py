"""The command line: parsing, settings flags, and each command."""
