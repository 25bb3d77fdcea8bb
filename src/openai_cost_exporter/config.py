"""All settings in one object, built once at start-up.

Precedence: command-line flags > environment variables > the optional config file (TOML or YAML) > defaults.
Environment variables: `OPENAI_ADMIN_KEY`, `OPENAI_ADMIN_KEY_FILE`, `OPENAI_BASE_URL`, `SLACK_WEBHOOK_URL`,
`SLACK_WEBHOOK_URL_FILE`, and `OPENAI_COST_EXPORTER_<FIELD>` for every other field (nested alert settings:
`OPENAI_COST_EXPORTER_ALERTS__SPIKE_RATIO`). Secrets are `SecretStr`: they never show in `repr` or errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.errors import ConfigError
from openai_cost_exporter.rules import AlertPolicy

ENV_PREFIX = "OPENAI_COST_EXPORTER_"
MAX_PORT = 65535  # TCP ports are 16-bit
#: Paths of VictoriaMetrics' other import formats: they skip every line of the Prometheus text we push, and say
#: nothing (JSON lines, CSV, native). Other paths (vmagent, a proxy, `/api/v1/import/prometheus`) are taken as given.
WRONG_IMPORT_PATHS = ("/api/v1/import", "/api/v1/import/csv", "/api/v1/import/native")


def default_state_dir() -> Path:
    """`$XDG_STATE_HOME/openai-cost-exporter`, the usual place for a user's service state."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "openai-cost-exporter"


def _alias(env: str) -> AliasChoices:
    # Only the documented variable name: with the field name as a second choice the environment source would
    # also read an unprefixed `BASE_URL` or `ADMIN_KEY`. Flags and files still use the field name
    # (populate_by_name).
    return AliasChoices(env)


