"""The built-in spend page served at `/`: one HTML document, an inline SVG chart, no JavaScript.

Pure rendering: a `PageView` snapshot in, UTF-8 bytes out. Nothing is fetched by the browser (no CDN, no web
fonts), so the page works offline and behind strict proxies. Every project name comes from the API and is
user-controlled, so every piece of text goes through `html.escape`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from html import escape

from openai_cost_exporter.core.money import ZERO, ratio, usd

#: Past this age the last successful cycle is flagged (several missed cycles at any interval up to 5 minutes).
STALE_AFTER = dt.timedelta(minutes=30)
OTHER = "other"
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
OTHER_COLOUR = "#9a9a9a"
CHART_W, CHART_H = 960, 300
PAD_L, PAD_R, PAD_T, PAD_B = 64, 8, 12, 26

CSS = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1d2330;--muted:#5f6b7a;--line:#e3e7ee;--card:#f6f8fb;
--warn-bg:#fff4d6;--warn-fg:#7a4b00;--alert-bg:#fde2e1;--alert-fg:#9b1c1c}
@media (prefers-color-scheme:dark){:root{--bg:#14171c;--fg:#e6e9ef;--muted:#9aa4b2;--line:#2b313b;
--card:#1b2028;--warn-bg:#4a3a12;--warn-fg:#ffd98a;--alert-bg:#4d1f22;--alert-fg:#ffb4b0}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
main{max-width:1040px;margin:0 auto;padding:20px 24px 40px}
header{display:flex;flex-wrap:wrap;align-items:baseline;justify-content:space-between;gap:4px 24px}
h1{font-size:22px;margin:0}h2{font-size:16px;margin:28px 0 8px}
.meta{color:var(--muted)}
.warn{background:var(--warn-bg);color:var(--warn-fg);border-radius:6px;padding:8px 12px;margin:12px 0 0}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0 4px}
.card{background:var(--card);border-radius:8px;padding:10px 16px;min-width:170px}
.card b{display:block;font-size:20px}.card span{color:var(--muted);font-size:12px}
svg.chart{width:100%;height:auto;display:block}
svg text{fill:var(--muted);font-size:11px}svg .grid{stroke:var(--line)}
g.day:hover rect{opacity:.8}g.day[data-partial] rect{opacity:.7}
ul.legend{list-style:none;display:flex;flex-wrap:wrap;gap:6px 18px;padding:0;margin:8px 0 0}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:-1px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line)}
th{color:var(--muted);font-weight:600;font-size:12px}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.id{color:var(--muted);font-family:ui-monospace,monospace;font-size:12px}
.badge{border-radius:10px;padding:1px 8px;font-size:12px;background:var(--alert-bg);color:var(--alert-fg)}
.keys{color:var(--muted);font-size:12px}
.ok{color:var(--muted)}.empty{color:var(--muted);padding:40px 0;text-align:center}
"""


@dataclass(frozen=True, slots=True)
class PageView:
    """Everything the page shows, already computed by the service loop."""

    generated_at: dt.datetime  # UTC
    last_success: dt.datetime | None  # end of the last fully successful cycle
    days: list[dt.date]  # the last 30 UTC days, oldest first, today last (partial)
    daily: dict[dt.date, dict[str, Decimal]]  # per day, per project_id
    names: dict[str, str]  # project_id -> name, untrusted text
    today: dict[str, Decimal]  # today so far, per project_id
    baseline: dict[str, Decimal]  # the usual by now (figures/baselines.py), per project_id
    alerts: dict[str, str]  # project_id -> alert state text (e.g. "spike (4.0x)", "budget"); absent = ok
    failed_stages: tuple[str, ...] = ()  # the stages the last cycle failed in (costs, push, ...); () = it did not
    failed_at: dt.datetime | None = None  # when that failed cycle started
    keys: dict[str, list[tuple[str, str, Decimal]]] = field(default_factory=dict)  # alerting project -> top keys


def render_page(view: PageView, *, top: int = 8, stale_after: dt.timedelta = STALE_AFTER) -> bytes:
    """The complete HTML5 document for `view`, UTF-8 encoded."""
    keys = rank_projects(view, top)
    body = "".join(
        (
            _header(view, stale_after),
            _cards(view),
            f"<h2>Daily spend{_window(view)} (UTC)</h2>",
            _chart(view, keys) + _legend(view, keys) if _has_spend(view) else _EMPTY_CHART,
            "<h2>Today so far vs the usual by now</h2>",
            _table(view),
        )
    )
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>OpenAI spend</title><style>{CSS}</style></head><body><main>{body}</main></body></html>\n"
    )
    return doc.encode("utf-8")


