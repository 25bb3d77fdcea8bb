"""Settings: precedence, environment names, files, validation and secrets."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from openai_cost_exporter.cli.settings_check import unknown_environment
from openai_cost_exporter.config import (
    Settings,
    default_state_dir,
    load_settings,
    parse_listen,
)
from openai_cost_exporter.core.defaults import DEFAULT_BASE_URL, JOB, LISTEN
from openai_cost_exporter.core.defaults import INTERVAL_SECONDS as DEFAULT_INTERVAL_SECONDS
from openai_cost_exporter.core.errors import ConfigError

KEY = "sk-admin-TOPSECRET0123456789abcdef"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what ":PORT" parses to; nothing binds here
WEBHOOK = "https://hooks.slack.com/services/T000/B000/SECRETWEBHOOKTOKEN"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test starts without OPENAI_*/SLACK_* variables, in an empty directory, with state under tmp."""
    for name in list(os.environ):
        if name.upper().startswith(("OPENAI_", "SLACK_")) or name.upper() in {"ADMIN_KEY", "BASE_URL"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


TOML = """
interval = 60
job = "from-file"
push_labels = { team = "file" }
[alerts]
spike_ratio = 2
min_usd = 3
daily_budget_usd = 100
[alerts.projects."Team \\"ML\\" prod"]
daily_budget_usd = 5
[alerts.projects.proj_abc]
mute = true
"""

YAML = """
interval: 60
job: from-file
push_labels: {team: file}
alerts:
  spike_ratio: 2
  min_usd: 3
  daily_budget_usd: 100
  projects:
    'Team "ML" prod': {daily_budget_usd: 5}
    proj_abc: {mute: true}
"""


@pytest.fixture(params=["toml", "yaml", "yml"])
def config_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The same settings written as TOML, .yaml and .yml."""
    suffix = str(request.param)
    return write(tmp_path / f"settings.{suffix}", TOML if suffix == "toml" else YAML)


def test_defaults() -> None:
    """Without flags, environment or file, every setting has its documented default."""
    settings = load_settings()
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.listen == LISTEN
    assert settings.interval == DEFAULT_INTERVAL_SECONDS
    assert settings.job == JOB
    assert settings.push_url is None
    assert settings.push_labels == {}
    assert settings.alerts.spike_ratio == Decimal("1.5")
    assert settings.resolved_webhook_url() is None


def test_default_state_dir_follows_xdg(tmp_path: Path) -> None:
    """The state directory is under $XDG_STATE_HOME and the state file inside it."""
    settings = load_settings()
    assert settings.state_dir == tmp_path / "state" / "openai-cost-exporter"
    assert settings.state_file == tmp_path / "state" / "openai-cost-exporter" / "state.sqlite3"


def test_default_state_dir_without_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without $XDG_STATE_HOME the state directory is ~/.local/state/openai-cost-exporter."""
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / ".local" / "state" / "openai-cost-exporter"


def test_file_values_are_read(config_file: Path) -> None:
    """TOML and YAML files set top-level fields, the [alerts] section and per-project overrides."""
    settings = load_settings(config=config_file)
    assert settings.interval == 60
    assert settings.job == "from-file"
    assert settings.push_labels == {"team": "file"}
    assert settings.alerts.spike_ratio == Decimal(2)
    assert settings.alerts.daily_budget_usd == Decimal(100)
    assert settings.alerts.projects['Team "ML" prod'].daily_budget_usd == Decimal(5)
    assert settings.alerts.projects["proj_abc"].mute is True


@pytest.mark.parametrize(
    ("env", "flags", "expected"),
    [
        ({}, {}, 60.0),
        ({"OPENAI_COST_EXPORTER_INTERVAL": "120"}, {}, 120.0),
        ({"OPENAI_COST_EXPORTER_INTERVAL": "120"}, {"interval": 180.0}, 180.0),
        ({}, {"interval": 180.0}, 180.0),
    ],
)
def test_precedence_flag_env_file(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, env: dict[str, str], flags: dict[str, float], expected: float
) -> None:
    """A flag beats the environment, which beats the config file."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings(config=config_file, **flags).interval == expected


def test_nested_alert_precedence_merges(monkeypatch: pytest.MonkeyPatch, config_file: Path) -> None:
    """Alert settings merge field by field: flag over env over file, untouched fields keep the file's value."""
    monkeypatch.setenv("OPENAI_COST_EXPORTER_ALERTS__SPIKE_RATIO", "4")
    monkeypatch.setenv("OPENAI_COST_EXPORTER_ALERTS__MIN_USD", "7")
    settings = load_settings(config=config_file, alerts={"min_usd": "9"})
    assert settings.alerts.spike_ratio == Decimal(4)
    assert settings.alerts.min_usd == Decimal(9)
    assert settings.alerts.daily_budget_usd == Decimal(100)
    assert set(settings.alerts.projects) == {'Team "ML" prod', "proj_abc"}


def test_env_secret_beats_file_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """OPENAI_ADMIN_KEY and OPENAI_BASE_URL from the environment beat the file, flags beat both."""
    path = write(tmp_path / "s.toml", 'admin_key = "sk-admin-from-file"\nbase_url = "http://file.example"\n')
    monkeypatch.setenv("OPENAI_ADMIN_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env.example")
    settings = load_settings(config=path)
    assert settings.resolved_admin_key() == KEY
    assert settings.base_url == "http://env.example"
    flagged = load_settings(config=path, admin_key="sk-admin-from-flag", base_url="http://flag.example")
    assert flagged.resolved_admin_key() == "sk-admin-from-flag"
    assert flagged.base_url == "http://flag.example"


def test_config_path_from_environment(monkeypatch: pytest.MonkeyPatch, config_file: Path) -> None:
    """OPENAI_COST_EXPORTER_CONFIG names the config file when no flag does."""
    monkeypatch.setenv("OPENAI_COST_EXPORTER_CONFIG", str(config_file))
    assert load_settings().job == "from-file"


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("OPENAI_BASE_URL", "http://127.0.0.1:1/v1/", "base_url", "http://127.0.0.1:1/v1"),
        ("OPENAI_COST_EXPORTER_INTERVAL", "42.5", "interval", 42.5),
        ("OPENAI_COST_EXPORTER_PUSH_URL", "http://vm:8428/api/v1/import/prometheus", "push_url", None),
        ("OPENAI_COST_EXPORTER_PUSH_LABELS", "team=ml,env=prod", "push_labels", {"team": "ml", "env": "prod"}),
        ("OPENAI_COST_EXPORTER_PUSH_LABELS", " team = ml , ,x=a=b", "push_labels", {"team": "ml", "x": "a=b"}),
        ("OPENAI_COST_EXPORTER_LINE_ITEMS", "true", "line_items", True),
        ("OPENAI_COST_EXPORTER_LISTEN", "", "listen", ""),
        ("OPENAI_COST_EXPORTER_LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
    ],
)
def test_environment_names(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str, expected: object
) -> None:
    """Each documented environment variable sets its field (with the field's parsing)."""
    monkeypatch.setenv(name, value)
    got = getattr(load_settings(), field)
    assert got == (expected if expected is not None else value)


