"""Nothing twice, nothing lost (issue 11): a full disk around the post, a Slack that answers late, a SIGKILL
between Slack's answer and the commit. Real SQLite files, a real tmpfs, the fake Slack on 127.0.0.1."""

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
from openai_cost_exporter.core.errors import StateError
from openai_cost_exporter.core.selfmetrics import SelfMetrics
from openai_cost_exporter.notify.messages import MessageContext
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


def test_a_slack_that_answers_late_gets_each_message_at_most_twice(
    tmp_path: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A late answer puts the message in doubt: one more try after the back-off, then it is given up with an ERROR."""
    clock = FrozenClock(NOW)
    conn = open_state(tmp_path / "state.sqlite3")
    try:
        notes = Notifications(conn, clock, SelfMetrics(registry))
        queue_one(notes)
        with FakeSlack() as slack:
            slack.answer_late_next(10, delay=3)
            notifier = SlackNotifier(slack.url, timeout=0.3, backoff=0)
            first = notes.deliver(notifier)
            assert (first.failed, first.pending, len(slack.posts)) == (1, 1, 1)
            assert "it may have been, so the next try may repeat it" in caplog.text
            assert notes.deliver(notifier).deferred == 1  # the back-off first

            clock.advance(BACKOFF)
            second = notes.deliver(notifier)
            assert (second.failed, second.pending, len(slack.posts)) == (1, 0, 2)
            assert "may have been delivered already" in caplog.text and "Slack may show it twice" in caplog.text
            (given_up,) = [r for r in caplog.records if r.levelname == "ERROR"]
            assert "giving up on spike message 1 for proj_a" in given_up.getMessage()

            for _ in range(3):
                clock.advance(dt.timedelta(hours=1))
                assert notes.deliver(notifier).sent == 0
            assert len(slack.requests) == 2
        assert errors(registry) == 2
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
            clock.advance(BACKOFF)
            assert notes.deliver(notifier).sent == 1  # at least once: it is not given up
            assert "Slack may show it twice" in caplog.text
            clock.advance(dt.timedelta(hours=1))
            assert notes.deliver(notifier).sent == 0
        finally:
            conn.close()
        assert len(slack.posts) == 2