class Settings(BaseSettings):
    """Everything the exporter can be told."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
        frozen=True,
    )

    config: Path | None = Field(default=None, description="Optional TOML or YAML settings file.")
    admin_key: SecretStr | None = Field(default=None, validation_alias=_alias("OPENAI_ADMIN_KEY"))
    admin_key_file: Path | None = Field(default=None, validation_alias=_alias("OPENAI_ADMIN_KEY_FILE"))
    base_url: str = Field(default=defaults.DEFAULT_BASE_URL, validation_alias=_alias("OPENAI_BASE_URL"))
    request_timeout: float = Field(default=defaults.REQUEST_TIMEOUT_SECONDS, gt=0)
    slack_webhook_url: SecretStr | None = Field(default=None, validation_alias=_alias("SLACK_WEBHOOK_URL"))
    slack_webhook_url_file: Path | None = Field(default=None, validation_alias=_alias("SLACK_WEBHOOK_URL_FILE"))
    listen: str = defaults.LISTEN
    push_url: str | None = Field(default=None, repr=False)  # may carry a basic-auth password (user:pass@)
    # NoDecode: the environment gives "team=ml,env=prod", not JSON; the validator below parses it.
    push_labels: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    job: str = defaults.JOB
    replica: str = ""  # a `replica` label on the exporter's own metrics (two replicas push the same figures)
    interval: float = Field(default=defaults.INTERVAL_SECONDS, gt=0)
    state_dir: Path = Field(default_factory=default_state_dir)
    line_items: bool = False
    usage: bool = True  # estimates from the usage endpoints, and the runaway alert
    api_keys: bool = False  # costs by API key too (openai_daily_api_key_cost_usd), key names in the background
    api_keys_top: int = Field(default=defaults.API_KEYS_TOP, ge=1, le=1000)
    spend_limits: bool = True  # read the hard spend limits (organization, every project) in the background
    revision_days: int = Field(default=defaults.REVISION_DAYS, ge=0, le=60)
    retention_days: int = Field(default=defaults.RETENTION_DAYS, ge=31)
    backfill_days: int = Field(default=0, ge=0)  # up to retention_days (below)
    projects_refresh: float = Field(
        default=defaults.PROJECTS_REFRESH_SECONDS, gt=0, description="Seconds between project name refreshes."
    )
    notify_backoff: float = Field(
        default=defaults.NOTIFY_BACKOFF_SECONDS, ge=0, description="First wait before re-sending a failed message."
    )
    digest: bool = False
    digest_grace_hours: float = Field(
        default=defaults.DIGEST_GRACE_HOURS, ge=0, lt=24
    )  # the digest of a day is sent within the next day
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    alerts: AlertPolicy = Field(default_factory=AlertPolicy)

    # Cross-field checks are field validators reading the fields validated before them (`info.data`), so they
    # are reported with every other problem in one message, not only once all the rest is valid.
    @field_validator("backfill_days")
    @classmethod
    def _backfill_within_retention(cls, value: int, info: ValidationInfo) -> int:
        # Days pruned by the retention would look never fetched, and be fetched again every cycle.
        retention = info.data.get("retention_days")
        if retention is not None and value > retention:
            raise ValueError("must not exceed retention_days")
        return value

    @field_validator("alerts")
    @classmethod
    def _baseline_within_retention(cls, value: AlertPolicy, info: ValidationInfo) -> AlertPolicy:
        # A baseline longer than the retention would read days that were just deleted.
        retention = info.data.get("retention_days")
        if retention is not None and value.baseline_days > retention:
            raise ValueError("baseline_days must not exceed retention_days")
        return value

    @field_validator("admin_key_file", "slack_webhook_url_file")
    @classmethod
    def _secret_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Read now, so an unreadable or empty file is one of the problems reported together (never its text).
        if value is not None:
            name = "OPENAI_ADMIN_KEY" if info.field_name == "admin_key_file" else "SLACK_WEBHOOK_URL"
            try:
                text = _secret(None, value, name) or ""
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            check = _check_key if name == "OPENAI_ADMIN_KEY" else _check_webhook
            check(text)
        return value

    @field_validator("admin_key")
    @classmethod
    def _key_characters(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_key(value.get_secret_value().strip())
        return value

    @field_validator("slack_webhook_url")
    @classmethod
    def _webhook_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, with every other problem: slack_sdk would put the whole URL into its error.
        _check_webhook(value.get_secret_value().strip() if value is not None else "")
        return value

    @field_validator("base_url", "push_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        try:
            httpx.URL(value)
        except httpx.InvalidURL:
            raise ValueError("is not a valid URL (check the host and port)") from None  # the value may hold a password
        return value.rstrip("/")

    @field_validator("push_url")
    @classmethod
    def _prometheus_import_path(cls, value: str | None) -> str | None:
        path = httpx.URL(value).path.rstrip("/") if value is not None else ""
        wrong = next((suffix for suffix in WRONG_IMPORT_PATHS if path.endswith(suffix)), None)
        if wrong is not None:  # said by path only: the URL may hold a password
            raise ValueError(
                f"{wrong} is not VictoriaMetrics' import path for the Prometheus text format this exporter "
                "pushes (every line would be skipped); use .../api/v1/import/prometheus"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value:
            parse_listen(value)
        return value

    @field_validator("push_labels", mode="before")
    @classmethod
    def _labels_from_text(cls, value: Any) -> Any:
        # From the environment: "team=ml,env=prod".
        if isinstance(value, str):
            parts = [part for part in value.split(",") if part.strip()]
            if any("=" not in part for part in parts):
                raise ValueError("expected name=value pairs separated by commas")
            return {name.strip(): val.strip() for name, val in (part.split("=", 1) for part in parts)}
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = getattr(init_settings, "init_kwargs", {}).get("config") or os.environ.get(f"{ENV_PREFIX}CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path:
            sources.append(_file_source(settings_cls, Path(path)))
        return tuple(sources)

    def resolved_admin_key(self) -> str:
        """The admin key from the variable or the file; ConfigError when neither is set."""
        key = _secret(self.admin_key, self.admin_key_file, "OPENAI_ADMIN_KEY")
        if key is None:
            raise ConfigError(
                "no OpenAI admin key: set OPENAI_ADMIN_KEY or OPENAI_ADMIN_KEY_FILE "
                "(an admin key, sk-admin-..., with the api.usage.read scope), or try `openai-cost-exporter demo`"
            )
        try:
            _check_key(key)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return key

    def resolved_webhook_url(self) -> str | None:
        """The Slack webhook URL, or None: alerts then go to the log."""
        return _secret(self.slack_webhook_url, self.slack_webhook_url_file, "SLACK_WEBHOOK_URL")

    @property
    def state_file(self) -> Path:
        return self.state_dir / defaults.STATE_FILE


def _check_webhook(url: str) -> None:
    if url and not url.startswith(("https://", "http://")):
        raise ValueError("the Slack webhook URL must start with https://")


def _check_key(key: str) -> None:
    if key and (not (key.isascii() and key.isprintable()) or " " in key):
        # Said without the key: a pasted key with a typographic dash or a space cannot be an HTTP header.
        raise ValueError("the OpenAI admin key has characters no key has (non-ASCII, spaces or control)")


def _secret(value: SecretStr | None, path: Path | None, name: str) -> str | None:
    if value is not None and value.get_secret_value().strip():
        return value.get_secret_value().strip()
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {name}_FILE {path}: {exc.strerror}") from None
    except UnicodeDecodeError:  # its text would be the secret: say nothing of the content
        raise ConfigError(f"{name}_FILE {path} is not UTF-8 text") from None
    if not text:
        raise ConfigError(f"{name}_FILE {path} is empty")
    return text


def _file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.suffix not in {".yaml", ".yml", ".toml"}:
        raise ConfigError(f"config file {path}: use a .toml, .yaml or .yml file")
    import yaml  # noqa: PLC0415 (a few MB that only a config file needs)

    try:
        if path.suffix == ".toml":
            return TomlConfigSettingsSource(settings_cls, toml_file=path)
        return YamlConfigSettingsSource(settings_cls, yaml_file=path)
    except (OSError, ValueError, yaml.YAMLError) as exc:  # YAMLError is neither: it would escape as a crash
        raise ConfigError(f"cannot load config file {path}: {exc}") from None
    except TypeError:  # a YAML list or scalar instead of a mapping
        raise ConfigError(f"config file {path}: expected a mapping of settings at the top level") from None


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT`, meaning every interface) as a (host, port) pair."""
    host, sep, port = value.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= MAX_PORT:
        # The value is not echoed: a secret pasted into the wrong setting must not reach the error text.
        raise ValueError("expected HOST:PORT, e.g. :9876 or 127.0.0.1:9876")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - ":PORT" means every interface


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; every invalid field is reported in one ConfigError."""
    values = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = [f"  - {_field_name(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("invalid settings:\n" + "\n".join(problems)) from None
    except (OSError, ValueError) as exc:  # an unreadable or unparsable config file
        raise ConfigError(f"cannot load settings: {exc}") from None


def _field_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "settings"
