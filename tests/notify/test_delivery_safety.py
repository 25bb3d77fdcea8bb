"""Nothing twice, nothing lost (issues 11 and 21): a full disk around the post, a Slack that answers late or hangs,
a SIGKILL between Slack's answer and the commit, a webhook Slack refuses for good. Real SQLite files, a real tmpfs,
the fake Slack on 127.0.0.1; the outbox's back-off runs on a frozen clock, never slept through."""

from __future__ import annotations

import datetime as dt
import errno
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.errors import NotifyError, StateError
from openai_cost_exporter.core.selfmetrics import SelfMetrics
from openai_cost_exporter.notify.delivery import IN_DOUBT_BACKOFF_FACTOR
from openai_cost_exporter.notify.messages import MessageContext, Notifier, OutboxMessage
from openai_cost_exporter.notify.notifications import Notifications
from openai_cost_exporter.notify.slack import SlackNotifier
from openai_cost_exporter.rules import Alert
from openai_cost_exporter.store.state import open_state
from tests.fake_slack import FakeSlack

NOW = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
DAY = NOW.date()
BACKOFF = dt.timedelta(seconds=30)  # defaults.NOTIFY_BACKOFF_SECONDS, the first wait


def spike() -> Alert:
    return Alert(
        rule="spike",
        subject_id="proj_a",
        subject_name="Alpha",
        severity="warning",
        value=Decimal(40),
        threshold=Decimal("1.5"),
        baseline=Decimal(10),
        ratio=Decimal(4),
        level="firing",
    )


