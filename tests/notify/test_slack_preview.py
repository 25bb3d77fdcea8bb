"""Tests of scripts/render_slack_preview.py: Block Kit to HTML (pure) and, where Chromium is installed, the PNG."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
import struct
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from openai_cost_exporter.notify.messages import MessageContext
from openai_cost_exporter.notify.slack_blocks import build_alert_message, build_digest_message
from openai_cost_exporter.rules import ORGANIZATION, build_digest
from tests.notify.test_slack import alert
from tests.stack import require_binary

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "render_slack_preview.py"
D = Decimal
EVIL = "<script>alert('x')</script> & Co"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_slack_preview", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


preview = load_script()


def real_payloads() -> list[dict[str, Any]]:
    day = dt.date(2026, 11, 27)
    full = MessageContext(line_items=[("gpt-4o", D(3))], data_time=dt.datetime(2026, 11, 28, tzinfo=dt.UTC))
    return [
        build_alert_message(alert(), full),
        build_alert_message(alert(subject_id=ORGANIZATION, rule="daily_budget", severity="critical"), MessageContext()),
        build_alert_message(alert(value=D(9)), MessageContext(escalation=True, previous_value=D(3))),
        build_alert_message(alert(rule="monthly_budget", level="forecast"), MessageContext()),
        build_digest_message(build_digest(day, {"p1": D(30), "p2": D(5)}, {"p1": D(10)}, {"p1": "One"})),
        build_digest_message(build_digest(day, {}, {}, {})),
        preview.sample_alert_payload(),
        preview.sample_digest_payload(),
    ]


def text_of(page: str) -> str:
    return re.sub(r"<[^>]+>", "", page.split("<body>", 1)[1])


@pytest.mark.parametrize("payload", real_payloads())
def test_renders_every_block_of_real_messages(payload: dict[str, Any]) -> None:
    """Each block of a real alert or digest message becomes one element of the page, header text included."""
    page = preview.blocks_to_html(payload)
    assert page.count('class="block ') == len(payload["blocks"])
    for block in payload["blocks"]:
        assert f'class="block {block["type"]}"' in page
        if "fields" in block:
            assert page.count('class="field"') >= len(block["fields"])
    assert payload["blocks"][0]["text"]["text"] in page
    assert "openai-cost-exporter" in page and "APP" in page


def test_sample_alert_is_the_readme_spike() -> None:
    """The sample alert shows the README's project, figures, line items, data time and a real usage link."""
    words = text_of(preview.blocks_to_html(preview.sample_alert_payload()))
    for expected in (
        "Spend spike: Search Reranker",
        "proj_MEGWC5wplWfsEvBLeFkv5A7e",
        "$18.24",
        "$4.56 (usual by now, 7 days of its kind)",
        "4.0×",
        "text-embedding-3-small, input: $1.79",
        "Data as of 2026-11-28 20:00 UTC",
    ):
        assert expected in words
    page = preview.blocks_to_html(preview.sample_alert_payload())
    assert 'href="https://platform.openai.com/settings/organization/usage?project_id=proj_MEGW' in page


def test_names_with_script_are_escaped() -> None:
    """A project or line item called `<script>` is shown as text, in the header and in mrkdwn, escaped once."""
    payload = build_alert_message(alert(subject_name=EVIL), MessageContext(line_items=[(EVIL, D(1))]))
    page = preview.blocks_to_html(payload, app_name="<b>app</b>", posted="<i>now</i>")
    assert "<script" not in page and "<b>app" not in page and "<i>" not in page
    # once from the plain-text header, twice from mrkdwn (project field, line item) where Slack escaped it first
    assert page.count("&lt;script&gt;alert('x')&lt;/script&gt; &amp; Co") == 3
    assert "&amp;amp;" not in page and "&amp;lt;" not in page


