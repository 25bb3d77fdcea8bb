"""Checks of the alert policy that need the organization's project names, known only once a cycle has run.

A key of `[alerts.projects]` is matched exactly against a project id or name (rules.project_limits); a misspelled key
matches nothing, and the rules silently use the defaults for the project it was meant for.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from openai_cost_exporter.rules import AlertPolicy


def unknown_project_keys(policy: AlertPolicy, names: Mapping[str, str]) -> list[str]:
    """One line per key of `policy.projects` that is neither a project id nor a name in `names` (id -> name),
    with the closest name or id when one is close, in the policy's order."""
    known = set(names) | set(names.values())
    candidates = sorted(known)
    problems = []
    for key in policy.projects:
        if key in known:
            continue
        close = difflib.get_close_matches(key, candidates, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        problems.append(f'alerts.projects."{key}" matches no project id or name and is ignored{hint}')
    return problems