def queue_one(notes: Notifications) -> None:
    assert len(notes.decide([spike()], DAY, lambda alert: MessageContext())) == 1


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards: a disk that really fills up."""
    with tempfile.TemporaryDirectory(prefix="ocex-disk-") as name:
        disk = Path(name)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True, check=False
        )
        if mounted.returncode != 0:
            pytest.fail(f"this test needs root to mount a tmpfs at {disk}: {mounted.stderr.strip()}")
        try:
            yield disk
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Write a ballast file until the disk has no byte left; return it (unlink it to free the disk)."""
    ballast = disk / "ballast"
    with ballast.open("wb", buffering=0) as out:
        for size in (1 << 16, 1 << 10, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError as err:
                assert err.errno == errno.ENOSPC, err
    return ballast


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def errors(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("openai_cost_exporter_errors_total", {"stage": "notify"})


def in_doubt(registry: CollectorRegistry) -> float | None:
    """Posts whose answer was lost: the possible duplicates."""
    return registry.get_sample_value("openai_cost_exporter_notifications_in_doubt_total")


def given_up(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("openai_cost_exporter_notifications_given_up_total")


def deliver_until_sent(notes: Notifications, notifier: Notifier, clock: FrozenClock, rounds: int = 10) -> int:
    """Deliver round after round, moving the clock to each retry's time (whatever the back-off); return the rounds
    it took until the message was sent."""
    for round_ in range(1, rounds + 1):
        if notes.deliver(notifier).sent:
            return round_
        (pending,) = notes.pending()
        assert pending.next_attempt_at is not None and pending.next_attempt_at >= clock.now()
        clock.current = pending.next_attempt_at
    raise AssertionError(f"not sent in {rounds} rounds")


def test_a_full_disk_after_the_post_never_posts_twice(small_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    """When the disk fills while Slack takes the post, the failed commit leads to no second post, then or later."""
    clock = FrozenClock(NOW)
    conn = open_state(small_disk / "state.sqlite3")
    notes = Notifications(conn, clock)
    queue_one(notes)
    ballast: list[Path] = []
    with FakeSlack() as slack:
        slack.on_post = lambda: ballast.append(fill(small_disk))
        notifier = SlackNotifier(slack.url, backoff=0)
        with pytest.raises(StateError, match="full"):
            notes.deliver(notifier)
        slack.on_post = None
        assert len(slack.posts) == 1
        assert "could not be recorded" in caplog.text and "not sent again" in caplog.text

        clock.advance(dt.timedelta(hours=1))
        with pytest.raises(StateError, match="full"):  # still full: the outcome is not written, nothing is sent
            notes.deliver(notifier)
        assert len(slack.requests) == 1

        ballast[0].unlink()
        report = notes.deliver(notifier)
        assert (report.sent, report.failed, report.pending) == (0, 0, 0)
        assert len(slack.requests) == 1
    conn.close()
    reopened = open_state(small_disk / "state.sqlite3")
    try:
        assert Notifications(reopened, clock).pending() == []
    finally:
        reopened.close()


def test_a_full_disk_before_the_post_posts_nothing(small_disk: Path) -> None:
    """When the attempt cannot be committed as 'sending' (disk full), nothing is posted; once it can, it is sent."""
    conn = open_state(small_disk / "state.sqlite3")
    try:
        notes = Notifications(conn, FrozenClock(NOW))
        queue_one(notes)
        ballast = fill(small_disk)
        with FakeSlack() as slack:
            notifier = SlackNotifier(slack.url, backoff=0)
            with pytest.raises(StateError, match="full"):
                notes.deliver(notifier)
            assert slack.requests == []
            ballast.unlink()
            assert notes.deliver(notifier).sent == 1
            assert len(slack.posts) == 1
    finally:
        conn.close()


def test_a_slack_that_answers_late_gets_the_message_until_one_answer_arrives(
    tmp_path: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack taking every post but answering late twice: the message is sent again after each lost answer (a longer
    wait each time), never given up, until an answer arrives; each copy is counted as a possible duplicate."""
    clock = FrozenClock(NOW)
    conn = open_state(tmp_path / "state.sqlite3")
    try:
        notes = Notifications(conn, clock, SelfMetrics(registry))
        queue_one(notes)
        with FakeSlack() as slack:
            slack.answer_late_next(2, delay=3)
            notifier = SlackNotifier(slack.url, timeout=0.3, backoff=0)
            first = notes.deliver(notifier)
            assert (first.failed, first.pending, len(slack.posts)) == (1, 1, 1)
            assert "its answer was lost), so the next try may repeat it" in caplog.text
            clock.advance(BACKOFF)
            assert notes.deliver(notifier).deferred == 1  # a lost answer waits longer than a plain failure
            clock.advance(BACKOFF * (IN_DOUBT_BACKOFF_FACTOR - 1))

            second = notes.deliver(notifier)
            assert (second.failed, second.pending, len(slack.posts)) == (1, 1, 2)
            assert "may have been delivered already" in caplog.text and "may show it more than once" in caplog.text
            assert deliver_until_sent(notes, notifier, clock) == 2  # deferred once, then sent
            assert len(slack.posts) == 3 and [r.answered for r in slack.requests] == [True, True, True]
            assert not [r for r in caplog.records if r.levelname == "ERROR"]

            clock.advance(dt.timedelta(hours=3))
            assert notes.deliver(notifier).sent == 0
            assert len(slack.requests) == 3
        assert errors(registry) == 2 and in_doubt(registry) == 2
    finally:
        conn.close()


@pytest.mark.parametrize("taken", [False, True], ids=["not-taken", "taken"])
@pytest.mark.parametrize("backoff", [0.0, 30.0, 3600.0])
def test_slack_hanging_on_its_first_3_posts_then_fine_posts_the_alert(
    tmp_path: Path, registry: CollectorRegistry, taken: bool, backoff: float
) -> None:
    """Slack holding each of its first 3 posts without an answer, then closing the connection: the alert is posted
    whatever the back-off, by exactly one answered request; had Slack taken the hung posts, there is at most one
    copy per lost answer, each counted as a possible duplicate (issue 21: it was tried twice, then given up)."""
    clock = FrozenClock(NOW)
    conn = open_state(tmp_path / "state.sqlite3")
    try:
        notes = Notifications(conn, clock, SelfMetrics(registry), backoff_seconds=backoff)
        queue_one(notes)
        with FakeSlack() as slack:
            slack.hang_next(3, seconds=5, taken=taken)
            deliver_until_sent(notes, SlackNotifier(slack.url, timeout=0.3, backoff=0), clock)
            assert [r.answered for r in slack.requests] == [False, False, False, True]
            assert len(slack.posts) == (4 if taken else 1)
        assert notes.pending() == []
        assert in_doubt(registry) == 3  # the lost answers: Slack may show the message up to 3 more times
        assert registry.get_sample_value("openai_cost_exporter_notifications_sent_total", {"rule": "spike"}) == 1
        assert given_up(registry) == 0
    finally:
        conn.close()


class Scripted:
    """A notifier whose sends end in turn as told: "lost" (no answer), "down" (a 500), "gone" (a 404), else ok."""

    def __init__(self, *outcomes: str) -> None:
        self.outcomes = list(outcomes)
        self.sent = 0

    def send(self, message: OutboxMessage) -> None:
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "lost":
            raise NotifyError("no answer", maybe_delivered=True)
        if outcome == "down":
            raise NotifyError("answered 500: internal_error", status=500)
        if outcome == "gone":
            raise NotifyError("answered 404: no_service", status=404)
        self.sent += 1


def test_a_lost_answer_waits_longer_than_a_plain_failure(tmp_path: Path, registry: CollectorRegistry) -> None:
    """After a lost answer the next try waits IN_DOUBT_BACKOFF_FACTOR times the first back-off, doubling with each
    lost answer up to the cap; a plain failure between them keeps its own, shorter wait; none is given up."""
    clock = FrozenClock(NOW)
    conn = open_state(tmp_path / "state.sqlite3")
    try:
        notes = Notifications(conn, clock, SelfMetrics(registry), backoff_seconds=10, max_backoff_seconds=1000)
        queue_one(notes)
        notifier = Scripted("lost", "down", "lost", "lost", "lost", "lost")
        waits = []
        for _ in range(6):
            assert notes.deliver(notifier).failed == 1
            (pending,) = notes.pending()
            assert pending.next_attempt_at is not None
            waits.append((pending.next_attempt_at - clock.now()).total_seconds())
            clock.current = pending.next_attempt_at
        assert waits == [100, 20, 200, 400, 800, 1000]
        assert notes.deliver(notifier).sent == 1 and notifier.sent == 1
        assert in_doubt(registry) == 5 and errors(registry) == 6 and given_up(registry) == 0
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("status", "body"), [(404, "no_service"), (403, "invalid_token"), (410, "channel_is_archived")]
)
def test_a_webhook_slack_refuses_for_good_gives_the_message_up(
    tmp_path: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture, status: int, body: str
) -> None:
    """A permanent 4xx (a revoked or deleted webhook) gives the message up at once, even one in doubt, with an error
    line and `notifications_given_up_total`; nothing is posted for it afterwards."""
    clock = FrozenClock(NOW)
    conn = open_state(tmp_path / "state.sqlite3")
    try:
        notes = Notifications(conn, clock, SelfMetrics(registry))
        queue_one(notes)
        with FakeSlack() as slack:
            notifier = SlackNotifier(slack.url, timeout=0.3, backoff=0)
            slack.hang_next(1, seconds=5)
            assert notes.deliver(notifier).failed == 1  # in doubt first: that does not keep it from being given up
            clock.advance(dt.timedelta(hours=1))
            slack.fail_next(1, status=status, body=body)
            report = notes.deliver(notifier)
            assert (report.failed, report.pending) == (1, 0)
            (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
            assert "giving up on spike message 1 for proj_a: Slack refused it for good" in line and body in line
            clock.advance(dt.timedelta(hours=3))
            assert notes.deliver(notifier).sent == 0
            assert len(slack.requests) == 2
        assert given_up(registry) == 1 and in_doubt(registry) == 1 and errors(registry) == 2
    finally:
        conn.close()


#: A sender killed (SIGKILL) right after Slack answered 200, before the answer is committed.
KILLED_AFTER_THE_ANSWER = """
import datetime as dt, os, signal, sys
from pathlib import Path
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.notify.notifications import Notifications
from openai_cost_exporter.notify.slack import SlackNotifier
from openai_cost_exporter.store.state import open_state

class KilledAfterTheAnswer(SlackNotifier):
    def send(self, message):
        super().send(message)
        os.kill(os.getpid(), signal.SIGKILL)

now = dt.datetime.fromisoformat(sys.argv[3])
Notifications(open_state(Path(sys.argv[1])), FrozenClock(now)).deliver(KilledAfterTheAnswer(sys.argv[2], backoff=0))
"""


def test_a_sigkill_between_the_answer_and_the_commit_repeats_the_message_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed after Slack's 200 but before the commit, the message is sent once more after the back-off, saying so."""
    state = tmp_path / "state.sqlite3"
    clock = FrozenClock(NOW)
    conn = open_state(state)
    queue_one(Notifications(conn, clock))
    conn.close()
    with FakeSlack() as slack:
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_AFTER_THE_ANSWER, str(state), slack.url, NOW.isoformat()],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert killed.returncode == -9, killed.stderr
        assert len(slack.posts) == 1
        conn = open_state(state)
        try:
            notes = Notifications(conn, clock)
            notifier = SlackNotifier(slack.url, backoff=0)
            assert notes.deliver(notifier).deferred == 1
            assert "left no record of its answer" in caplog.text and "which may repeat it" in caplog.text
            clock.advance(BACKOFF * IN_DOUBT_BACKOFF_FACTOR)  # a lost answer's wait, from the killed attempt
            assert notes.deliver(notifier).sent == 1  # at least once: it is not given up
            assert "Slack may show it more than once" in caplog.text
            clock.advance(dt.timedelta(hours=1))
            assert notes.deliver(notifier).sent == 0
        finally:
            conn.close()
        assert len(slack.posts) == 2
