"""The house checks run with the suite, so `scripts/test` (and CI) refuse what `scripts/check` would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON_TREES = ["src", "tests", "bench", "scripts/gen_rule_crds.py", "scripts/render_slack_preview.py"]


@pytest.mark.parametrize(
    "check",
    [
        ["ruff", "format", "--check", *PYTHON_TREES],
        ["ruff", "check", *PYTHON_TREES],
        ["mypy"],
    ],
    ids=["ruff-format", "ruff-check", "mypy-strict"],
)
def test_static_check_passes(check: list[str]) -> None:
    """Formatting, lint and strict typing of src/ are clean."""
    done = subprocess.run([sys.executable, "-m", *check], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
