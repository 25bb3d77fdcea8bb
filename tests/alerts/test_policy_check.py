"""Keys of `[alerts.projects]` checked against the organization's project ids and names."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from openai_cost_exporter.alerts.alerter import Alerter
from openai_cost_exporter.alerts.policy_check import unknown_project_keys
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.notify.log_notifier import LogNotifier
from openai_cost_exporter.notify.notifications import Notifications
from openai_cost_exporter.rules import AlertPolicy, ProjectPolicy
from openai_cost_exporter.store.state import open_state

NAMES = {"proj_search": "Search Reranker", "proj_chat": "Customer chat"}


def policy(*keys: str) -> AlertPolicy:
    return AlertPolicy(projects={key: ProjectPolicy(mute=True) for key in keys})


def test_misspelled_name_is_named_with_the_closest_name() -> None:
    """A key that is a misspelled project name gives one line naming it and the name it was probably meant as."""
    (problem,) = unknown_project_keys(policy("Search Rerankr"), NAMES)
    assert problem.startswith('alerts.projects."Search Rerankr" matches no project id or name and is ignored')
    assert problem.endswith('(did you mean "Search Reranker"?)')


def test_ids_and_exact_names_are_known() -> None:
    """Keys that are a project id or an exact project name are not reported."""
    assert unknown_project_keys(policy("proj_chat", "Search Reranker"), NAMES) == []


def test_one_line_per_unknown_key_in_policy_order() -> None:
    """Each unknown key gets its own line, in the policy's order; a key close to nothing gets no hint."""
    problems = unknown_project_keys(policy("proj_serch", "Customer chat", "zzzz"), NAMES)
    assert problems == [
        'alerts.projects."proj_serch" matches no project id or name and is ignored (did you mean "proj_search"?)',
        'alerts.projects."zzzz" matches no project id or name and is ignored',
    ]


def test_the_alerter_says_each_unknown_key_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The cycle's alerter logs a misspelled project key once, not every cycle, and nothing before names are known."""
    conn = open_state(tmp_path / "state.sqlite3")
    policy = AlertPolicy(projects={"Search Rerankr": ProjectPolicy(mute=True)})
    clock = FrozenClock()
    alerter = Alerter(
        policy=policy,
        notifications=Notifications(conn, clock),
        notifier=LogNotifier(logging.getLogger("t")),
        clock=clock,
    )
    alerter.check_policy({})
    for _ in range(3):
        alerter.check_policy({"proj_a": "Search Reranker"})
    lines = [r.getMessage() for r in caplog.records if "Search Rerankr" in r.getMessage()]
    assert len(lines) == 1 and 'did you mean "Search Reranker"' in lines[0]
    conn.close()
