from __future__ import annotations

from openai_cost_exporter.cli.main import main

raise SystemExit(main())
