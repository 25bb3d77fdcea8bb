"""The size guard: no module of src/ over MODULE_LINES lines, no function over FUNCTION_LINES lines.

An exception is listed below with its reason and the size it has: it may shrink, never grow. A new module or
function past the limit fails `scripts/check` and the suite (tests/test_code_quality.py), so the structure holds by
itself instead of one later feature at a time.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "openai_cost_exporter"
MODULE_LINES = 300
FUNCTION_LINES = 40

#: Module (path under the package) -> (most lines allowed, why it may be longer for now).
MODULES: dict[str, tuple[int, str]] = {
    "service.py": (385, "the cycle's stages in order; the alert decision leaves it with the pure decide step"),
    "sources/openai/client.py": (371, "one client per API: paging, retries and the quirks of five endpoints"),
    "cli/report.py": (338, "gathering and three renderings (table, CSV, JSON) of one report"),
    "ingest/directory.py": (345, "the paced background listings with their queue, urgency and failure pause"),
    "rules/__init__.py": (322, "the policy model shared by every rule; the rules themselves are modules of their own"),
    "app.py": (305, "the wiring of every collaborator in one place"),
    "web/page.py": (309, "the spend page's HTML, one template"),
    "fake/org.py": (303, "the simulated organization's truth, which every fake endpoint reads"),
    "store/ledger.py": (307, "the cost ledger's reads and writes, and the project list beside it (next to move out)"),
}
#: Function (path:qualified name) -> (most lines allowed, why).
FUNCTIONS: dict[str, tuple[int, str]] = {
    "store/ledger.py:Ledger.replace_days": (52, "one transaction over both row tables, kept in one piece"),
    "backfill.py:backfill": (45, "the backfill command's steps in order"),
    "export/history.py:push_closed_days": (43, "fetch, push and mark of closed days in one loop"),
    "service.py:CostCycle.run_once": (42, "the cycle's stages in order"),
    "export/collector.py:CostCollector.collect": (41, "one yield per family"),
}


def functions(tree: ast.Module) -> list[tuple[str, int]]:
    """(qualified name, lines from `def` to the end of the body) of every function and method."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                found.append((name, (child.end_lineno or child.lineno) - child.lineno + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return found


def problems(package: Path = PACKAGE) -> list[str]:
    """Every module and function past its limit (or past its listed exception's size)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        limit, _ = MODULES.get(name, (MODULE_LINES, ""))
        if lines > limit:
            found.append(f"{name}: {lines} lines (at most {limit}); split it by what it owns")
        for function, length in functions(ast.parse(text)):
            most, _ = FUNCTIONS.get(f"{name}:{function}", (FUNCTION_LINES, ""))
            if length > most:
                found.append(f"{name}:{function}: {length} lines (at most {most})")
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
