"""Metric exposition and the push of live figures and closed days."""
