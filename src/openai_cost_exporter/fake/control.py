"""The fake Admin API's control endpoints, for tests that run the fake in another process.

No auth, no faults, not logged; `fake/api.py` routes every `/_fake/` path here:

    GET  /_fake/faults        current `Faults` as JSON; POST the same shape (any subset of fields) to change
    GET  /_fake/requests      {"counts": {path: n}, "log": [[path, query], ...]} of the API requests so far
    POST /_fake/reset         clear the request log and every fault
    POST /_fake/spend         {"day": "YYYY-MM-DD", "project_id": str|null, "line_item": str, "amount": "1.5"}
    POST /_fake/scale_today   {"project_id": str|null, "factor": "4"}
    POST /_fake/runaway       {"project_id": str|null, "factor": "10", "minutes_ago": 40}: the project spends
                              `factor` times as fast since then (usage at once, billed costs after the lag);
                              {"project_id": ..., "stop": true} ends it now
    GET  /_fake/totals?day=YYYY-MM-DD   {"day": ..., "totals": {project_id: "12.3", ...}}: amounts are
                              decimal strings; the unattributed total (null project_id) is under key "null"
    POST /_fake/spend_limit   {"project_id": str|null, "threshold_cents": int|null, "status": "inactive"}: set the
                              hard monthly limit of a project (null: of the organization); null cents removes
                              it; status "inactive" (the default) or "enforcing"
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from dataclasses import asdict
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from openai_cost_exporter.fake.faults import Faults
from openai_cost_exporter.fake.http import Params, Reply, Response, json_response
from openai_cost_exporter.fake.org import FakeOrg

PREFIX = "/_fake/"
_OK = {"ok": True}


class Control:
    """Reads and changes the fake's state: its faults, its request log and the organization's spend."""

    def __init__(
        self,
        org: FakeOrg,
        faults: Faults,
        *,
        request_log: list[tuple[str, str]],
        faults_fired: Counter[str],
        lock: threading.Lock,
    ) -> None:
        self._org = org
        self._faults = faults
        self._request_log = request_log
        self._faults_fired = faults_fired
        self._lock = lock  # the API's: a control request never sees a half-counted API request

    def handle(self, method: str, path: str, query: str, body: bytes) -> Response:
        """Answer one control request: 200 with JSON, 404 for an unknown endpoint, 400 for a bad body."""
        try:
            payload = json.loads(body) if body else {}
            if not isinstance(payload, dict):
                raise ValueError("the body must be a JSON object")
            result = self._action(method, path, parse_qs(query), payload)
        except Reply as reply:
            return json_response(reply.status, {"error": {"message": reply.message, "type": reply.type}})
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            return json_response(HTTPStatus.BAD_REQUEST, {"error": {"message": f"bad control request: {exc!r}"}})
        return json_response(HTTPStatus.OK, result)

    def _action(self, method: str, path: str, params: Params, payload: Any) -> object:
        action = (method, path)
        with self._lock:
            if action == ("GET", "/_fake/faults"):
                return asdict(self._faults)
            if action == ("POST", "/_fake/faults"):
                self._faults.update(payload)
                return asdict(self._faults)
            if action == ("GET", "/_fake/requests"):
                counts = Counter(p for p, _ in self._request_log)
                return {"counts": dict(counts), "log": [list(entry) for entry in self._request_log]}
            if action == ("POST", "/_fake/reset"):
                self._request_log.clear()
                self._faults_fired.clear()
                self._faults.update(asdict(Faults()))
                return asdict(self._faults)
            return self._org_action(action, params, payload)

    def _org_action(self, action: tuple[str, str], params: Params, payload: Any) -> object:
        if action == ("POST", "/_fake/spend"):
            day = dt.date.fromisoformat(payload["day"])
            amount = Decimal(str(payload["amount"]))
            self._org.set_cost(day, payload["project_id"], str(payload["line_item"]), amount)
            return _OK
        if action == ("POST", "/_fake/scale_today"):
            self._org.scale_today(payload["project_id"], Decimal(str(payload["factor"])))
            return _OK
        if action == ("POST", "/_fake/runaway"):
            self._runaway(payload)
            return _OK
        if action == ("POST", "/_fake/spend_limit"):
            status = payload.get("status", "inactive")
            self._org.set_spend_limit(payload["project_id"], payload["threshold_cents"], str(status))
            return _OK
        if action == ("GET", "/_fake/totals"):
            day = dt.date.fromisoformat(params["day"][0])
            totals = {str(p) if p else "null": str(v) for p, v in self._org.daily_totals(day).items()}
            return {"day": day.isoformat(), "totals": totals}
        raise Reply(HTTPStatus.NOT_FOUND, f"no control endpoint {action[0]} {action[1]}")

    def _runaway(self, payload: Any) -> None:
        project_id = payload["project_id"]
        if payload.get("stop") is True:
            self._org.stop_runaway(project_id)
            return
        minutes = payload.get("minutes_ago", 0)
        if type(minutes) not in (int, float) or minutes < 0:
            raise ValueError("minutes_ago must be a non-negative number")
        started = self._org.clock.now() - dt.timedelta(minutes=minutes)
        self._org.start_runaway(project_id, Decimal(str(payload["factor"])), started)