@pytest.mark.parametrize(
    ("mrkdwn", "expected"),
    [
        ("*Project*\nSearch", "<b>Project</b><br>Search"),
        ("`proj_a*b*c`", "<code>proj_a*b*c</code>"),
        ("a*b*c and *two words*", "a*b*c and <b>two words</b>"),
        ("* not bold *", "* not bold *"),
        (
            "<https://x.test/u?a=1&amp;b=2|usage &amp; more>",
            '<a href="https://x.test/u?a=1&amp;b=2">usage &amp; more</a>',
        ),
        ('<https://x.test/">', '<a href="https://x.test/&quot;">https://x.test/&quot;</a>'),
        ("<javascript:alert(1)|click>", "click"),
        ("<!here> hi", "!here hi"),
        ("• R&amp;D &lt;lab&gt;: $1.00", "• R&amp;D &lt;lab&gt;: $1.00"),
        ("`&lt;b&gt;` *&lt;i&gt;*", "<code>&lt;b&gt;</code> <b>&lt;i&gt;</b>"),
        ("nul\x00byte", "nulbyte"),
    ],
)
def test_mrkdwn_to_html(mrkdwn: str, expected: str) -> None:
    """The mrkdwn subset converts bold, code, safe links and newlines, and leaves everything else as text."""
    assert preview.mrkdwn_to_html(mrkdwn) == expected


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"type": "divider"}, '<hr class="block divider">'),
        (
            {"type": "section", "text": {"type": "plain_text", "text": "*a*\n<b>"}},
            '<div class="block section"><div class="text">*a*<br>&lt;b&gt;</div></div>',
        ),
        (
            {
                "type": "context",
                "elements": [{"type": "image", "alt_text": "<logo>"}, {"type": "mrkdwn", "text": "*x*"}],
            },
            '<div class="block context">&lt;logo&gt; <b>x</b></div>',
        ),
    ],
)
def test_other_blocks(block: dict[str, Any], expected: str) -> None:
    """Dividers, plain-text sections and context images (as their alt text) are rendered too."""
    assert preview.block_to_html(block) == expected


def test_unknown_block_type_is_refused() -> None:
    """A block type the converter does not know raises, so a new one in our messages is noticed."""
    with pytest.raises(ValueError, match="actions"):
        preview.blocks_to_html({"blocks": [{"type": "actions", "elements": []}]})


def test_text_only_payload_and_no_external_resources() -> None:
    """A payload without blocks shows its text, and no page loads anything from outside."""
    page = preview.blocks_to_html({"text": "*only* text"})
    assert "<b>only</b> text" in page
    for payload in [*real_payloads(), {"text": "x"}]:
        shown = preview.blocks_to_html(payload)
        assert not re.search(r"<(script|img|link|iframe)\b|url\(|@import|src=", shown)


def test_main_reports_a_missing_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a working Chromium the script writes the HTML, says why it failed and exits 1."""
    html_file, png = tmp_path / "digest.html", tmp_path / "out" / "digest.png"
    code = preview.main(
        ["--message", "digest", "--html", str(html_file), "--out", str(png), "--chromium", str(tmp_path / "none")]
    )
    assert code == 1
    assert "OpenAI spend on 2026-11-27" in html_file.read_text(encoding="utf-8")
    assert "render_slack_preview:" in capsys.readouterr().err
    assert not png.exists()


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_committed_picture_is_a_message_sized_png() -> None:
    """docs/slack-alert.png, which the README shows, is a 2x PNG cropped to about one message."""
    width, height = png_size((ROOT / "docs" / "slack-alert.png").read_bytes())
    assert width == preview.WIDTH * 2
    assert 400 < height < 1000


def test_chromium_screenshot_is_cropped_to_the_message(tmp_path: Path) -> None:
    """Headless Chromium renders the sample alert into a PNG exactly as tall as the message it measured."""
    out = tmp_path / "alert.png"
    width, height = preview.screenshot(
        preview.blocks_to_html(preview.sample_alert_payload()), out, chromium=require_binary("chromium"), scale=1
    )
    assert png_size(out.read_bytes()) == (width, height) == (preview.WIDTH, height)
    assert 200 < height < 500  # header, four fields, three line items and the footer; not the 2000 px window
