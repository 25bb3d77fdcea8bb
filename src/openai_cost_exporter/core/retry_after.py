"""`Retry-After` (RFC 9110 §10.2.3), parsed once for OpenAI and Slack, and bounded.

A server may ask for any wait (`Retry-After: 1e12` was seen to break a date computation); the wait is capped so
a bad header delays a request or a message, never stops it for good.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math

#: The longest wait any server may impose on us through `Retry-After`.
MAX_RETRY_AFTER_SECONDS = 3600.0


def parse_retry_after(value: str | None, *, date: str | None = None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait: `Retry-After` as seconds or an HTTP date (relative to the server's `Date` when sent);
    None when absent or unreadable; never negative, never more than MAX_RETRY_AFTER_SECONDS."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        when = _http_date(value)
        if when is None:
            return None
        reference = _http_date(date or "") or now or dt.datetime.now(dt.UTC)
        seconds = (when - reference).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


def _http_date(value: str) -> dt.datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
