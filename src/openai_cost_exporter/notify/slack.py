"""Slack: the notifier that posts to an incoming webhook (slack_blocks.py renders what it sends, and
log_notifier.py has the notifier without a webhook).

The webhook URL is a secret: it never reaches a log line, an exception or a repr. slack_sdk's WebhookClient
logs the URL at debug/info level whenever its logger's *own* level is NOTSET or DEBUG, so it gets a private
logger set to CRITICAL (we report every failure ourselves) with a filter that masks the URL anyway.

A post ends one of three ways, and the outbox's delivery (delivery.py) treats each its own way:

    NotifyError                          Slack did not take it: nothing went out (urllib's URLError: refused,
                                         unresolvable, or the request could not be written), or it answered
                                         4xx/5xx (`status`; `retry_after` for a 429)
    NotifyError(maybe_delivered=True)    the request went out and no answer came back (a read timeout, a
                                         dropped connection, or the wall-clock deadline): Slack may have posted it

The SDK's retry handlers retry within the call only what left nothing posted (issue 11: its connection-error
handler also retried a dropped answer, so a Slack that posts but answers late got each alert again).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from pydantic import SecretStr
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
from slack_sdk.webhook import WebhookClient, WebhookResponse

from openai_cost_exporter.core.errors import ConfigError, NotifyError
from openai_cost_exporter.core.retry_after import parse_retry_after
from openai_cost_exporter.notify.slack_blocks import render

if TYPE_CHECKING:
    from openai_cost_exporter.notify.messages import OutboxMessage

logger = logging.getLogger(__name__)


# --- the notifier ------------------------------------------------------------------------------


class WebhookPoster(Protocol):
    """What a send needs of its HTTP client: slack_sdk's WebhookClient, or a stand-in."""

    def send_dict(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> WebhookResponse: ...


class SlackNotifier:
    """Posts outbox payloads to a Slack incoming webhook with slack_sdk's WebhookClient.

    Each send ends within a wall-clock deadline (about twice `timeout`, room for one in-call retry): urllib's timeout
    bounds each socket read, not the call, so a server trickling its answer a byte at a time would hold a cycle
    for ever. The post runs in a daemon thread; past the deadline the message is "in doubt" (`maybe_delivered`) and the
    thread is left to end with its socket (it never keeps the process up, and it can post nothing more).
    """

    def __init__(
        self,
        webhook_url: SecretStr | str,
        *,
        timeout: float = 10,
        backoff: float = 0.5,
        max_retry_after: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        client: Callable[..., WebhookPoster] = WebhookClient,
    ) -> None:
        """`client` makes the HTTP client of each send (slack_sdk's WebhookClient, or a stand-in with its
        arguments and `send_dict`): the transport is injected, as the OpenAI client's is."""
        url = webhook_url.get_secret_value() if isinstance(webhook_url, SecretStr) else webhook_url
        if not url.startswith(("https://", "http://")) or not urlsplit(url).hostname:
            # checked here: slack_sdk would put the whole URL into its SlackRequestError
            raise ConfigError("the Slack webhook URL must start with https:// and name a host")
        self._mask = _Masker(url)
        # Room for the one in-call retry (a refused connection, 500/503, a short 429), never much more.
        self._deadline = 2 * timeout + backoff + min(max_retry_after, timeout)
        self._url, self._timeout = url, timeout
        self._backoff, self._max_retry_after, self._sleep = backoff, max_retry_after, sleep
        self._make_client = client
        self._client = self._webhook(threading.Event())  # the SDK client of the send in progress

    def _webhook(self, given_up: threading.Event) -> WebhookPoster:
        """A WebhookClient whose in-call retry stops once the caller has given the send up (`given_up`): a post left
        running past the deadline must not post again behind the outbox's back."""
        return self._make_client(
            self._url,
            timeout=self._timeout,  # urllib takes a float (the SDK annotates int)
            logger=_sdk_logger(self._mask),
            retry_handlers=retry_handlers(
                given_up=given_up, backoff=self._backoff, max_retry_after=self._max_retry_after, sleep=self._sleep
            ),
        )

    def __repr__(self) -> str:
        return f"SlackNotifier(webhook={self._mask.shown!r})"

    def send(self, message: OutboxMessage) -> None:
        payload = render(message)
        outcome: list[WebhookResponse | BaseException] = []
        given_up = threading.Event()
        client = self._client = self._webhook(given_up)

        def post() -> None:
            try:
                outcome.append(client.send_dict(payload))
            except BaseException as err:  # handed to the sending thread, classified there
                outcome.append(err)

        worker = threading.Thread(target=post, name="slack-post", daemon=True)
        worker.start()
        worker.join(self._deadline)
        shown = self._mask.shown
        if not outcome:
            given_up.set()
            raise NotifyError(
                f"Slack webhook {shown} gave no answer within {self._deadline:g} s; it may have posted the message",
                maybe_delivered=True,
            )
        result = outcome[0]
        if isinstance(result, BaseException):
            raise self._failure(result) from None
        self._check(result)

    def _failure(self, err: BaseException) -> NotifyError:
        detail = self._mask(f"{type(err).__name__}: {err}")
        if _not_sent(err):
            return NotifyError(f"Slack webhook {self._mask.shown} unreachable: {detail}")
        return NotifyError(
            f"Slack webhook {self._mask.shown} took the request but gave no answer ({detail}); "
            "it may have posted the message",
            maybe_delivered=True,
        )

    def _check(self, response: WebhookResponse) -> None:
        if HTTPStatus.OK <= response.status_code < HTTPStatus.MULTIPLE_CHOICES:
            return
        body = self._mask(str(response.body))[:200]
        limited = response.status_code == HTTPStatus.TOO_MANY_REQUESTS
        raise NotifyError(
            f"Slack webhook {self._mask.shown} answered {response.status_code}: {body}",
            retry_after=_retry_after(response.headers) if limited else None,
            status=response.status_code,
        )


def _not_sent(err: BaseException) -> bool:
    """Whether nothing reached Slack: urllib wraps failures of connecting and of writing the request in URLError;
    a failure after that (reading the answer) comes unwrapped."""
    return isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError)


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
        return error is not None and _not_sent(error)


class _ServerErrorRetryHandler(_UntilGivenUp, ServerErrorRetryHandler):
    """The SDK's 500/503 retry."""


class _Masker:
    """Replaces the webhook URL (and its secret path alone) by `scheme://host/…`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.shown = f"{parts.scheme}://{parts.hostname}/…"
        self._secrets = [s for s in (url, parts.path) if len(s) > 1]

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, self.shown)
        return text


class _MaskFilter(logging.Filter):
    def __init__(self, mask: Callable[[str], str]) -> None:
        super().__init__()
        self._mask = mask

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self._mask(record.getMessage()), None
        return True


def _sdk_logger(mask: Callable[[str], str]) -> logging.Logger:
    # A private Logger (not registered in logging's manager, so nothing global changes), propagating to ours.
    sdk = logging.Logger(f"{__name__}.sdk", logging.CRITICAL)
    sdk.parent = logger
    sdk.addFilter(_MaskFilter(mask))
    return sdk


def _retry_after(headers: Any) -> float | None:
    for key, value in dict(headers).items():
        if key.lower() == "retry-after":
            return parse_retry_after(value[0] if isinstance(value, list) else value)
    return None


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
        wait = _retry_after(response.headers)
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
        wait = _retry_after(response.headers) if response is not None else None
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
