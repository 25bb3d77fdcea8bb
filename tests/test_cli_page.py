"""The spend page as a user sees it: `run --listen` against the fake organization, driven by headless Chromium."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from tests.clirun import ADMIN_KEY, cli_now, serving
from tests.moments import WEDNESDAY_2000
from tests.web.test_page import DOCS_SCREENSHOT, parse, run_chromium


@pytest.fixture
def org() -> FakeOrg:
    return FakeOrg.generate(seed=7, project_count=40, clock=FrozenClock(WEDNESDAY_2000))


@pytest.fixture
def page_url(org: FakeOrg, tmp_path: Path) -> Iterator[str]:
    """A running `run --listen` whose first cycle has completed."""
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as api, serving(api.base_url, tmp_path, now=cli_now(org)) as url:
        yield url  # the exporter's today is the fake's, whatever the real time


def test_page_shows_the_organization(page_url: str, org: FakeOrg, tmp_path: Path) -> None:
    """Chromium renders one bar per day of the last 30, ordered in height like the fake's daily totals, and
    the table lists the projects with an alert state first, the spiking one among them; the screenshot goes to
    the README."""
    dom = parse(run_chromium(page_url, tmp_path / "profile", "--dump-dom").stdout.encode())
    today = org.clock.now().date()
    days = [today - dt.timedelta(days=n) for n in range(29, -1, -1)]
    assert [bar["data-day"] for bar in dom.bars] == [day.isoformat() for day in days]
    truth = {day.isoformat(): sum(org.daily_totals(day).values(), Decimal(0)) for day in days}
    shown = {str(bar["data-day"]): Decimal(str(bar["data-total"])) for bar in dom.bars}
    assert sorted(shown, key=lambda d: shown[d]) == sorted(truth, key=lambda d: truth[d])
    # Projects with an alert state first: the spike, and the projects near or at their hard limits (judged in the
    # first cycle, which waits for the limit listings), biggest spend first.
    limits = {org.near_limit_project_id, org.limit_reached_project_id}
    assert org.spike_project_id in dom.rows[: 1 + len(limits)]
    assert set(dom.rows[: dom.rows.index(org.spike_project_id)]) <= limits
    text = " ".join(dom.text)
    assert "spike (" in text and "Search Reranker" in text
    shot = tmp_path / "spend-page.png"
    run_chromium(page_url, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1280,1000")
    assert shot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.write_bytes(shot.read_bytes())
