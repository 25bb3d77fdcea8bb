"""Logging set-up, done once by the CLI: text for people, JSON lines for machines."""

from __future__ import annotations

import json
import logging
import sys


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Request-level logs of these libraries would repeat URLs every cycle; slack_sdk's debug logs print the
    # webhook URL, which is a secret (STYLE.md, slack-sdk "Avoid").
    for noisy in ("httpx", "httpcore", "slack_sdk", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # stamina's own line is a bare "stamina.retry_scheduled" (its details sit in `extra`, which no formatter
    # shows); the Admin API client logs each retry itself, with the path, attempt, wait and error.
    logging.getLogger("stamina").setLevel(logging.ERROR)