def test_alert_env_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_COST_EXPORTER_ALERTS__SPIKE_RATIO sets alerts.spike_ratio as an exact Decimal."""
    monkeypatch.setenv("OPENAI_COST_EXPORTER_ALERTS__SPIKE_RATIO", "2.35")
    assert load_settings().alerts.spike_ratio == Decimal("2.35")


def test_secret_environment_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """OPENAI_ADMIN_KEY, SLACK_WEBHOOK_URL and their _FILE variants are read."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", KEY)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", WEBHOOK)
    settings = load_settings()
    assert settings.resolved_admin_key() == KEY
    assert settings.resolved_webhook_url() == WEBHOOK
    monkeypatch.delenv("OPENAI_ADMIN_KEY")
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    monkeypatch.setenv("OPENAI_ADMIN_KEY_FILE", str(write(tmp_path / "key", f"\n  {KEY}\n\n")))
    monkeypatch.setenv("SLACK_WEBHOOK_URL_FILE", str(write(tmp_path / "hook", f"{WEBHOOK}\n")))
    from_files = load_settings()
    assert from_files.resolved_admin_key() == KEY
    assert from_files.resolved_webhook_url() == WEBHOOK


@pytest.mark.parametrize("name", ["BASE_URL", "ADMIN_KEY", "admin_key_file", "SLACK_WEBHOOK_URL_X"])
def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Generic variables such as BASE_URL or ADMIN_KEY (no OPENAI_ prefix) do not leak into the settings."""
    monkeypatch.setenv(name, "ftp://not-ours")
    settings = load_settings()
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.admin_key is None
    assert settings.admin_key_file is None


def test_unknown_prefixed_variable_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown OPENAI_COST_EXPORTER_* variable does not break start-up."""
    monkeypatch.setenv("OPENAI_COST_EXPORTER_NOT_A_SETTING", "1")
    assert load_settings().job == JOB


