"""Locust users for the stack: one FastHttpUser class per scenario of scenarios.py.

Pick the scenario with the environment (what `make compare` and compose do):

    SCENARIO=json locust -f loadtest/locustfile.py --host http://127.0.0.1:6767

With SCENARIO unset every scenario's class is defined and you pick one in the web UI
(`--class-picker`, the default of compose/loadtest.yml) or on the command line
(`locust -f loadtest/locustfile.py Plaintext`). Every response is checked against the
table (status, then a cheap body check); a 4xx that a scenario expects (invalid POSTs)
is a success, anything else a failure.
"""

from __future__ import annotations

import os
import sys

from locust import FastHttpUser, constant

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scenarios import SCENARIOS, Request, Scenario


def _task(request: Request):
    body = request.body.encode() if request.body is not None else None
    headers = dict(request.headers) or None
    expected = " or ".join(map(str, request.expect))

    def task(user: FastHttpUser) -> None:
        with user.client.request(request.method, request.path, data=body, headers=headers,
                                 name=request.name, catch_response=True) as response:
            if response.status_code not in request.expect:
                response.failure(f"status {response.status_code}, expected {expected}")
            elif request.contains is not None and request.contains not in (response.content or b""):
                response.failure(f"body lacks {request.contains!r}")
            else:
                response.success()

    task.__name__ = request.name
    return task


def _user_class(scenario: Scenario) -> type[FastHttpUser]:
    class_name = "".join(part.capitalize() for part in scenario.name.replace("-", "_").split("_"))
    attrs = {
        "__doc__": scenario.description,
        "__module__": __name__,
        "tasks": {_task(request): request.weight for request in scenario.requests},
        "wait_time": constant(0),  # closed loop: each user sends its next request at once
        "network_timeout": 30.0,
        "connection_timeout": 10.0,
    }
    return type(class_name, (FastHttpUser,), attrs)


_selected = [name.strip() for name in os.environ.get("SCENARIO", "").split(",") if name.strip()]
_unknown = [name for name in _selected if name not in SCENARIOS]
if _unknown:
    raise SystemExit(f"unknown SCENARIO {', '.join(_unknown)}; known: {', '.join(SCENARIOS)}")
globals().update({cls.__name__: cls for cls in (
    _user_class(scenario) for scenario in SCENARIOS.values()
    if scenario.generator == "locust" and (not _selected or scenario.name in _selected))})
