"""Every default, named once: the settings model, the CLI help and the components all read them from here."""

from __future__ import annotations

from decimal import Decimal

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PORT = 9876  # not 9185: two other OpenAI exporters use that one
LISTEN = f"0.0.0.0:{PORT}"
#: A cycle a minute: the runaway rule reads 1-minute usage (figures/recent.py), and a 10x runaway must reach Slack
#: within 6 minutes of starting (bench/detection_delay.py); at 300 s the wait for the next cycle alone took 5.
INTERVAL_SECONDS = 60.0
JOB = "openai_cost_exporter"
STATE_FILE = "state.sqlite3"
REQUEST_TIMEOUT_SECONDS = 30.0
REVISION_DAYS = 2
RETENTION_DAYS = 400
PROJECTS_REFRESH_SECONDS = 3600.0
LISTINGS_WAIT_SECONDS = 60.0  # a first cycle (and `run --once`) waits this long at most for key and limit listings
NOTIFY_BACKOFF_SECONDS = 30.0
NOTIFY_MAX_BACKOFF_SECONDS = 3600.0
DIGEST_GRACE_HOURS = 6.0

# The alert policy ([alerts]).
SPIKE_RATIO = Decimal("1.5")
MIN_USD = Decimal("1.0")
BASELINE_DAYS = 7
ESCALATION_FACTOR = Decimal(2)
RUNAWAY_RATIO = Decimal(3)
RUNAWAY_MIN_USD = Decimal(5)  # estimated USD per hour

SPEND_LIMIT_SHARE = Decimal("0.8")  # of a hard spend limit, month to date

# Spend by API key: keys per project with a series of their own (the rest are one "other" series).
API_KEYS_TOP = 10

# Usage (estimates from token usage).
USAGE_HISTORY_DAYS = 7

# The demo.
DEMO_INTERVAL_SECONDS = 30.0
DEMO_PROJECTS = 40