def test_a_misspelled_variable_is_reported_with_the_closest_name() -> None:
    """An unknown OPENAI_COST_EXPORTER_* variable is a problem naming it and the closest known variable, also for
    nested alert settings and for a prefixed name of a setting that has its own variable."""
    environ = {
        "OPENAI_COST_EXPORTER_INTERVALL": "5",
        "OPENAI_COST_EXPORTER_ALERTS__SPIKE_RATION": "3",
        "OPENAI_COST_EXPORTER_ADMIN_KEY": KEY,
        "OPENAI_COST_EXPORTER_QWXZ": "1",
    }
    assert unknown_environment(environ) == [
        "unknown environment variable OPENAI_COST_EXPORTER_ADMIN_KEY is ignored (did you mean OPENAI_ADMIN_KEY?)",
        "unknown environment variable OPENAI_COST_EXPORTER_ALERTS__SPIKE_RATION is ignored "
        "(did you mean OPENAI_COST_EXPORTER_ALERTS__SPIKE_RATIO?)",
        "unknown environment variable OPENAI_COST_EXPORTER_INTERVALL is ignored "
        "(did you mean OPENAI_COST_EXPORTER_INTERVAL?)",
        "unknown environment variable OPENAI_COST_EXPORTER_QWXZ is ignored",
    ]


def test_known_variables_are_not_reported() -> None:
    """Every variable a setting reads, the test clock's, nested alert and per-project ones, and other prefixes
    are no problem."""
    environ = {
        "OPENAI_COST_EXPORTER_INTERVAL": "5",
        "openai_cost_exporter_job": "x",  # read case-insensitively
        "OPENAI_COST_EXPORTER_CONFIG": "a.toml",
        "OPENAI_COST_EXPORTER_TEST_NOW": "2026-11-01T12:00:00+00:00",
        "OPENAI_COST_EXPORTER_ALERTS": "{}",
        "OPENAI_COST_EXPORTER_ALERTS__MIN_USD": "1",
        "OPENAI_COST_EXPORTER_ALERTS__PROJECTS__PROJ_A__MUTE": "true",
        "OPENAI_ADMIN_KEY": KEY,
        "OPENAI_COST_EXPORTERX": "1",
        "PATH": "/bin",
    }
    assert unknown_environment(environ) == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/import",
        "/api/v1/import/",
        "/api/v1/import/csv",
        "/api/v1/import/native",
        "/insert/0/prometheus/api/v1/import",
    ],
)
def test_push_url_of_another_import_format_is_refused(path: str) -> None:
    """A push URL on VictoriaMetrics' JSON-lines, CSV or native import path (which skip every line we push) is a
    settings problem naming the path to use, and the URL's password is not shown."""
    with pytest.raises(ConfigError) as caught:
        load_settings(push_url=f"http://user:PUSHPASSWORD@vm:8428{path}?extra_label=a=b")
    message = str(caught.value)
    assert "push_url" in message and "/api/v1/import/prometheus" in message
    assert "PUSHPASSWORD" not in message


@pytest.mark.parametrize(
    "url",
    [
        "http://vm:8428/api/v1/import/prometheus",
        "http://vminsert:8480/insert/0/prometheus/api/v1/import/prometheus",
        "http://vmagent:8429/api/v1/import/prometheus/",
        "https://proxy.example/metrics/push",
        "http://vm:8428",
    ],
)
def test_prometheus_import_and_other_push_paths_are_accepted(url: str) -> None:
    """The Prometheus text import path and any other path (vmagent, a proxy) are taken as given."""
    assert load_settings(push_url=url).push_url == url.rstrip("/")


def test_none_overrides_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag left unset (None) does not hide the environment's value."""
    monkeypatch.setenv("OPENAI_COST_EXPORTER_INTERVAL", "77")
    assert load_settings(interval=None).interval == 77