_EMPTY_CHART = '<p class="empty">No cost data yet: the first collection cycle has not stored any day.</p>'


def rank_projects(view: PageView, top: int) -> list[str]:
    """The `top` project ids by spend over the window, biggest first; OTHER last if any project is left."""
    totals: dict[str, Decimal] = {}
    for day in view.days:
        for project_id, amount in view.daily.get(day, {}).items():
            totals[project_id] = totals.get(project_id, ZERO) + amount
    ranked = sorted((p for p, t in totals.items() if t > 0), key=lambda p: (-totals[p], p))
    return ranked[:top] + ([OTHER] if len(ranked) > top else [])


def _stack(amounts: dict[str, Decimal], keys: list[str]) -> list[tuple[str, Decimal]]:
    """One day's amounts folded onto `keys`: projects outside the top go to OTHER."""
    folded = dict.fromkeys(keys, ZERO)
    for project_id, amount in amounts.items():
        key = project_id if project_id in folded and project_id != OTHER else OTHER
        if key in folded:
            folded[key] += amount
    return [(k, v) for k, v in folded.items() if v > 0]


def _has_spend(view: PageView) -> bool:
    return any(v > 0 for day in view.days for v in view.daily.get(day, {}).values())


def _name(view: PageView, key: str) -> str:
    return "other projects" if key == OTHER else view.names.get(key, key)


def _colour(keys: list[str], key: str) -> str:
    return OTHER_COLOUR if key == OTHER else PALETTE[keys.index(key) % len(PALETTE)]


def _window(view: PageView) -> str:
    return f", last {len(view.days)} days" if view.days else ""


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


#: Ages below this many minutes are shown in minutes, then in hours up to two days, then in days.
_MINUTES_SHOWN = 120


def _age(delta: dt.timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < _MINUTES_SHOWN:
        return f"{minutes} min ago"
    return f"{minutes // 60} h ago" if minutes < 48 * 60 else f"{minutes // 1440} days ago"


def _header(view: PageView, stale_after: dt.timedelta) -> str:
    generated = f'<span class="meta">page generated {escape(_when(view.generated_at))}</span>'
    if view.last_success is None:
        status = "last successful cycle: never"
        warning = "No collection cycle has succeeded yet: the figures below may be missing or incomplete."
    else:
        age = view.generated_at - view.last_success
        status = f"last successful cycle: {_when(view.last_success)} ({_age(age)})"
        warning = "" if age <= stale_after else f"Data is stale: the last successful cycle was {_age(age)}."
    warn_html = f'<p class="warn" role="alert">⚠ {escape(warning)}</p>' if warning else ""
    return (
        f'<header><h1>OpenAI spend</h1><span class="meta" id="last-success">{escape(status)}</span>'
        f"{generated}</header>{_failure(view)}{warn_html}"
    )


def _failure(view: PageView) -> str:
    """A banner while the last cycle failed: the figures below are from the last success, or missing."""
    if not view.failed_stages:
        return ""
    when = f" at {view.failed_at.astimezone(dt.UTC):%H:%M} UTC" if view.failed_at is not None else ""
    text = f"The last cycle failed (stages: {', '.join(view.failed_stages)}){when}; see the exporter's log."
    return f'<p class="warn" id="cycle-failed" role="alert">⚠ {escape(text)}</p>'


def _cards(view: PageView) -> str:
    window = sum((v for day in view.days for v in view.daily.get(day, {}).values()), ZERO)
    figures = (
        ("today so far", sum(view.today.values(), ZERO)),
        ("usual by now", sum(view.baseline.values(), ZERO)),
        (f"spend{_window(view)}", window),
    )
    cards = "".join(f'<div class="card"><b>{usd(v)}</b><span>{escape(t)}</span></div>' for t, v in figures)
    alerts = f'<div class="card"><b>{len(view.alerts)}</b><span>projects alerting</span></div>'
    return f'<div class="cards">{cards}{alerts}</div>'


def nice_ceiling(peak: float) -> tuple[float, float]:
    """An axis top at or above `peak` and its tick step, on a 1-2-2.5-5 grid with about five ticks."""
    raw = peak / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return step * math.ceil(peak / step - 1e-9), step


def _axis(top: float, step: float, plot_h: float) -> Iterable[str]:
    ticks = round(top / step)
    for i in range(ticks + 1):
        y = PAD_T + plot_h - plot_h * i / ticks
        label = f"${step * i:,.0f}" if step >= 1 else f"${step * i:,.2f}"
        yield f'<line class="grid" x1="{PAD_L}" x2="{CHART_W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>'
        yield f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'


def _chart(view: PageView, keys: list[str]) -> str:
    stacks = [_stack(view.daily.get(day, {}), keys) for day in view.days]
    peak = max(float(sum((v for _, v in s), ZERO)) for s in stacks)
    top, step = nice_ceiling(peak)
    plot_h, slot = CHART_H - PAD_T - PAD_B, (CHART_W - PAD_L - PAD_R) / len(view.days)
    parts = list(_axis(top, step, plot_h))
    label_every = max(1, math.ceil(len(view.days) / 10))
    for i, (day, stack) in enumerate(zip(view.days, stacks, strict=True)):
        x = PAD_L + i * slot
        parts.append(_bar(view, keys, day, stack, (x + slot * 0.14, slot * 0.72, plot_h / top)))
        if (len(view.days) - 1 - i) % label_every == 0:
            text = "today" if i == len(view.days) - 1 else day.strftime("%m-%d")
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{CHART_H - 8}" text-anchor="middle">{text}</text>')
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {CHART_W} {CHART_H}" '
        f'role="img" aria-label="Daily spend per project">{"".join(parts)}</svg>'
    )


