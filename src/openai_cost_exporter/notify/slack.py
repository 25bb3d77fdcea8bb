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

The SDK's retry handlers (slack_retry.py) retry within the call only what left nothing posted. A message in doubt
(an earlier answer was lost) waits longer for its answer (IN_DOUBT_TIMEOUT_FACTOR): each answer lost again may be one
more copy in the channel (issue 21).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from pydantic import SecretStr
from slack_sdk.webhook import WebhookClient, WebhookResponse

from openai_cost_exporter.core.errors import ConfigError, NotifyError
from openai_cost_exporter.notify.slack_blocks import render
from openai_cost_exporter.notify.slack_retry import not_sent, retry_after_header, retry_handlers

if TYPE_CHECKING:
    from openai_cost_exporter.notify.messages import OutboxMessage

logger = logging.getLogger(__name__)

#: A message in doubt waits this many times `timeout` for its answer (twice after one lost answer, three times after
#: more): a slow Slack then answers before the post is given up as lost, so it costs no further copy.
IN_DOUBT_TIMEOUT_FACTOR = 3


# --- the notifier ------------------------------------------------------------------------------


class WebhookPoster(Protocol):
    """What a send needs of its HTTP client: slack_sdk's WebhookClient, or a stand-in."""

    def send_dict(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> WebhookResponse: ...


class SlackNotifier:
    """Posts outbox payloads to a Slack incoming webhook with slack_sdk's WebhookClient.

    Each send ends within a wall-clock deadline (about twice `timeout`, room for one in-call retry; longer for a
    message in doubt, IN_DOUBT_TIMEOUT_FACTOR): urllib's timeout bounds each socket read, not the call, so a server
    trickling its answer a byte at a time would hold a cycle for ever. The post runs in a daemon thread; past the
    deadline the message is "in doubt" (`maybe_delivered`) and the thread is left to end with its socket (it never
    keeps the process up, and it can post nothing more).
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
        self._url, self._timeout = url, timeout
        self._backoff, self._max_retry_after, self._sleep = backoff, max_retry_after, sleep
        self._make_client = client
        self._client = self._webhook(threading.Event(), timeout)  # the SDK client of the send in progress

    def _deadline(self, timeout: float) -> float:
        # Room for the one in-call retry (a refused connection, 500/503, a short 429), never much more.
        return 2 * timeout + self._backoff + min(self._max_retry_after, timeout)

    def _webhook(self, given_up: threading.Event, timeout: float) -> WebhookPoster:
        """A WebhookClient whose in-call retry stops once the caller has given the send up (`given_up`): a post left
        running past the deadline must not post again behind the outbox's back."""
        return self._make_client(
            self._url,
            timeout=timeout,  # urllib takes a float (the SDK annotates int)
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
        timeout = self._timeout * min(1 + message.in_doubt, IN_DOUBT_TIMEOUT_FACTOR)
        client = self._client = self._webhook(given_up, timeout)

        def post() -> None:
            try:
                outcome.append(client.send_dict(payload))
            except BaseException as err:  # handed to the sending thread, classified there
                outcome.append(err)

        worker = threading.Thread(target=post, name="slack-post", daemon=True)
        worker.start()
        deadline = self._deadline(timeout)
        worker.join(deadline)
        shown = self._mask.shown
        if not outcome:
            given_up.set()
            raise NotifyError(
                f"Slack webhook {shown} gave no answer within {deadline:g} s; it may have posted the message",
                maybe_delivered=True,
            )
        result = outcome[0]
        if isinstance(result, BaseException):
            raise self._failure(result) from None
        self._check(result)

    def _failure(self, err: BaseException) -> NotifyError:
        detail = self._mask(f"{type(err).__name__}: {err}")
        if not_sent(err):
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
            retry_after=retry_after_header(response.headers) if limited else None,
            status=response.status_code,
        )


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
