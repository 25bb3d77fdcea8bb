"""Masking of secrets in text we did not write ourselves (server messages, exception text)."""

from __future__ import annotations

import re

MASK = "***"

# OpenAI keys (sk-admin-..., sk-proj-..., sk-...) and the partly starred form OpenAI echoes
# in "Incorrect API key provided: sk-admi********wxyz" (openai-admin-api.md §4).
_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-*.]+")

# Shorter "secrets" would mask ordinary words; real keys are far longer.
_MIN_SECRET_LENGTH = 8


def redact(text: str, *secrets: str) -> str:
    """`text` with every given secret and anything shaped like an OpenAI key replaced by a mask."""
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    return _KEY_PATTERN.sub(f"sk-{MASK}", text)