def _bar(
    view: PageView,
    keys: list[str],
    day: dt.date,
    stack: list[tuple[str, Decimal]],
    geometry: tuple[float, float, float],
) -> str:
    x, width, scale = geometry
    total = sum((v for _, v in stack), ZERO)
    lines = [f"{day.isoformat()}: {usd(total)}"] + [f"{_name(view, k)}: {usd(v)}" for k, v in stack]
    partial = ' data-partial="true"' if day == view.days[-1] else ""
    if partial:
        lines[0] += " (today so far)"
    rects, y = [], float(CHART_H - PAD_B)
    for key, amount in stack:
        height = float(amount) * scale
        y -= height
        rects.append(
            f'<rect x="{x:.1f}" y="{y:.2f}" width="{width:.1f}" height="{height:.2f}" '
            f'fill="{_colour(keys, key)}" data-project="{escape(key)}"/>'
        )
    return (
        f'<g class="day" data-day="{day.isoformat()}" data-total="{total:.2f}"{partial}>'
        f"<title>{escape(chr(10).join(lines))}</title>{''.join(rects)}</g>"
    )


def _legend(view: PageView, keys: list[str]) -> str:
    items = "".join(
        f'<li><span class="sw" style="background:{_colour(keys, k)}"></span>{escape(_name(view, k))}</li>' for k in keys
    )
    return f'<ul class="legend">{items}</ul>'


def table_order(view: PageView) -> list[str]:
    """Project ids for the table: those with an alert state first, then by today's spend, biggest first."""
    ids = set(view.today) | set(view.baseline) | set(view.alerts)
    return sorted(ids, key=lambda p: (p not in view.alerts, -view.today.get(p, ZERO), view.names.get(p, p)))


def _ratio(today: Decimal, baseline: Decimal) -> str:
    if baseline > 0:
        return ratio(today / baseline)
    return "new" if today > 0 else "–"


def _row(view: PageView, project_id: str) -> str:
    today, baseline = view.today.get(project_id, ZERO), view.baseline.get(project_id, ZERO)
    state = view.alerts.get(project_id)
    state_html = f'<span class="badge">{escape(state)}</span>' if state else '<span class="ok">ok</span>'
    name = view.names.get(project_id, project_id)
    return (
        f'<tr data-project-id="{escape(project_id)}"><td>{escape(name)}{_keys(view, project_id)}</td>'
        f'<td class="id">{escape(project_id)}</td><td class="num">{usd(today)}</td>'
        f'<td class="num">{usd(baseline)}</td><td class="num">{_ratio(today, baseline)}</td>'
        f"<td>{state_html}</td></tr>"
    )


def _keys(view: PageView, project_id: str) -> str:
    """The top API keys of an alerting project, under its name."""
    keys = view.keys.get(project_id)
    if not keys:
        return ""
    shown = ", ".join(
        f"{escape(name)}{f' ({escape(owner)})' if owner else ''} {usd(amount)}" for name, owner, amount in keys
    )
    return f'<div class="keys">top keys today: {shown}</div>'


_COLUMNS = (
    ("project", False),
    ("project id", False),
    ("today", True),
    ("usual by now", True),
    ("ratio", True),
    ("alert state", False),
)


def _table(view: PageView) -> str:
    order = table_order(view)
    if not order:
        return '<p class="empty">No projects yet.</p>'
    head = "".join(('<th class="num">' if numeric else "<th>") + f"{t}</th>" for t, numeric in _COLUMNS)
    rows = "".join(_row(view, p) for p in order)
    return f'<table id="today"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
