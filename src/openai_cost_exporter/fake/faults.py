"""The fake Admin API's failure switches (`Faults`), each a quirk or outage seen from the real API.

`fake/api.py` applies them to API requests; tests and the `/_fake/faults` control endpoint set them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

AMOUNT_FORMATS = ("number", "string", "mixed")


@dataclass
class Faults:
    """Failure switches; counters fire on the next N API requests and count down as they fire."""

    amount_format: str = "number"  # "number" | "string" | "mixed" (openai-admin-api.md §7.1)
    rate_limit_next: int = 0  # 429 with Retry-After: 1
    server_error_next: int = 0  # 500, 502 (an HTML page, like a proxy), 503 in turn
    not_found_next: int = 0  # 404, like the costs outage of 2025-11-09
    truncate_next: int = 0  # 200 with valid headers, the JSON body cut in half
    forbidden: bool = False  # 403 missing api.usage.read
    usage_forbidden: bool = False  # 403 on the usage endpoints only
    error_as_string: bool = False  # {"error": "..."} instead of the error object
    latency_seconds: float = 0.0  # added to every API response
    trickle_seconds: float = 0.0  # the body sent a few bytes at a time, this long apart (no read ever times out)
    trickle_path: str = ""  # only replies to this path trickle (e.g. /v1/organization/projects); "": every path
    spend_limit_empty: bool = False  # no hard spend limit: 200 {} instead of 404 (both seen, openai-admin-api.md §9)
    key_page_cap: int = 0  # at most this many keys per page of a key listing, whatever `limit` asks (0: no cap)

    def update(self, changes: Mapping[str, object]) -> None:
        """Apply a partial change (such as a JSON body) all at once; ValueError if any field is bad."""
        clean = {name: _check_fault(self, name, value) for name, value in changes.items()}
        for name, value in clean.items():
            setattr(self, name, value)


def _check_fault(faults: Faults, name: str, value: object) -> object:
    if name not in {f.name for f in fields(faults)}:
        raise ValueError(f"unknown fault {name!r}")
    expected = type(getattr(faults, name))
    if expected is float and type(value) is int:
        value = float(value)
    if type(value) is not expected:
        raise ValueError(f"fault {name!r} must be a {expected.__name__}")
    if name == "amount_format" and value not in AMOUNT_FORMATS:
        raise ValueError(f"amount_format must be one of {AMOUNT_FORMATS}")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ValueError(f"fault {name!r} must not be negative")
    return value
