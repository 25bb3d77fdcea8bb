"""Leaf helpers every stage may use: money, time, errors, domain values, defaults, threads, HTTP replies."""