def test_every_invalid_field_in_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several invalid fields, from flags, environment and nested alerts, are all listed in one ConfigError."""
    monkeypatch.setenv("OPENAI_BASE_URL", "ftp://example")
    with pytest.raises(ConfigError) as info:
        load_settings(
            interval=-1,
            log_level="LOUD",
            listen="nowhere",
            revision_days=99,
            push_labels="oops",
            alerts={"spike_ratio": "0", "projects": {"p": {"daily_budget_usd": "-1"}}},
        )
    message = str(info.value)
    assert message.startswith("invalid settings:")
    for field in (
        "interval",
        "log_level",
        "listen",
        "revision_days",
        "push_labels",
        "OPENAI_BASE_URL",
        "alerts.spike_ratio",
        "alerts.projects.p.daily_budget_usd",
    ):
        assert f"  - {field}: " in message
    assert message.count("\n  - ") == 8


def test_unknown_file_key_is_an_error(tmp_path: Path) -> None:
    """A misspelt key in the config file is reported, not silently ignored."""
    path = write(tmp_path / "s.toml", "intervall = 5\n[alerts]\nspike = 2\n")
    with pytest.raises(ConfigError, match=r"intervall: Extra inputs") as info:
        load_settings(config=path)
    assert "alerts.spike" in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        {"interval": KEY},
        {"base_url": KEY},
        {"push_url": KEY},
        {"log_level": KEY},
        {"listen": KEY},
        {"push_labels": KEY},
        {"request_timeout": KEY},
        {"revision_days": KEY},
        {"alerts": {"spike_ratio": KEY}},
        {"alerts": {"projects": {"p": {"mute": KEY}}}},
    ],
)
def test_secret_never_in_validation_error(bad: dict[str, object]) -> None:
    """A key pasted into the wrong setting is not echoed by the ConfigError."""
    with pytest.raises(ConfigError) as info:
        load_settings(**bad)
    assert "TOPSECRET" not in str(info.value)
    assert "TOPSECRET" not in repr(info.value)


def test_secret_never_in_file_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A broken config file next to a key gives an error without the key."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", KEY)
    path = write(tmp_path / "s.toml", f'admin_key = "{KEY}"\ninterval = "{KEY}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config=path)
    assert "interval" in str(info.value)
    assert "TOPSECRET" not in str(info.value)


def test_unparsable_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """A nested setting given as non-JSON text in the environment is a ConfigError without the value."""
    monkeypatch.setenv("OPENAI_COST_EXPORTER_ALERTS", KEY)
    with pytest.raises(ConfigError, match=r"cannot load settings: .*alerts") as info:
        load_settings()
    assert "TOPSECRET" not in str(info.value)


def test_secrets_not_in_repr_or_str(tmp_path: Path) -> None:
    """repr and str of the settings hide the admin key, the webhook URL and a push URL's password."""
    settings = load_settings(
        admin_key=KEY,
        slack_webhook_url=WEBHOOK,
        push_url="https://user:PUSHPASSWORD@vm.example/api/v1/import/prometheus",
    )
    for text in (repr(settings), str(settings), repr(settings.admin_key), str(settings.slack_webhook_url)):
        assert "TOPSECRET" not in text
        assert "SECRETWEBHOOK" not in text
        assert "PUSHPASSWORD" not in text
    assert settings.push_url is not None
    assert "PUSHPASSWORD" in settings.push_url  # still usable


def test_key_value_beats_key_file(tmp_path: Path) -> None:
    """OPENAI_ADMIN_KEY wins over the file; a blank value falls back to the file."""
    path = write(tmp_path / "key", "sk-admin-from-file\n")
    assert load_settings(admin_key=KEY, admin_key_file=path).resolved_admin_key() == KEY
    assert load_settings(admin_key="  ", admin_key_file=path).resolved_admin_key() == "sk-admin-from-file"


def test_missing_key_names_the_variable() -> None:
    """Without any key, ConfigError tells which variables to set."""
    with pytest.raises(ConfigError, match="OPENAI_ADMIN_KEY") as info:
        load_settings().resolved_admin_key()
    assert "OPENAI_ADMIN_KEY_FILE" in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read OPENAI_ADMIN_KEY_FILE"),
        ("", "is empty"),
        (" \n\t\n", "is empty"),
        (b"\xff\xfe" + KEY.encode(), "is not UTF-8 text"),
        ("dir", "cannot read OPENAI_ADMIN_KEY_FILE"),
    ],
)
def test_bad_key_file(tmp_path: Path, content: str | bytes | None, message: str) -> None:
    """A missing, empty, binary or directory key file is a ConfigError naming the file, never its content."""
    path = tmp_path / "key"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        write(path, content)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(admin_key_file=path).resolved_admin_key()
    assert str(path) in str(info.value)
    assert "TOPSECRET" not in str(info.value)


def test_bad_webhook_file(tmp_path: Path) -> None:
    """A missing webhook file is a ConfigError naming SLACK_WEBHOOK_URL_FILE."""
    with pytest.raises(ConfigError, match="SLACK_WEBHOOK_URL_FILE"):
        load_settings(slack_webhook_url_file=tmp_path / "nope").resolved_webhook_url()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (":9876", (ALL_INTERFACES, 9876)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:9876", ("::1", 9876)),
        ("0.0.0.0:80", (ALL_INTERFACES, 80)),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    """HOST:PORT, :PORT and [IPv6]:PORT parse to a (host, port) pair."""
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["9876", "localhost", "host:", ":http", ":65536", ":-1", "h:1.5", ":²", ":１２"])
def test_parse_listen_rejects(value: str) -> None:
    """Values without a numeric ASCII port in 0..65535 are rejected."""
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_listen(value)


