"""slack_sdk's retry handlers as the Slack notifier (slack.py) uses them: within one call, retry only what left
nothing posted (a request that never went out, 500/503) and short 429s, and nothing once the caller gave the send up.

The outbox (delivery.py) retries across cycles, and is the only one to retry an answer lost after the request went out
(issue 11: the SDK's connection-error handler also retried a dropped answer, so a Slack that posts but answers late
got each alert again).
"""

from __future__ import annotations

import threading
import time
import urllib.error
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from openai_cost_exporter.core.retry_after import parse_retry_after


def not_sent(err: BaseException) -> bool:
    """Whether nothing reached Slack: urllib wraps failures of connecting and of writing the request in URLError;
    a failure after that (reading the answer) comes unwrapped."""
    return isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError)


def retry_after_header(headers: Any) -> float | None:
    """The Retry-After of an answer's headers, in seconds (the SDK gives each header as a list, or a string)."""
    for key, value in dict(headers).items():
        if key.lower() == "retry-after":
            return parse_retry_after(value[0] if isinstance(value, list) else value)
    return None


class _UntilGivenUp(RetryHandler):
    """A retry handler that retries nothing once the caller has given the send up (`given_up`)."""

    def __init__(self, given_up: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._given_up = given_up

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if self._given_up.is_set():
            return False
        return super().can_retry(state=state, request=request, response=response, error=error)


class _NotSentRetryHandler(_UntilGivenUp, ConnectionErrorRetryHandler):
    """The SDK's connection-error retry, only for a request that never went out."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return error is not None and not_sent(error)


class _ServerErrorRetryHandler(_UntilGivenUp, ServerErrorRetryHandler):
    """The SDK's 500/503 retry."""


class _ShortRateLimitHandler(_UntilGivenUp, RateLimitErrorRetryHandler):
    """Retries a 429 in the call only when Slack asks for a short wait; longer ones go back to the outbox."""

    def __init__(
        self, given_up: threading.Event, max_retry_after: float, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        super().__init__(given_up, max_retry_count=1)
        self._max = max_retry_after
        self._sleep = sleep

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != HTTPStatus.TOO_MANY_REQUESTS:
            return False
        wait = retry_after_header(response.headers)
        return wait is not None and wait <= self._max

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        wait = retry_after_header(response.headers) if response is not None else None
        self._sleep(wait or 0.0)
        state.increment_current_attempt()


def retry_handlers(
    *,
    given_up: threading.Event,
    backoff: float = 0.5,
    max_retry_after: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[RetryHandler]:
    """One in-call retry for a request that never went out, 500/503 and short 429s; the outbox retries across
    cycles (and is the only one to retry an answer lost after the request went out)."""
    # One retry, so a fixed pause (the SDK's default calculator adds up to 1 s of random jitter to it).
    interval = FixedValueRetryIntervalCalculator(backoff)
    return [
        _NotSentRetryHandler(given_up, max_retry_count=1, interval_calculator=interval),
        _ServerErrorRetryHandler(given_up, max_retry_count=1, interval_calculator=interval),
        _ShortRateLimitHandler(given_up, max_retry_after, sleep),
    ]
