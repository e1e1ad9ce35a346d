"""`make compare` in short mode: the pipeline works end to end (not a benchmark).

Runs loadtest/compare.py for a few seconds per variant on one scenario, then checks
the report folder: every file, a row per variant and scenario with non-zero,
failure-free numbers, and no container left behind. Nothing here asserts on speed.
Two app processes per variant, so the WSGI variant's arithmetic (one container of N
workers, where Mongrel2 variants run N containers of one process) is exercised.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from comparison.variants import VARIANTS as TABLE
from stack import COMPOSE, ROOT, hold_off_swarm_leave

# One of each kind the harness must handle: a Mongrel2 hub, the dispatcher's extra
# service, a WSGI variant (one container of N workers) and a peer with its own app. The
# other variants differ from these only in compose files, which the e2e stacks cover.
VARIANTS = ["mongrel2-gevent", "mongrel2-gevent-dispatch", "wsgi-gevent", "uvicorn-starlette"]
SCENARIOS = ["json"]   # one scenario: the report's per-scenario shape is the same for each
PREFIX = "m2cmptest"
HANDLERS = 2
# The module's fixture runs the whole comparison: more than the e2e default per test.
pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def report(tmp_path_factory, docker_available):
    assert all(name in TABLE for name in VARIANTS)
    out = tmp_path_factory.mktemp("compare") / "report"
    env = dict(os.environ, VARIANTS=",".join(VARIANTS), SCENARIOS=",".join(SCENARIOS),
               DURATION="3", WARMUP="1", USERS="10", SPAWN_RATE="10", HANDLERS=str(HANDLERS), ROUNDS="1",
               LOCUST_WORKERS="1", REPORT_DIR=str(out), COMPARE_PROJECT_PREFIX=PREFIX,
               COMPOSE=" ".join(COMPOSE))
    lock = hold_off_swarm_leave()  # its stacks are its own, not the fixture's
    try:
        result = subprocess.run([sys.executable, str(ROOT / "loadtest" / "compare.py")], env=env,
                                capture_output=True, text=True, timeout=1200)
    finally:
        if lock is not None:
            lock.close()
    print(result.stdout[-6000:], result.stderr[-3000:])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out


def test_report_folder_has_every_file(report):
    for name in ("report.md", "results.json", "results.csv", "settings.json", "machine.json",
                 "throughput.png", "latency.png", "cpu.png"):
        assert (report / name).stat().st_size > 0, name
    for chart in ("throughput.png", "latency.png", "cpu.png"):
        assert (report / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for variant in VARIANTS:
        for scenario in SCENARIOS:
            assert (report / "raw" / variant / scenario / "locust_stats.csv").exists()


def test_a_failure_free_row_per_variant_and_scenario(report):
    rows = json.loads((report / "results.json").read_text())
    assert len(rows) == len(VARIANTS) * len(SCENARIOS)
    for variant in VARIANTS:
        for scenario in SCENARIOS:
            row, = [r for r in rows if r["variant"] == variant and r["scenario"] == scenario]
            assert row["status"] == "ok", row
            assert row["requests"] > 0 and row["rps"] > 0, row
            assert row["failures"] == 0, row
            assert row["p50_ms"] is not None and row["p99_ms"] >= row["p50_ms"], row
            assert row["server_cpu_s"] > 0 and row["cpu_s_per_1k"] > 0, row
            assert row["handler_cpu_s_per_1k"] > 0, row
            assert row["generator_cpu_s"] > 0, row
            assert row["peak_mib_per_handler_process"] > 0, row
            assert row["handlers"] == HANDLERS, row


def test_app_processes_are_counted_per_front_door(report):
    """N handler containers of one process each, or one WSGI container of N workers:
    the app's CPU and memory are those of the variant's app service, and the memory per
    process divides a WSGI container's peak by its worker count."""
    rows = json.loads((report / "results.json").read_text())
    for row in rows:
        variant = TABLE[row["variant"]]
        app = row["peak_mib_by_service"][variant.app_service]
        assert row["cpu_by_service_s"][variant.app_service] > 0, row
        if variant.scaled:
            assert {"mongrel2", "handler"} <= set(row["cpu_by_service_s"]), row
            assert row["peak_mib_per_handler_process"] == app, row
        else:
            assert "mongrel2" not in row["cpu_by_service_s"] and "handler" not in row["cpu_by_service_s"], row
            assert abs(row["peak_mib_per_handler_process"] - app / HANDLERS) <= 0.08, row  # two roundings to 0.1
    with (report / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)


def test_markdown_has_a_table_per_scenario_with_a_row_per_variant(report):
    text = (report / "report.md").read_text()
    for scenario in SCENARIOS:
        section = text.split(f"## {scenario}\n", 1)[1].split("\n## ", 1)[0]
        table = [line for line in section.splitlines() if line.startswith("| ")][1:]
        assert sorted(line.split("|")[1].strip() for line in table) == sorted(VARIANTS)
        best = [line for line in table if "| 1.00 |" in line]
        assert len(best) >= 1, table


def test_every_stack_was_removed(report):
    for kind in ("container", "network", "volume"):
        projects = subprocess.run(
            ["docker", kind, "ls", *(["-a"] if kind == "container" else []), "--format",
             '{{.Label "com.docker.compose.project"}}'],
            capture_output=True, text=True, check=True).stdout.split()
        assert not [p for p in projects if p.startswith(PREFIX + "-")], (kind, projects)


def test_every_row_names_the_server_side_cpu_per_request(report):
    rows = json.loads((report / "results.json").read_text())
    for row in rows:
        assert row["serving_cpu_s"] > 0 and row["serving_cpu_us_per_request"] > 0, row
        assert row["requests_per_serving_cpu_s"] > 0, row
    text = (report / "report.md").read_text()
    assert "## Requests per server CPU-second" in text
    assert "## Summary: median of 1 round(s), spread, ties" in text and "Run time: " in text
    assert "server CPU-µs/req" in text and "req/server CPU-s" in text
