from __future__ import annotations

from openai_cost_exporter.cli import main

raise SystemExit(main())
