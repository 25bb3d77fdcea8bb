"""The one exception tree of the exporter.

    ExporterError
    ├── ConfigError            invalid settings; every problem in one message
    ├── OpenAIError            the Admin API could not give us data
    │   ├── AuthError          401: the admin key is rejected (for every endpoint); never retried
    │   │   └── ScopeError     403: the key lacks a scope for this endpoint (api.usage.read); never retried
    │   ├── APIUnavailable     429/5xx/404/timeouts/resets that outlived the retry budget
    │   ├── GroupingRefused    400: costs by api_key_id are refused for this window (before 2025-12-06)
    │   └── MalformedResponse  a page that is not JSON or not shaped like the schema
    ├── PushError              VictoriaMetrics (or vmagent) did not accept a push
    ├── StateError             the SQLite state file is corrupt, foreign or from a newer version
    │   └── StateDirBusy       another live process holds the state dir's sender lock (`pid` when it wrote one)
    └── NotifyError            a notifier did not take a message (it stays pending); it says whether the post
                               may have been delivered (`maybe_delivered`: it went out and no answer came back)
                               and how long the target asked to wait (`retry_after`)

Inside their modules, and never past them: `sources.openai.failures.Transient` (what the client's stamina policy
retries), `core.replies.ReplyTooSlow` / `ReplyTooLarge` (turned into the caller's OpenAIError or PushError),
`core.side_by_side._Stopped` and `sources.openai.responses._RejectedAmount` (control flow of one function).

Clients raise; only the service loop catches, logs one line, counts it by stage and carries on.
Messages never contain the admin key or the webhook URL.
"""

from __future__ import annotations


class ExporterError(Exception):
    """Base of every error the exporter raises on purpose; `reported` when the stage that raised it said so in the
    log already (the usage endpoints refused, once): the loop then counts it without another line."""

    reported: bool = False


class ConfigError(ExporterError):
    """The settings are invalid."""


class OpenAIError(ExporterError):
    """The OpenAI Admin API did not give us usable data."""


class AuthError(OpenAIError):
    """The admin key was rejected (401), or lacks a scope (403: the ScopeError subclass)."""


class ScopeError(AuthError):
    """The admin key lacks a scope for one endpoint (403): the other endpoints may still answer."""


class APIUnavailable(OpenAIError):
    """Transient failures (429, 5xx, 404, timeouts) outlasted the retries."""


class GroupingRefused(OpenAIError):
    """The costs endpoint refused `group_by=api_key_id` for a window (a 400 that names the key epoch)."""


class MalformedResponse(OpenAIError):
    """A response body is not valid JSON or does not have the documented shape."""


class PushError(ExporterError):
    """A push to VictoriaMetrics failed."""


class StateError(ExporterError):
    """The state file cannot be used."""


class StateDirBusy(StateError):
    """Another live process holds the sender lock of `state_dir` (its `pid`, when it wrote one): a second service is
    a mistake a person must fix, an overlapping `run --once` only skips its turn (cli/main.py)."""

    def __init__(self, message: str, *, state_dir: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.state_dir = state_dir
        self.pid = pid


class NotifyError(ExporterError):
    """A notifier did not take a message: whether it `maybe_delivered` (the request went out and its answer did
    not come back, so a retry may repeat it), the wait in seconds the target asked for (`retry_after`, Slack's
    429), and its HTTP `status` (None when nothing went out or no answer came)."""

    def __init__(
        self,
        message: str,
        *,
        maybe_delivered: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.maybe_delivered = maybe_delivered
        self.retry_after = retry_after
        self.status = status
