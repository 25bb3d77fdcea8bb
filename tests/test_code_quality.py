"""The house checks run with the suite, so `scripts/test` (and CI) refuse what `scripts/check` would."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON_TREES = [
    "src",
    "tests",
    "bench",
    "scripts/gen_rule_crds.py",
    "scripts/render_slack_preview.py",
    "scripts/check_sizes.py",
]
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"


@pytest.mark.parametrize(
    "check",
    [
        ["ruff", "format", "--check", *PYTHON_TREES],
        ["ruff", "check", *PYTHON_TREES],
        ["mypy"],
        ["-c", LINT_IMPORTS],
        ["-X", "utf8", "scripts/check_sizes.py"],
    ],
    ids=["ruff-format", "ruff-check", "mypy-strict", "import-contracts", "size-guard"],
)
def test_static_check_passes(check: list[str]) -> None:
    """Formatting, lint and strict typing are clean, the packages import only the layers below them, and no module
    or function outgrows the size guard."""
    argv = [sys.executable, *check] if check[0].startswith("-") else [sys.executable, "-m", *check]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_back_import_breaks_the_layers(tmp_path: Path) -> None:
    """A store module that imports the alerts package fails the import contracts (a copy of src/ is checked)."""
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "src", copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    ledger = copy / "openai_cost_exporter" / "store" / "ledger.py"
    ledger.write_text(ledger.read_text() + "\nfrom openai_cost_exporter.alerts import alerter  # noqa\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(copy)}
    done = subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS], cwd=tmp_path, capture_output=True, text=True, check=False, env=env
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "openai_cost_exporter.store.ledger -> openai_cost_exporter.alerts.alerter" in done.stdout


def test_the_size_guard_names_a_module_past_its_limit(tmp_path: Path) -> None:
    """A module past 300 lines and a function past 40 are each one line of the size guard."""
    spec = importlib.util.spec_from_file_location("check_sizes", ROOT / "scripts" / "check_sizes.py")
    assert spec is not None and spec.loader is not None
    check_sizes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_sizes)
    body = "\n".join(f"    x{n} = {n}" for n in range(41))
    (tmp_path / "big.py").write_text(f"def long():\n{body}\n" + "\n" * 300, encoding="utf-8")
    assert check_sizes.problems(tmp_path) == [
        "big.py: 342 lines (at most 300); split it by what it owns",
        "big.py:long: 42 lines (at most 40)",
    ]
