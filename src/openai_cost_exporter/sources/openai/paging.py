"""How the OpenAI client pages the costs: the days per page that keep a page a bounded size (openai-admin-api.md
§1.3: the API pages by daily buckets, up to 180 a page, and a page is parsed whole)."""

from __future__ import annotations

#: Daily buckets asked per costs page. The API allows 180, but a page is parsed whole: three days keep a
#: 2,000-project organization at ~5k rows (1.3 MB of JSON, ~4 MB decoded) a page, and a cold cycle's 31 days
#: (11 pages) still come before the projects' 20; grouped by line item (~3x the rows) two days keep it near that.
COSTS_PAGE_DAYS = 3
COSTS_PAGE_DAYS_WITH_LINE_ITEMS = 2
#: Grouped by API key as well, a day has a row per key (a few per project): fewer days again.
COSTS_PAGE_DAYS_BY_KEY = 3
COSTS_PAGE_DAYS_BY_KEY_WITH_LINE_ITEMS = 1


def costs_page_days(line_items: bool, api_keys: bool = False) -> int:
    """Days per costs page: fewer when each day has a row per line item, or per API key."""
    if api_keys:
        return COSTS_PAGE_DAYS_BY_KEY_WITH_LINE_ITEMS if line_items else COSTS_PAGE_DAYS_BY_KEY
    return COSTS_PAGE_DAYS_WITH_LINE_ITEMS if line_items else COSTS_PAGE_DAYS
