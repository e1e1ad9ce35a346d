"""The monitoring overlay (compose/monitoring.yml) on a real stack: a real Prometheus
scraping the dispatcher's stack, the shipped alert rules (compose/monitoring/alerts.yml,
as the image carries them) seen firing and clearing, and the console page.

- every scaled handler and the dispatcher are scraped;
- /consoles/stack.html renders the stack's real figures;
- the handlers scaled to 0: NoHandler fires (after its `for: 30s`); scaled back, it clears;
- the dispatcher restarted in place: DispatcherRestarted fires;
- every variant's processes with metrics are named in prometheus.yml's scrape jobs.

Prometheus scrapes and evaluates every second here (PROMETHEUS_SCRAPE_INTERVAL and
PROMETHEUS_EVALUATION_INTERVAL; production: 5 s and 15 s), so the wait is the rules' own
`for:`. No time bound is asserted: the Makefile runs this module in E2E_UNTIMED, first,
because a `docker swarm leave` on the engine wipes the DNS names of the containers then up
and this module resolves names for its whole minute (docs/testing-time.md).
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import time

import pytest
import requests

from comparison.variants import VARIANTS
from stack import COMPOSE, ROOT, report
from support import wait_until

PROMETHEUS_CONFIG = ROOT / "compose" / "monitoring" / "prometheus.yml"
STACK = {"purpose": "monitoring", "processes": 3, "extra_files": ("compose/monitoring.yml",),
         "env": {"PROMETHEUS_PUBLISH": "127.0.0.1:0", "PROMETHEUS_SCRAPE_INTERVAL": "1s",
                 "PROMETHEUS_EVALUATION_INTERVAL": "1s", "ACCESS_LOG": "false"}}
on_the_dispatcher_stack = pytest.mark.parametrize("stack", ["mongrel2-gevent-dispatch"], indirect=True,
                                                  scope="module")
FOR_NO_HANDLER = 30   # alerts.yml: NoHandler's `for:`


class Prometheus:
    """The stack's Prometheus through its port published on loopback."""

    def __init__(self, stack):
        container, = stack.container_ids("prometheus")
        port = stack.inspect(container)["NetworkSettings"]["Ports"]["9090/tcp"][0]["HostPort"]
        self.url = f"http://127.0.0.1:{port}"

    def api(self, path: str, **params) -> dict:
        answer = requests.get(self.url + "/api/v1/" + path, params=params, timeout=5)
        answer.raise_for_status()
        return answer.json()["data"]

    def alerts(self, name: str) -> list[dict]:
        """The pending or firing alerts named `name` (an inactive one is not listed)."""
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def targets(self, job: str) -> dict[str, str]:
        """instance: health of the job's targets."""
        return {t["labels"]["instance"]: t["health"] for t in self.api("targets")["activeTargets"]
                if t["labels"]["job"] == job}

    def value(self, expr: str) -> float | None:
        result = self.api("query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else None

    def console(self, page: str) -> str:
        answer = requests.get(f"{self.url}/consoles/{page}", timeout=10)
        assert answer.status_code == 200, answer.text[:2000]
        return answer.text


@pytest.fixture(scope="module")
def prometheus(stack) -> Prometheus:
    return Prometheus(stack)


def figures(page: str) -> dict[str, list[str]]:
    """The console page's figures by their data-figure name (a name per front repeats)."""
    found: dict[str, list[str]] = {}
    for name, text in re.findall(r'data-figure="([^"]+)"[^>]*>([^<]*)</a>', page):
        found.setdefault(name, []).append(html.unescape(text))
    return found


def number(text: str) -> float:
    assert text != "-", "no value: the expression found no series"
    return float(text)


@on_the_dispatcher_stack
def test_prometheus_scrapes_every_scaled_handler_and_the_dispatcher(stack, prometheus):
    handlers = {f"{stack.back_ip(cid)}:9100" for cid in stack.app_ids()}
    dispatcher, = stack.container_ids("dispatcher")
    wait_until(lambda: prometheus.targets("handler") == dict.fromkeys(handlers, "up")
               and prometheus.targets("dispatcher") == {f"{stack.back_ip(dispatcher)}:9101": "up"},
               60, "Prometheus to scrape the three handlers and the dispatcher", interval=0.5)
    # The overlay's 1 s intervals are what this Prometheus runs with.
    config = prometheus.api("status/config")["yaml"]
    assert "scrape_interval: 1s" in config and "evaluation_interval: 1s" in config, config[:500]


@on_the_dispatcher_stack
def test_the_console_page_shows_the_stacks_figures(stack, prometheus):
    def shown():
        # Requests while the page is read: a rate needs a counter seen growing between
        # two scrapes, and a counter's first request creates it (Prometheus reads its
        # first value as the start, not 0).
        for _ in range(10):
            assert stack.get("/json").status_code == 200
        assert stack.get("/error").status_code == 500   # a 5xx for the page to count
        page = figures(prometheus.console("stack.html"))
        ready = (page.get("requests_per_second", ["-"])[0] != "-" and number(page["requests_per_second"][0]) > 0
                 and page.get("errors_5xx_per_second", ["-"])[0] != "-"
                 and number(page["errors_5xx_per_second"][0]) > 0
                 and page.get("front_requests_per_second"))
        return page if ready else None

    page = wait_until(shown, 60, "the console page to show the requests just sent", interval=0.5)
    report("console page", **{name: values for name, values in page.items()})
    assert number(page["handlers"][0]) == 3 and number(page["app_targets_up"][0]) == 3
    assert number(page["app_targets"][0]) == 3
    assert number(page["max_waiting"][0]) == 100 and number(page["waiting"][0]) == 0
    assert number(page["free_credits"][0]) > 0
    assert number(page["alerts_firing"][0]) == 0
    # One front (mongrel2), its requests counted by the dispatcher.
    front, = page["front_requests_per_second"]
    assert number(front) > 0
    assert number(page["errors_5xx_per_second"][0]) < number(page["requests_per_second"][0])
    # Its stylesheet is the package's own web UI's, served by the same Prometheus.
    stylesheet, = re.findall(r'<link rel="stylesheet" href="([^"]+)"', prometheus.console("stack.html"))
    assert requests.get(prometheus.url + stylesheet, timeout=10).status_code == 200, stylesheet


@on_the_dispatcher_stack
def test_no_handler_fires_when_the_handlers_are_gone_and_clears_when_they_are_back(stack, prometheus):
    assert prometheus.alerts("NoHandler") == []
    stack.scale(0)
    gone = time.monotonic()
    wait_until(lambda: prometheus.value("m2stack_dispatcher_handlers") == 0, 30,
               "the dispatcher's handler count to reach 0 in Prometheus", interval=0.5)
    seen = wait_until(lambda: prometheus.alerts("NoHandler"), 30, "NoHandler pending", interval=0.5)
    assert seen[0]["state"] == "pending", seen   # `for: 30s` first
    firing, = wait_until(lambda: [a for a in prometheus.alerts("NoHandler") if a["state"] == "firing"],
                         FOR_NO_HANDLER + 60, "NoHandler firing", interval=0.5)
    fired = time.monotonic() - gone
    # The dispatcher's count fired it (the `or` keeps its labels), not the handlers' targets
    # gone, which fire it too on a stack without a dispatcher.
    assert firing["labels"] == {"alertname": "NoHandler", "severity": "critical", "job": "dispatcher",
                                "instance": f"{stack.back_ip(stack.container_ids('dispatcher')[0])}:9101"}
    assert firing["annotations"]["summary"] == "No handler takes requests"

    stack.scale(3)
    stack.wait_healthy()
    back = time.monotonic()
    wait_until(lambda: prometheus.alerts("NoHandler") == [], 60, "NoHandler to clear", interval=0.5)
    report("NoHandler", seconds_to_fire=round(fired, 1), seconds_to_clear=round(time.monotonic() - back, 1))


@on_the_dispatcher_stack
def test_dispatcher_restarted_fires_after_a_restart_in_place(stack, prometheus):
    dispatcher, = stack.container_ids("dispatcher")
    instance = f"{stack.back_ip(dispatcher)}:9101"
    started = prometheus.value("process_start_time_seconds{job='dispatcher'}")
    assert started is not None and prometheus.alerts("DispatcherRestarted") == []
    subprocess.run(["docker", "restart", "-t", "15", dispatcher], check=True, capture_output=True)
    restarted = time.monotonic()
    firing, = wait_until(lambda: [a for a in prometheus.alerts("DispatcherRestarted") if a["state"] == "firing"],
                         60, "DispatcherRestarted firing", interval=0.5)
    assert firing["labels"]["instance"] == instance and firing["labels"]["severity"] == "warning"
    assert prometheus.value("process_start_time_seconds{job='dispatcher'}") > started
    report("DispatcherRestarted", seconds_to_fire=round(time.monotonic() - restarted, 1))
    # Not down: it answered again within its restart, far inside DispatcherDown's 30 s.
    assert [a for a in prometheus.alerts("DispatcherDown") if a["state"] == "firing"] == []


# -- every variant's metrics are scraped --------------------------------------------------------------

def scrape_jobs() -> dict[str, tuple[set[str], int]]:
    """job: (the DNS names it looks up, their port), from prometheus.yml."""
    # The e2e venv has no YAML parser, and the jobs are a few lines of a fixed shape (one
    # it does not read fails the test below, never passes it).
    text = PROMETHEUS_CONFIG.read_text()
    jobs = {}
    for block in re.split(r"\n  - job_name: ", text)[1:]:
        name = block.split("\n", 1)[0].strip()
        names = re.search(r"names: \[([^\]]*)\]", block).group(1)
        port = int(re.search(r"port: (\d+)", block).group(1))
        jobs[name] = ({n.strip() for n in names.split(",")}, port)
    return jobs


# The ceiling handler (loadtest/ceiling.py) is a load-test tool with no metrics at all.
WITH_METRICS = [name for name, v in VARIANTS.items() if v.hub is not None]


@pytest.mark.parametrize("variant", WITH_METRICS)
def test_every_process_with_metrics_is_scraped_in_every_variant(variant, docker_available):
    command = [*COMPOSE]
    for file in (*VARIANTS[variant].files, "compose/monitoring.yml"):
        command += ["-f", str(ROOT / file)]
    out = subprocess.run([*command, "config", "--format", "json"], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, DB_PASSWORD="unused"))
    assert out.returncode == 0, out.stderr[-2000:]
    services = json.loads(out.stdout)["services"]
    jobs = scrape_jobs()
    assert set(jobs) == {"handler", "dispatcher"}, jobs
    prometheus_networks = set(services["prometheus"]["networks"])
    # What serves metrics: the app (METRICS_PORT, default 9100) and the dispatcher (9101).
    expected = {VARIANTS[variant].app_service: ("handler", 9100)}
    if "dispatcher" in services:
        expected["dispatcher"] = ("dispatcher", 9101)
    # ... and no other service says it serves any.
    said = {name for name, service in services.items()
            if {"METRICS_PORT", "DISPATCH_METRICS_PORT"} & set(service.get("environment") or {})}
    assert said <= set(expected), said
    for service, (job, port) in expected.items():
        environment = services[service].get("environment") or {}
        assert environment.get("METRICS_PORT" if job == "handler" else "DISPATCH_METRICS_PORT") in ("", None, str(port))
        assert service in jobs[job][0] and jobs[job][1] == port, (service, jobs)
        assert prometheus_networks & set(services[service]["networks"]), (service, "no network shared")