def test_invalid_listen_is_config_error() -> None:
    """An invalid listen setting becomes a ConfigError naming the field."""
    with pytest.raises(ConfigError, match="listen"):
        load_settings(listen=":99999")


@pytest.mark.parametrize("url", ["https://api.example/v1/", "http://127.0.0.1:8080"])
def test_url_trailing_slash_stripped(url: str) -> None:
    """http(s) URLs are accepted without their trailing slash."""
    settings = load_settings(base_url=url, push_url=url)
    assert settings.base_url == url.rstrip("/")
    assert settings.push_url == url.rstrip("/")


@pytest.mark.parametrize("name", ["settings.ini", "settings.json", "settings"])
def test_unknown_config_suffix(tmp_path: Path, name: str) -> None:
    """Only .toml, .yaml and .yml config files are accepted."""
    path = write(tmp_path / name, "interval = 5\n")
    with pytest.raises(ConfigError, match=r"use a \.toml, \.yaml or \.yml file"):
        load_settings(config=path)


def test_missing_config_file(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config=tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.toml", "interval = \n", "cannot load config file"),
        ("bad.yaml", "interval: [1\n", "cannot load config file"),
        ("list.yaml", "- 1\n- 2\n", "expected a mapping"),
    ],
)
def test_unparsable_config_file(tmp_path: Path, name: str, text: str, message: str) -> None:
    """Syntax errors and a non-mapping document are ConfigErrors, not crashes."""
    with pytest.raises(ConfigError, match=message):
        load_settings(config=write(tmp_path / name, text))


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    """An empty YAML file is valid and changes nothing."""
    assert load_settings(config=write(tmp_path / "empty.yaml", "")).job == JOB


def test_settings_class_is_the_one_built() -> None:
    """load_settings returns a Settings instance (what app.py and cli/main.py expect)."""
    assert isinstance(load_settings(), Settings)


def test_backfill_longer_than_retention_is_refused() -> None:
    """A first-start backfill beyond the retention would be fetched again every cycle, so it is an error."""
    with pytest.raises(ConfigError, match="backfill_days: Value error, must not exceed retention_days"):
        load_settings(backfill_days=300, retention_days=100)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"base_url": "http://127.0.0.1:80x/v1"}, "base_url: Value error, is not a valid URL"),
        ({"push_url": "http://user:s3cret@127.0.0.1:9x9/api"}, "push_url: Value error, is not a valid URL"),
        ({"alerts": {"baseline_days": 60}, "retention_days": 40}, "baseline_days must not exceed retention_days"),
        ({"digest_grace_hours": 30}, "digest_grace_hours"),
    ],
)
def test_more_invalid_settings_are_config_errors(overrides: dict[str, Any], message: str) -> None:
    """Bad URLs, a baseline longer than the retention and a digest grace of a day or more are refused up front,
    without echoing the value."""
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(**overrides)
    assert "s3cret" not in str(caught.value)


def test_a_key_with_typographic_characters_is_refused_without_showing_it() -> None:
    """A pasted key with an en dash cannot be sent as a header: one clear error, the key not shown."""
    with pytest.raises(ConfigError, match="characters no key has") as caught:
        load_settings(admin_key="sk\u2013admin-abcdef123456")
    assert "abcdef123456" not in str(caught.value)


def test_log_level_from_the_environment_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_COST_EXPORTER_LOG_LEVEL=debug works like --log-level debug."""
    monkeypatch.setenv("OPENAI_COST_EXPORTER_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"


def test_every_problem_comes_out_in_one_message(tmp_path: Path) -> None:
    """Field errors, cross-field checks and unreadable secret files are all reported at once, secrets unshown."""
    key_file = tmp_path / "key"
    key_file.write_text("sk admin secret-key-text", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(
            interval=-1,
            backfill_days=300,
            retention_days=60,
            admin_key_file=key_file,
            slack_webhook_url_file=tmp_path / "missing",
        )
    text = str(caught.value)
    for field in ("interval", "backfill_days", "admin_key_file", "slack_webhook_url_file"):
        assert f"  - {field}:" in text, text
    assert "secret-key-text" not in text
