"""`make compare` in short mode: the pipeline works end to end (not a benchmark).

Runs loadtest/compare.py for a few seconds per variant on each generator's path (Locust,
wrk swept over two connection counts, the open loop at a low fixed rate), pinned as the
standard run is, then checks the report folder: every file, a row per variant, scenario
and level with non-zero, failure-free numbers, and no container left behind. Nothing here
asserts on speed.
Two app processes per variant, so the WSGI variant's arithmetic (one container of N
workers, where Mongrel2 variants run N containers of one process) is exercised.
"""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
import subprocess
import sys

import pytest

from comparison.settings import split_cpus
from comparison.variants import VARIANTS as TABLE
from scenarios import SCENARIOS as SCENARIO_TABLE
from stack import COMPOSE, ROOT, hold_off_swarm_leave

# One of each kind the harness must handle: a Mongrel2 shape (N handler containers, and
# the dispatcher's extra service), a WSGI variant (one container of N workers) and a peer
# with its own app. The other variants differ from these only in compose files, which the
# e2e stacks cover.
VARIANTS = ["mongrel2-gevent-dispatch", "wsgi-gevent", "uvicorn-starlette"]
# One scenario per generator: the report's per-scenario shape is the same for each.
SCENARIOS = ["json", "wrk-plaintext", "open-json"]
# wrk swept (CONCURRENCY); the open loop on the connections its scenario fixes; Locust at USERS
LEVELS = {"wrk-plaintext": [4, 16], "open-json": [SCENARIO_TABLE["open-json"].users]}
USERS = 10
OPEN_RATE = 200                        # far below every variant's rate: all must be answered
DURATION = 2
PREFIX = "m2cmptest"
HANDLERS = 2
# The module's fixture runs the whole comparison: more than the e2e default per test.
pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def report(tmp_path_factory, docker_available):
    assert all(name in TABLE for name in VARIANTS)
    out = tmp_path_factory.mktemp("compare") / "report"
    env = dict(os.environ, VARIANTS=",".join(VARIANTS), SCENARIOS=",".join(SCENARIOS),
               DURATION=str(DURATION), WARMUP="1", USERS=str(USERS), SPAWN_RATE="10", HANDLERS=str(HANDLERS),
               ROUNDS="1", CONCURRENCY=",".join(map(str, LEVELS["wrk-plaintext"])), OPEN_RATE=str(OPEN_RATE),
               PIN="1", LOCUST_WORKERS="1", REPORT_DIR=str(out), COMPARE_PROJECT_PREFIX=PREFIX,
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
                 "throughput.png", "latency.png", "cpu.png", "sweep.png"):
        assert (report / name).stat().st_size > 0, name
    for chart in ("throughput.png", "latency.png", "cpu.png", "sweep.png"):
        assert (report / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for variant in VARIANTS:
        raw = report / "raw" / variant
        assert (raw / "json" / "locust_stats.csv").exists()
        assert (raw / "open-json" / "openloop.log").exists()
        for level in LEVELS["wrk-plaintext"]:
            assert (raw / "wrk-plaintext" / f"round1-c{level}" / "wrk.log").exists()


def test_a_failure_free_row_per_variant_and_scenario(report):
    rows = json.loads((report / "results.json").read_text())
    levels = {scenario: LEVELS.get(scenario, [USERS]) for scenario in SCENARIOS}
    assert len(rows) == len(VARIANTS) * sum(map(len, levels.values()))
    for variant in VARIANTS:
        for scenario in SCENARIOS:
            found = sorted(r["users"] for r in rows if r["variant"] == variant and r["scenario"] == scenario)
            assert found == levels[scenario], (variant, scenario, found)
    for row in rows:
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
        levels = LEVELS.get(scenario, [USERS])
        assert sorted(line.split("|")[1].strip() for line in table) == sorted(VARIANTS * len(levels))
        cells = [[cell.strip() for cell in line.split("|")] for line in table]
        for level in levels:   # "vs best" within each concurrency: one 1.00 at least
            assert [c for c in cells if c[3] == str(level) and c[5] == "1.00"], table


def test_the_open_loop_answers_every_request_it_was_due_to_send(report):
    """At OPEN_RATE for DURATION seconds the generator sends rate x seconds requests,
    whenever the server answers; far below every variant's rate, each is answered. Its
    latency counts from the due time, so it is never below the one from the send."""
    rows = [r for r in json.loads((report / "results.json").read_text()) if r["scenario"] == "open-json"]
    assert len(rows) == len(VARIANTS)
    for row in rows:
        loop = row["openloop"]
        assert loop["rate_asked"] == OPEN_RATE and loop["seconds"] == DURATION, loop
        assert loop["requests"] == OPEN_RATE * DURATION and loop["errors"] == 0, loop
        assert loop["p99_ms"] >= loop["p99_from_send_ms"] > 0, loop


def test_the_generator_was_pinned_apart_from_the_servers(report):
    """On this machine's CPUs halved: the generator's cpuset and the servers' are
    disjoint, and the report says so."""
    settings = json.loads((report / "settings.json").read_text())
    servers, generator = split_cpus(sorted(os.sched_getaffinity(0)))
    assert (settings["server_cpuset"], settings["generator_cpuset"]) == (servers, generator)
    assert servers and generator, "the e2e machine has at least 2 CPUs"
    assert f"pinned apart: every server container on CPU {servers}" in (report / "report.md").read_text()


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


def test_the_readmes_measured_figures_are_the_committed_reports():
    """Every "median (low–high)" the README's first screen states is a cell of the committed
    standard run's report: its claims are read off that run, not from memory."""
    readme = (ROOT / "README.md").read_text()
    measured = readme.split("**Measured**", 1)[1].split("![", 1)[0]
    figures = re.findall(r"\d[\d,]* \(\d[\d,]*–\d[\d,]*\)", measured)
    assert len(figures) >= 8, measured
    report = (ROOT / "docs" / "benchmarks" / "standard" / "report.md").read_text()
    summary = report.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert [f for f in figures if f"| {f} |" not in summary] == []


def test_the_readmes_ipc_saving_is_the_committed_knobs_runs():
    """README, "mongrel2 and its handlers on one machine only?": the saving it states is the
    median over docs/benchmarks/knobs/'s rounds of ipc://'s server CPU per request over
    TCP's in the same round."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    stated = int(re.search(r"loopback TCP: about (\d+) % less server CPU per request", readme).group(1))
    rows = json.loads((ROOT / "docs" / "benchmarks" / "knobs" / "results.json").read_text())
    cost = {(r["variant"], r["round"]): r["serving_cpu_us_per_request"] for r in rows}
    rounds = sorted({r["round"] for r in rows})
    assert len(rounds) >= 5, rounds
    ratio = statistics.median(cost["mongrel2-gevent-ipc", n] / cost["mongrel2-gevent", n] for n in rounds)
    assert stated == round(100 * (1 - ratio)), (stated, ratio)
