"""Settings typos: `OPENAI_COST_EXPORTER_*` variables no setting reads, named with the closest real one.

pydantic-settings ignores an environment variable it does not know, so `..._INTERVALL=5` would pass unseen; the
CLI logs these once at start-up (commands.py).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping

from pydantic import AliasChoices

from openai_cost_exporter.config import ENV_PREFIX, Settings
from openai_cost_exporter.core.clock import TEST_NO_BACKOFF_ENV, TEST_NOW_ENV
from openai_cost_exporter.rules import AlertPolicy


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """One problem per `OPENAI_COST_EXPORTER_*` variable that no setting reads (the environment source ignores
    them), each with the closest known name: a typo such as `..._INTERVALL` would otherwise pass unseen."""
    environ = os.environ if environ is None else environ
    # Each name as it follows the prefix -> the variable to suggest (aliased fields have their own variable).
    known = {name.upper(): _env_name(name, info.validation_alias) for name, info in Settings.model_fields.items()}
    known |= {f"ALERTS__{name.upper()}": f"{ENV_PREFIX}ALERTS__{name.upper()}" for name in AlertPolicy.model_fields}
    known[TEST_NOW_ENV.removeprefix(ENV_PREFIX)] = TEST_NOW_ENV
    known[TEST_NO_BACKOFF_ENV.removeprefix(ENV_PREFIX)] = TEST_NO_BACKOFF_ENV
    read = {env for env in known.values() if env.startswith(ENV_PREFIX)}
    problems = []
    for name in sorted(environ):
        upper = name.upper()  # pydantic-settings reads names case-insensitively
        if not upper.startswith(ENV_PREFIX) or upper in read or upper.startswith(f"{ENV_PREFIX}ALERTS__PROJECTS__"):
            continue
        close = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), sorted(known), n=1)
        hint = f" (did you mean {known[close[0]]}?)" if close else ""
        problems.append(f"unknown environment variable {name} is ignored{hint}")
    return problems


def _env_name(field: str, alias: object) -> str:
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"{ENV_PREFIX}{field.upper()}"
