"""The notifier without a webhook: every alert message becomes one readable log line (slack_sdk is not loaded)."""

from __future__ import annotations

import logging

from openai_cost_exporter.notify.messages import OutboxMessage
from openai_cost_exporter.notify.slack_blocks import render


class LogNotifier:
    """No webhook configured: every message becomes one readable log line."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log

    def send(self, message: OutboxMessage) -> None:
        text = str(render(message).get("text", "")).replace("\n", " | ")
        self._log.warning("%s alert for %s: %s", message.rule, message.subject_id, text)
