"""The CLI when a new user gets something wrong or looks for help: separate processes, real sockets on 127.0.0.1.

Each mistake is one line on stderr naming what to change, with exit 2 when a person must act (cli.main).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from tests.clirun import ADMIN_KEY, run_cli
from tests.test_cli_demo import cli_process, demo_now, http_get, wait_ready

#: A base URL that refuses connections at once, for commands that must fail before any API request.
NO_API = "http://127.0.0.1:9/v1"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 with a listening socket on it, for as long as the test runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def error_lines(stderr: str) -> list[str]:
    """The lines cli.main printed (log lines start with a timestamp)."""
    return [line for line in stderr.splitlines() if line.startswith("openai-cost-exporter:")]


@pytest.mark.parametrize("command", ["demo", "run"])
def test_a_busy_port_is_one_line_and_exit_2(command: str, busy_port: int, tmp_path: Path) -> None:
    """`demo --port P` and `run --listen 127.0.0.1:P` with P in use print one line naming the address and the
    flags to change, exit 2, and the demo prints no banner."""
    if command == "demo":
        args = ["demo", "--port", str(busy_port), "--projects", "5"]
    else:
        args = ["run", "--listen", f"127.0.0.1:{busy_port}", "--base-url", NO_API, "--state-dir", str(tmp_path)]
    result = run_cli(*args)
    assert result.returncode == 2, result.output
    expected = (
        f"openai-cost-exporter: cannot listen on 127.0.0.1:{busy_port}: address already in use "
        "(choose another --listen / --port)"
    )
    assert error_lines(result.stderr) == [expected], result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""  # the demo's banner comes only once its page listens


def test_demo_on_port_0_prints_the_port_it_got(tmp_path: Path) -> None:
    """`demo --port 0` prints the port the system picked in its banner, and the page answers there."""
    with cli_process(tmp_path, "demo", "--port", "0", "--projects", "5", now=demo_now()) as demo:
        demo.wait_for_output("spend page   http://127.0.0.1:", "stdout")
        found = re.search(r"spend page   http://127\.0\.0\.1:(\d+)/", demo.stdout())
        assert found and int(found.group(1)) > 0, demo.describe()
        assert "127.0.0.1:0/" not in demo.stdout()
        wait_ready(f"http://127.0.0.1:{found.group(1)}/healthz", demo)
        demo.terminate()
    assert demo.process.returncode == 0, demo.describe()


@pytest.mark.parametrize("state_dir", ["nowhere", "."])
def test_offline_report_without_a_state_file_is_one_line_and_exit_2(state_dir: str, tmp_path: Path) -> None:
    """`report --offline` without a state file (or without its directory) prints one line saying to run `run` or
    `backfill` first, exits 2, and creates nothing."""
    where = tmp_path / state_dir
    result = run_cli("report", "--offline", "--state-dir", str(where), "--base-url", NO_API)
    assert result.returncode == 2, result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.output
    assert f"no state file at {where / 'state.sqlite3'}" in result.stderr
    assert "run `run` or `backfill` first" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_base_url_without_v1_names_the_url_and_the_fix(tmp_path: Path) -> None:
    """A base URL without `/v1` ends, after the retried 404s, in one line naming the URL asked and hinting that
    the base URL usually ends in /v1."""
    with FakeAdminAPI(FakeOrg.generate(seed=3, project_count=3), admin_key=ADMIN_KEY) as api:
        root = api.start().removesuffix("/v1")
        result = run_cli("report", "--days", "3", "--base-url", root, "--state-dir", str(tmp_path))
    assert result.returncode == 1, result.output
    [line] = error_lines(result.stderr)
    assert re.search(rf"HTTP 404: .* from {re.escape(root)}/organization/\w+ ", line), line
    assert line.endswith("(is --base-url right? it usually ends in /v1, e.g. https://api.openai.com/v1)"), line
    assert "Traceback" not in result.output


def test_fake_api_help_describes_every_flag_and_the_runaway_control() -> None:
    """`fake-api --help` explains --host, --port (0 = any free port), --seed, --projects, --amounts, --runaway and
    --rhythm, and names the /_fake/runaway control endpoint."""
    result = run_cli("fake-api", "--help")
    assert result.returncode == 0, result.output
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert "/_fake/runaway" in text
    for flag in ("--host HOST", "--seed SEED", "--projects PROJECTS", "--runaway", "--rhythm"):
        assert re.search(rf"{flag} [a-z(']", text), flag  # the flag is followed by its help text
    assert "--amounts {number,string,mixed} how cost amounts" in text
    assert "--port PORT port to listen on (default 0: any free port" in text


def test_fake_api_runaway_and_rhythm_add_their_projects(tmp_path: Path) -> None:
    """`fake-api --runaway --rhythm` serves 'Agent Loop' and the three rhythm projects on top of --projects."""
    args = ["fake-api", "--port", "0", "--projects", "4", "--key", ADMIN_KEY, "--runaway", "--rhythm"]
    with cli_process(tmp_path, *args) as fake:
        fake.wait_for_output("fake OpenAI Admin API on http://127.0.0.1:", "stdout")
        found = re.search(r"on (http://127\.0\.0\.1:\d+/v1) ", fake.stdout())
        assert found, fake.describe()
        response = http_get(
            f"{found.group(1)}/organization/projects",
            params={"limit": "100", "include_archived": "true"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        fake.terminate()
    assert response.status_code == 200, response.text
    names = {project["name"] for project in response.json()["data"]}
    assert {"Agent Loop", "Nightly Batch", "Steady Search", "Tiny Tool"} <= names
    assert len(names) == 4 + 4, names
