"""Figures computed from the store: snapshot, baselines, estimates, pricing, spend limits, API keys."""
