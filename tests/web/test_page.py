"""Tests of the built-in spend page: structure, escaping, ordering, and a real headless Chromium render."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from decimal import Decimal
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from openai_cost_exporter.web.page import OTHER, PageView, nice_ceiling, rank_projects, render_page, table_order
from tests.stack import require_binary

NOW = dt.datetime(2026, 11, 28, 14, 5, tzinfo=dt.UTC)
DAYS = [NOW.date() - dt.timedelta(days=29 - i) for i in range(30)]
EVIL = "<script>alert(\"x\")</script> & 'Bobby'"
SVG_NS = "{http://www.w3.org/2000/svg}"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "spend-page.png"


PROJECTS = {  # project_id -> (name, typical USD per day)
    "proj_chat": ("Customer chat", 38),
    "proj_spiky": ("Search reranker", 9),
    "proj_docs": ("Docs assistant", 22),
    "proj_batch": ("Nightly batch", 15),
    "proj_evil": (EVIL, 7),
    "proj_eval": ("Evals", 5),
    "proj_lab": ("Research lab — α", 4),
    "unattributed": ("unattributed", 3),
    "proj_tiny1": ("Prototype A", 1),
    "proj_tiny2": ("Prototype B", 1),
}


def sample_view(**changes: object) -> PageView:
    """Ten projects over 30 days; `proj_spiky` spends 4x its baseline today, one name needs escaping."""
    daily: dict[dt.date, dict[str, Decimal]] = {}
    for n, day in enumerate(DAYS):
        weekend = Decimal("0.55") if day.weekday() >= 5 else Decimal(1)
        daily[day] = {
            p: (Decimal(usd) * weekend * (Decimal(90 + (n * 7 + i * 13) % 21) / 100)).quantize(Decimal("0.01"))
            for i, (p, (_, usd)) in enumerate(PROJECTS.items())
        }
    daily[DAYS[-1]] = {p: v * Decimal("0.6") for p, v in daily[DAYS[-2]].items()} | {"proj_spiky": Decimal(36)}
    fields: dict[str, object] = {
        "generated_at": NOW,
        "last_success": NOW - dt.timedelta(minutes=4),
        "days": DAYS,
        "daily": daily,
        "names": {p: name for p, (name, _) in PROJECTS.items()},
        "today": dict(daily[DAYS[-1]]),
        "baseline": {p: Decimal(usd) for p, (_, usd) in PROJECTS.items()},
        "alerts": {"proj_spiky": "spike (4.0×)"},
    }
    return PageView(**(fields | changes))  # type: ignore[arg-type]


class Dom(HTMLParser):
    """Collects the parts of the page the tests look at: bars, table rows, warnings, all text."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: list[dict[str, str | None]] = []
        self.rows: list[str] = []
        self.classes: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append(tag)
        self.classes.append(attributes.get("class") or "")
        if tag == "g" and attributes.get("class") == "day":
            self.bars.append(attributes)
        if tag == "tr" and attributes.get("data-project-id"):
            self.rows.append(attributes["data-project-id"] or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(document: bytes) -> Dom:
    dom = Dom()
    dom.feed(document.decode("utf-8"))
    dom.close()
    return dom


def svg_of(document: bytes) -> ET.Element:
    text = document.decode("utf-8")
    start, end = text.index("<svg"), text.index("</svg>") + len("</svg>")
    return ET.fromstring(text[start:end])  # noqa: S314 - our own output, not untrusted input


def bar_heights(svg: ET.Element) -> dict[str, tuple[float, float]]:
    """Per bar: (data-total, sum of its rectangles' heights)."""
    result = {}
    for group in svg.iter(f"{SVG_NS}g"):
        heights = sum(float(r.attrib["height"]) for r in group.iter(f"{SVG_NS}rect"))
        result[group.attrib["data-day"]] = (float(group.attrib["data-total"]), heights)
    return result


def test_document_is_complete_html5_utf8() -> None:
    """The page is one UTF-8 HTML5 document with inline CSS and no script or external resource."""
    document = render_page(sample_view())
    text = document.decode("utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in text
    assert "prefers-color-scheme:dark" in text
    dom = parse(document)
    assert "script" not in dom.tags
    assert not {"link", "img", "iframe"} & set(dom.tags)
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text


def test_one_bar_per_day_with_iso_day_and_total() -> None:
    """There is one `g.day` per day, oldest first, each with its day and the total of that day."""
    view = sample_view()
    bars = parse(render_page(view)).bars
    assert [b["data-day"] for b in bars] == [d.isoformat() for d in DAYS]
    expected_today = sum(view.daily[DAYS[-1]].values(), Decimal(0))
    assert bars[-1]["data-total"] == f"{expected_today:.2f}"
    assert bars[-1]["data-partial"] == "true"
    assert "data-partial" not in bars[0]


def test_bar_heights_are_proportional_to_totals() -> None:
    """Taller bars mean more spend: heights sort exactly like totals and scale linearly."""
    bars = bar_heights(svg_of(render_page(sample_view())))
    by_total = sorted(bars.values())
    assert [h for _, h in by_total] == sorted(h for _, h in by_total)
    ratios = [h / t for t, h in bars.values()]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-3)


def test_bars_have_tooltips_naming_projects() -> None:
    """Each bar's `<title>` gives the day, its total and the spend of each stacked project."""
    svg = svg_of(render_page(sample_view()))
    today = next(g for g in svg.iter(f"{SVG_NS}g") if g.attrib["data-day"] == DAYS[-1].isoformat())
    title = today.find(f"{SVG_NS}title")
    assert title is not None and title.text is not None
    assert title.text.startswith(f"{DAYS[-1].isoformat()}: $")
    assert "(today so far)" in title.text
    assert "Search reranker: $36.00" in title.text


def test_top_projects_and_other_bucket() -> None:
    """Only the top N projects get their own colour; the rest is stacked as 'other projects'."""
    view = sample_view()
    keys = rank_projects(view, 3)
    assert len(keys) == 4 and keys[-1] == OTHER
    svg = svg_of(render_page(view, top=3))
    projects = {r.attrib["data-project"] for r in svg.iter(f"{SVG_NS}rect")}
    assert projects == set(keys)
    assert "other projects" in "".join(parse(render_page(view, top=3)).text)


def test_no_other_bucket_when_every_project_fits() -> None:
    """With `top` at least the number of projects nothing is folded into 'other'."""
    assert OTHER not in rank_projects(sample_view(), 50)


@pytest.mark.parametrize("field", ["names", "alerts"])
def test_untrusted_text_is_escaped(field: str) -> None:
    """Project names and alert texts containing markup and quotes are escaped everywhere."""
    changes: dict[str, object] = {}
    if field == "alerts":
        changes["alerts"] = {"proj_spiky": EVIL}
    text = render_page(sample_view(**changes)).decode("utf-8")
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;Bobby&#x27;" in text
    assert EVIL in "".join(parse(text.encode()).text)


def test_hostile_project_id_is_escaped_in_attributes() -> None:
    """A project id with quotes cannot break out of the `data-project` attributes."""
    hostile = '"><script>x</script>'
    view = sample_view(
        daily={DAYS[-1]: {hostile: Decimal(5)}},
        today={hostile: Decimal(5)},
        baseline={},
        alerts={},
        names={},
    )
    text = render_page(view).decode("utf-8")
    assert "<script>" not in text
    assert parse(text.encode()).rows == [hostile]


def test_table_puts_alerting_projects_first_then_by_today() -> None:
    """Rows with an alert state come first, the others follow by today's spend, biggest first."""
    view = sample_view(alerts={"proj_tiny2": "budget", "proj_spiky": "spike (4.0×)"})
    rows = parse(render_page(view)).rows
    assert rows[:2] == ["proj_spiky", "proj_tiny2"]
    rest = [view.today[p] for p in rows[2:]]
    assert rest == sorted(rest, reverse=True)
    assert rows == table_order(view)


@pytest.mark.parametrize(
    ("today", "baseline", "shown"),
    # 0.25 shows as 0.3: half a tenth rounds up, as in Slack (money.ratio)
    [("4", "1", "4.0×"), ("1.5", "0", "new"), ("0", "0", "–"), ("0.5", "2", "0.3×")],
)
def test_ratio_column(today: str, baseline: str, shown: str) -> None:
    """The ratio column shows today / baseline, 'new' without a baseline, and a dash without spend."""
    view = sample_view(today={"p": Decimal(today)}, baseline={"p": Decimal(baseline)}, alerts={})
    text = render_page(view).decode("utf-8")
    assert f'<td class="num">{shown}</td>' in text


@pytest.mark.parametrize(
    ("last_success", "warning"),
    [
        (NOW - dt.timedelta(minutes=4), None),
        (NOW - dt.timedelta(minutes=31), "31 min ago"),
        (NOW - dt.timedelta(hours=5), "5 h ago"),
        (NOW - dt.timedelta(days=3), "3 days ago"),
        (None, "No collection cycle has succeeded yet"),
    ],
)
def test_header_warns_when_data_is_old_or_missing(last_success: dt.datetime | None, warning: str | None) -> None:
    """The header shows the last successful cycle and a visible warning when it is old or missing."""
    dom = parse(render_page(sample_view(last_success=last_success)))
    text = "".join(dom.text)
    assert ("warn" in dom.classes) is (warning is not None)
    if warning:
        assert warning in text
    else:
        assert "last successful cycle: 2026-11-28 14:01 UTC (4 min ago)" in text


@pytest.mark.parametrize(
    ("stages", "failed_at", "banner"),
    [
        (("costs",), NOW - dt.timedelta(minutes=2), "The last cycle failed (stages: costs) at 14:03 UTC"),
        (("costs", "push"), None, "The last cycle failed (stages: costs, push);"),
        ((), NOW, None),
    ],
)
def test_header_shows_a_failed_last_cycle(
    stages: tuple[str, ...], failed_at: dt.datetime | None, banner: str | None
) -> None:
    """A failed last cycle is a visible banner with its stages and start time, beside a fresh last success."""
    dom = parse(render_page(sample_view(failed_stages=stages, failed_at=failed_at)))
    text = "".join(dom.text)
    assert ("warn" in dom.classes) is (banner is not None)
    assert "last successful cycle: 2026-11-28 14:01 UTC (4 min ago)" in text
    if banner:
        assert banner in text
    else:
        assert "The last cycle failed" not in text


@pytest.mark.parametrize("days", [DAYS, []])
def test_empty_state(days: list[dt.date]) -> None:
    """Before any data the page still renders, says so, and draws no bars."""
    view = PageView(NOW, None, days, {}, {}, {}, {}, {})
    dom = parse(render_page(view))
    text = "".join(dom.text)
    assert dom.bars == []
    assert "No cost data yet" in text and "No projects yet" in text
    assert "$0.00" in text


def test_days_without_rows_render_as_empty_bars() -> None:
    """A day with no spend still has its bar group, with a zero total and no rectangle."""
    view = sample_view()
    view.daily.pop(DAYS[3])
    svg = svg_of(render_page(view))
    bars = bar_heights(svg)
    assert bars[DAYS[3].isoformat()] == (0.0, 0)


@pytest.mark.parametrize(
    ("peak", "top", "step"),
    [
        (0.37, 0.4, 0.1),
        (7.0, 8.0, 2.0),
        (9.5, 10.0, 2.0),
        (10.0, 10.0, 2.0),
        (123.0, 125.0, 25.0),
        (0.9, 1.0, 0.2),
    ],
)
def test_nice_ceiling(peak: float, top: float, step: float) -> None:
    """The y axis ends on a round figure at or above the highest bar."""
    assert nice_ceiling(peak) == pytest.approx((top, step))


# --- real browser -------------------------------------------------------------------------------------------


class _Page(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    """The rendered sample page served by a real HTTP server on 127.0.0.1, port 0."""
    handler = type("Handler", (_Page,), {"body": render_page(sample_view())})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


def run_chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [
        require_binary("chromium"),
        "--headless",
        "--no-sandbox",  # CI runs as root in a container
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *extra,
        url,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=90, check=True)


def test_chromium_renders_bars_and_spiking_project_first(page_url: str, tmp_path: Path) -> None:
    """A real headless Chromium builds a DOM with every bar and the spiking project in the first row."""
    dom = parse(run_chromium(page_url, tmp_path / "profile", "--dump-dom").stdout.encode())
    assert len(dom.bars) == len(DAYS)
    assert dom.rows[0] == "proj_spiky"
    assert "OpenAI spend" in "".join(dom.text)


def test_chromium_screenshot(page_url: str, tmp_path: Path) -> None:
    """Chromium takes a non-trivial screenshot of the page (copied to docs/ with UPDATE_SCREENSHOTS=1)."""
    shot = tmp_path / "spend-page.png"
    run_chromium(page_url, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,900")
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 20_000  # a blank 1280x900 page compresses to a few kB
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        DOCS_SCREENSHOT.write_bytes(png)


def test_projects_without_spend_are_not_drawn() -> None:
    """A project with no spend in the window gets neither a colour nor a rectangle."""
    view = sample_view()
    for amounts in view.daily.values():
        amounts["proj_idle"] = Decimal(0)
    svg = svg_of(render_page(view, top=20))
    assert "proj_idle" not in rank_projects(view, 20)
    assert "proj_idle" not in {r.attrib["data-project"] for r in svg.iter(f"{SVG_NS}rect")}


def test_the_table_says_usual_by_now_not_baseline() -> None:
    """The table's heading and column name what the figure is: the usual by now, not a "baseline"."""
    html = render_page(sample_view()).decode()
    head = html[html.index("<thead>") : html.index("</thead>")]
    assert '<th class="num">usual by now</th>' in head and "baseline" not in head
    assert "<h2>Today so far vs the usual by now</h2>" in html
