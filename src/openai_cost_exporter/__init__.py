"""openai-cost-exporter: per-project daily OpenAI costs as metrics, with Slack spend alerts."""

from __future__ import annotations

__version__ = "0.1.0"
