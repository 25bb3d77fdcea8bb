"""The HTTP endpoints and the spend page."""
