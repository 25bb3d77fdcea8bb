#!/usr/bin/env python3
"""Render the built-in Slack alert as Slack would show it, for the README (docs/slack-alert.png).

The message is built by the real `build_alert_message` (or `build_digest_message`), its Block Kit blocks are turned
into a static HTML page that imitates Slack's message look (no external resources), and headless Chromium takes a
screenshot cropped to the message. Usage:

    python scripts/render_slack_preview.py                      # writes docs/slack-alert.png
    python scripts/render_slack_preview.py --message digest --out /tmp/digest.png --html /tmp/digest.html

Slack's own font is Lato (Debian: fonts-lato); without it the page falls back to the system sans-serif.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from openai_cost_exporter.notify.messages import MessageContext
from openai_cost_exporter.notify.slack_blocks import build_alert_message, build_digest_message
from openai_cost_exporter.rules import Alert, build_digest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "slack-alert.png"
APP_NAME = "openai-cost-exporter"
DATA_TIME = dt.datetime(2026, 11, 28, 20, 0, tzinfo=dt.UTC)
WIDTH = 640
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # CI and this machine run as root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
_LINK = re.compile(r"<([^<>|\n]+)(?:\|([^<>\n]*))?>")
_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"(?<![\w*])\*(\S(?:[^*\n]*?\S)?)\*(?![\w*])")
_TOKEN = re.compile(r"\x00(\d+)\x00")
_SAFE_SCHEMES = ("https://", "http://", "mailto:")
_HEIGHT = re.compile(r'data-height="(\d+)"')
_MEASURE = (
    "<script>document.body.dataset.height ="
    " Math.ceil(document.querySelector('.frame').getBoundingClientRect().bottom);</script>"
)

# --- the sample messages ----------------------------------------------------------------------------------


def sample_alert_payload() -> dict[str, Any]:
    """The README's spike: Search Reranker at $18.24 today, 4.0× its usual by now of $4.56."""
    alert = Alert(
        rule="spike",
        subject_id="proj_MEGWC5wplWfsEvBLeFkv5A7e",
        subject_name="Search Reranker",
        severity="warning",
        value=Decimal("18.24"),
        threshold=Decimal("6.84"),  # the default spike ratio 1.5 times the baseline
        baseline=Decimal("4.56"),
        ratio=Decimal(4),
        level="firing",
    )
    items = [
        ("gpt-4.1-2025-04-14, output", Decimal("10.23")),
        ("gpt-4.1-2025-04-14, input", Decimal("6.22")),
        ("text-embedding-3-small, input", Decimal("1.79")),
    ]
    return build_alert_message(alert, MessageContext(line_items=items, data_time=DATA_TIME))


def sample_digest_payload() -> dict[str, Any]:
    """A daily digest of three projects, one of them spiking."""
    digest = build_digest(
        DATA_TIME.date() - dt.timedelta(days=1),
        {"proj_a": Decimal("18.24"), "proj_b": Decimal("7.10"), "proj_c": Decimal("0.42")},
        {"proj_a": Decimal("4.56"), "proj_b": Decimal("7.35"), "proj_c": Decimal("0.40")},
        {"proj_a": "Search Reranker", "proj_b": "Support Bot", "proj_c": "Nightly Evals"},
    )
    return build_digest_message(digest)


#: name -> (payload builder, the time Slack shows: the alert right after its data, the digest after midnight)
SAMPLES: dict[str, tuple[Callable[[], dict[str, Any]], str]] = {
    "alert": (sample_alert_payload, "8:01 PM"),
    "digest": (sample_digest_payload, "12:05 AM"),
}

# --- Block Kit to HTML --------------------------------------------------------------------------------------


def _unslack(text: str) -> str:
    """Slack mrkdwn escapes only &, < and >; undo that so the text can be HTML-escaped once."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _link(target: str, label: str | None) -> str:
    shown = html.escape(_unslack(label if label else target))
    url = _unslack(target)
    if not url.startswith(_SAFE_SCHEMES):  # `<!here>`, `<@U123>`, `javascript:`: shown as text, never a link
        return shown
    return f'<a href="{html.escape(url, quote=True)}">{shown}</a>'


def mrkdwn_to_html(text: str) -> str:
    """Slack mrkdwn subset to HTML: *bold*, `code`, <url|text> links, newlines; everything else is text."""
    stash: list[str] = []

    def keep(fragment: str) -> str:
        stash.append(fragment)
        return f"\x00{len(stash) - 1}\x00"

    text = text.replace("\x00", "")
    text = _CODE.sub(lambda m: keep(f"<code>{html.escape(_unslack(m[1]))}</code>"), text)
    text = _LINK.sub(lambda m: keep(_link(m[1], m[2])), text)
    text = html.escape(_unslack(text), quote=False)
    text = _BOLD.sub(r"<b>\1</b>", text)
    text = _TOKEN.sub(lambda m: stash[int(m[1])], text)
    return text.replace("\n", "<br>")


def text_to_html(obj: Mapping[str, Any]) -> str:
    """A Block Kit text object: mrkdwn through the subset above, plain_text escaped as it is."""
    text = str(obj.get("text", ""))
    if obj.get("type") == "mrkdwn":
        return mrkdwn_to_html(text)
    return html.escape(text, quote=False).replace("\n", "<br>")


def _section(block: Mapping[str, Any]) -> str:
    parts = []
    if "text" in block:
        parts.append(f'<div class="text">{text_to_html(block["text"])}</div>')
    if block.get("fields"):
        cells = "".join(f'<div class="field">{text_to_html(f)}</div>' for f in block["fields"])
        parts.append(f'<div class="fields">{cells}</div>')
    return f'<div class="block section">{"".join(parts)}</div>'


def _context(block: Mapping[str, Any]) -> str:
    # image elements would need their (external) image: their alt text stands in for them
    shown = [text_to_html(e) if "text" in e else html.escape(str(e.get("alt_text", ""))) for e in block["elements"]]
    return f'<div class="block context">{" ".join(shown)}</div>'


def block_to_html(block: Mapping[str, Any]) -> str:
    """One block of the types our messages use; any other type raises ValueError, so a new one is noticed."""
    kind = block.get("type")
    if kind == "header":
        return f'<div class="block header">{text_to_html(block["text"])}</div>'
    if kind == "section":
        return _section(block)
    if kind == "context":
        return _context(block)
    if kind == "divider":
        return '<hr class="block divider">'
    raise ValueError(f"unsupported Block Kit block type: {kind!r}")


def blocks_to_html(payload: Mapping[str, Any], *, app_name: str = APP_NAME, posted: str = "8:01 PM") -> str:
    """A static HTML page showing the payload's blocks as one Slack message from the app."""
    blocks = payload.get("blocks") or [{"type": "section", "text": {"type": "mrkdwn", "text": payload["text"]}}]
    body = "\n".join(block_to_html(b) for b in blocks)
    name, time = html.escape(app_name), html.escape(posted)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{name}</title>
