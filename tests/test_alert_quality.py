"""Alert quality on the simulated organization: an ordinary weekday alerts only for what really runs away."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from openai_cost_exporter.app import build_exporter
from openai_cost_exporter.config import load_settings
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg

KEY = "sk-admin-alert-quality"
#: A Tuesday after a quiet weekend (the fake's weekday rhythm: weekends at about half a weekday).
TUESDAY = dt.date(2026, 11, 24)


@pytest.mark.parametrize("clock_time", [dt.time(0, 20), dt.time(6), dt.time(11, 30), dt.time(17), dt.time(23, 50)])
def test_an_ordinary_weekday_alerts_only_for_the_spiking_projects(
    tmp_path: Path, clock_time: dt.time, caplog: pytest.LogCaptureFixture
) -> None:
    """With the demo's organization, only the spiking project (4x since the night) and the runaway (10x for 40
    minutes) alert, at any hour: no project alerts for a weekday after a quiet weekend, a batch peak or noise."""
    clock = FrozenClock(dt.datetime.combine(TUESDAY, clock_time, dt.UTC))
    org = FakeOrg.generate(seed=7, project_count=40, clock=clock, runaway_project=True, rhythm_projects=True)
    with FakeAdminAPI(org, admin_key=KEY) as api:
        settings = load_settings(base_url=api.base_url, admin_key=KEY, state_dir=tmp_path, listen="")
        exporter = build_exporter(settings, clock=clock)
        try:
            report = exporter.cycle.run_once()
            states = dict(exporter.cycle.alert_states)
        finally:
            exporter.close()
    assert report.ok, report.failed_stages
    assert org.spike_project_id in states and org.agent_loop_project_id in states
    noisy = {org.project(pid).name: state for pid, state in states.items()}
    assert set(states) == {org.spike_project_id, org.agent_loop_project_id}, noisy
    assert "runaway" in states[org.agent_loop_project_id]
    sent = [r.getMessage() for r in caplog.records if " alert for " in r.getMessage()]  # the log notifier
    assert not [line for line in sent if "alert for organization" in line], sent
