"""The settings flags, each command given only those of the settings it uses, and settings built from them.

The environment and the config file still carry every setting (one of each for all commands); a flag a command
would ignore is not one of its flags, so `report --listen X` is an error, not silently nothing. Help texts never
spell a default: it is read from the settings model, so the two cannot disagree.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from openai_cost_exporter.config import Settings, load_settings
from openai_cost_exporter.rules import AlertPolicy

#: flag -> (settings field, type, help). Each flag's variable is OPENAI_COST_EXPORTER_<FIELD> unless noted.
SETTINGS_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--config": ("config", Path, "TOML or YAML settings file (alert policy, budgets, overrides)"),
    "--base-url": (
        "base_url",
        str,
        "OpenAI API base URL [OPENAI_BASE_URL]",
    ),
    "--request-timeout": ("request_timeout", float, "seconds per API request"),
    "--listen": (
        "listen",
        str,
        "HOST:PORT for /metrics and the spend page; '' disables",
    ),
    "--push-url": (
        "push_url",
        str,
        "VictoriaMetrics import URL, e.g. http://localhost:8428/api/v1/import/prometheus",
    ),
    "--job": ("job", str, "job label added to pushed samples"),
    "--replica": (
        "replica",
        str,
        "name of this replica, a `replica` label on the exporter's own metrics only (two replicas, one set of figures)",
    ),
    "--interval": ("interval", float, "seconds between cycles"),
    "--state-dir": (
        "state_dir",
        Path,
        "directory of the SQLite state",
    ),
    "--revision-days": (
        "revision_days",
        int,
        "closed days re-read every cycle for late revisions",
    ),
    "--retention-days": ("retention_days", int, "days of history kept in the state"),
    "--backfill-days": (
        "backfill_days",
        int,
        "on first start, also fetch and push this many past days",
    ),
    "--projects-refresh": (
        "projects_refresh",
        float,
        "seconds between project name refreshes",
    ),
    "--notify-backoff": (
        "notify_backoff",
        float,
        "seconds before a failed Slack message is re-sent, doubling",
    ),
    "--digest-grace-hours": (
        "digest_grace_hours",
        float,
        "hours after UTC midnight before the digest",
    ),
    "--api-keys-top": (
        "api_keys_top",
        int,
        'keys per project with a series of their own; the rest are summed as api_key_id="other"',
    ),
    "--log-level": ("log_level", str.upper, "DEBUG, INFO, WARNING or ERROR"),
    "--log-format": ("log_format", str, "text or json"),
}
BOOLEAN_FLAGS: dict[str, tuple[str, str]] = {
    "--line-items": ("line_items", "also group costs by line_item (openai_daily_line_item_cost_usd)"),
    "--digest": ("digest", "send a daily digest to Slack after each UTC day closes"),
    "--usage": ("usage", "read token usage for hourly estimates and the runaway alert (default on)"),
    "--api-keys": ("api_keys", "also group costs by API key (openai_daily_api_key_cost_usd); names in the background"),
    "--spend-limits": ("spend_limits", "read OpenAI's hard spend limits and alert before one is reached (default on)"),
}
ALERT_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--spike-ratio": ("spike_ratio", str, "spike when today > ratio x what is usually spent by now (and > 3 spreads)"),
    "--min-usd": ("min_usd", str, "... and today >= this many USD"),
    "--baseline-days": ("baseline_days", int, "days of the same kind (weekday/weekend) the usual day is the median of"),
    "--runaway-ratio": (
        "runaway_ratio",
        str,
        "runaway when the estimated rate of the recent minutes > ratio x its usual",
    ),
    "--runaway-min-usd": ("runaway_min_usd", str, "... and >= this many USD per hour (estimated)"),
    "--spend-limit-share": (
        "spend_limit_share",
        str,
        "alert when month to date > share x a hard spend limit, or the forecast crosses it",
    ),
}


#: Every setting a flag can give: a flag's `dest` (alert settings as `alerts.<field>`).
ALL_SETTINGS: frozenset[str] = frozenset(
    [dest for dest, _, _ in SETTINGS_FLAGS.values()]
    + [dest for dest, _ in BOOLEAN_FLAGS.values()]
    + ["push_labels"]
    + [f"alerts.{dest}" for dest, _, _ in ALERT_FLAGS.values()]
)
#: The flags of every command that reads the settings.
COMMON_SETTINGS: frozenset[str] = frozenset({"config", "log_level", "log_format"})


def add_settings_flags(parser: argparse.ArgumentParser, uses: Collection[str]) -> None:
    """Add the flags of the settings in `uses` (names from ALL_SETTINGS), and no others."""
    unknown = set(uses) - ALL_SETTINGS
    if unknown:
        raise ValueError(f"no settings flag for {sorted(unknown)}")
    group = parser.add_argument_group("settings (each also from OPENAI_COST_EXPORTER_<NAME>)")
    for flag, (dest, kind, text) in SETTINGS_FLAGS.items():
        if dest in uses:
            help_text = with_default(text, Settings.model_fields[dest])
            group.add_argument(flag, dest=dest, type=kind, default=None, help=help_text)
    for flag, (dest, text) in BOOLEAN_FLAGS.items():
        if dest in uses:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
    if "push_labels" in uses:
        group.add_argument(
            "--push-label",
            dest="push_labels",
            action="append",
            metavar="NAME=VALUE",
            help="extra label on pushed samples",
        )
    _add_alert_flags(parser, uses)


def _add_alert_flags(parser: argparse.ArgumentParser, uses: Collection[str]) -> None:
    chosen = {flag: spec for flag, spec in ALERT_FLAGS.items() if f"alerts.{spec[0]}" in uses}
    if not chosen:
        return
    alerts = parser.add_argument_group("alerts (OPENAI_COST_EXPORTER_ALERTS__<NAME>, or [alerts] in --config)")
    for flag, (dest, kind, text) in chosen.items():
        help_text = with_default(text, AlertPolicy.model_fields[dest])
        alerts.add_argument(flag, dest=f"alerts.{dest}", type=kind, default=None, help=help_text)


def with_default(text: str, field: FieldInfo) -> str:
    """The help text, followed by the field's default from the settings model."""
    default = field.get_default(call_default_factory=True)
    if default is None or default is False or default in ({}, []):
        return text
    shown = f"'{default}'" if default == "" else str(default)
    return f"{text} (default {shown})"


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    """Flags (those given) over the environment over the config file."""
    values: dict[str, Any] = {}
    alerts: dict[str, Any] = {}
    for name, value in vars(args).items():
        if value is None:
            continue
        if name.startswith("alerts."):
            alerts[name.removeprefix("alerts.")] = value
        elif name in Settings.model_fields:
            values[name] = value
    if isinstance(values.get("push_labels"), list):
        values["push_labels"] = ",".join(values["push_labels"])
    if alerts:
        values["alerts"] = alerts
    return load_settings(**{**values, **extra})