<style>{_CSS}</style></head>
<body><div class="frame"><div class="message">
<div class="avatar" aria-hidden="true">{_AVATAR}</div>
<div class="content">
<div class="meta"><span class="name">{name}</span><span class="app">APP</span><span class="time">{time}</span></div>
{body}
</div></div></div></body></html>
"""


_AVATAR = (
    '<svg viewBox="0 0 36 36" width="36" height="36"><rect width="36" height="36" rx="6" fill="#10a37f"/>'
    '<rect x="8" y="20" width="5" height="8" rx="1" fill="#fff"/><rect x="15.5" y="14" width="5" height="14"'
    ' rx="1" fill="#fff"/><rect x="23" y="8" width="5" height="20" rx="1" fill="#fff"/></svg>'
)
_CSS = """
* { box-sizing: border-box; }
html, body { margin: 0; background: #fff; }
body { font: 15px/1.46668 Lato, "Slack-Lato", "Helvetica Neue", Helvetica, Arial, sans-serif; color: #1d1c1d; }
.frame { padding: 16px 20px 14px; }
.message { display: flex; align-items: flex-start; }
.avatar { flex: 0 0 36px; height: 36px; margin: 4px 8px 0 0; }
.content { flex: 1 1 auto; min-width: 0; }
.meta { line-height: 22px; }
.name { font-weight: 900; }
.app { margin-left: 4px; padding: 1px 3px; border-radius: 2px; background: rgba(29,28,29,.13);
       color: rgba(29,28,29,.7); font-size: 10px; font-weight: 700; vertical-align: 2px; }
.time { margin-left: 6px; color: #616061; font-size: 12px; }
.block { margin: 4px 0 0; max-width: 560px; }
.header { margin-top: 6px; font-size: 18px; font-weight: 900; line-height: 1.33; }
.fields { display: grid; grid-template-columns: 1fr 1fr; column-gap: 16px; row-gap: 8px; margin-top: 8px; }
.field { overflow-wrap: anywhere; }
.section > .text + .fields { margin-top: 8px; }
.context { margin-top: 8px; color: #616061; font-size: 12px; line-height: 1.5; }
.divider { border: 0; border-top: 1px solid #e8e8e8; margin: 10px 0 6px; }
b { font-weight: 700; }
a { color: #1264a3; text-decoration: none; }
code { padding: 2px 3px 1px; border: 1px solid rgba(29,28,29,.13); border-radius: 3px;
       background: rgba(29,28,29,.04); color: #e01e5a; font: 12px/1.5 Monaco, Menlo, Consolas, "DejaVu Sans Mono",
       "Courier New", monospace; }
"""

# --- the screenshot ----------------------------------------------------------------------------------------


def _chromium(binary: str, profile: Path, *args: str) -> str:
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


def screenshot(page: str, out: Path, *, chromium: str, width: int = WIDTH, scale: int = 2) -> tuple[int, int]:
    """Screenshot `page` into `out`, as tall as the message; returns the CSS size (width, height) it used."""
    with tempfile.TemporaryDirectory(prefix="slack-preview-") as tmp:
        work = Path(tmp)
        measure, shown = work / "measure.html", work / "page.html"
        measure.write_text(page.replace("</body>", f"{_MEASURE}</body>"), encoding="utf-8")
        shown.write_text(page, encoding="utf-8")
        size = f"--window-size={width},2000"
        found = _HEIGHT.search(_chromium(chromium, work / "profile", size, "--dump-dom", measure.as_uri()))
        if found is None:
            raise RuntimeError("Chromium did not report the height of the message")
        height = int(found[1])
        shot = [f"--window-size={width},{height}", f"--force-device-scale-factor={scale}", f"--screenshot={out}"]
        _chromium(chromium, work / "profile", *shot, shown.as_uri())
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--message", choices=sorted(SAMPLES), default="alert", help="which sample to render")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the PNG to write (default: %(default)s)")
    parser.add_argument("--html", type=Path, help="also write the HTML page here")
    parser.add_argument("--scale", type=int, default=2, help="device pixels per CSS pixel (default: 2)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    build, posted = SAMPLES[args.message]
    page = blocks_to_html(build(), posted=posted)
    if args.html is not None:
        args.html.write_text(page, encoding="utf-8")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        width, height = screenshot(page, args.out.resolve(), chromium=args.chromium, scale=args.scale)
    except (OSError, subprocess.SubprocessError, RuntimeError) as err:
        print(f"render_slack_preview: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({width}x{height} CSS px at {args.scale}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
