#!/usr/bin/env python3
"""`make compare`: every variant under the same load, one after another, and a report.

For each variant: bring the stack up as its own compose project (published on a free
loopback port), the same CPU and memory limits per service and the same number of handler
processes; then for each scenario: check that the variant has the endpoints (a 404 makes
the scenario "n/a" for that variant, not a crash), warm up, measure (Locust headless, or
wrk for the wrk-* scenarios) while sampling every container's CPU and memory from its
cgroup, and keep the raw files. The stack is torn down after the variant, also on Ctrl-C.

    VARIANTS=mongrel2-gevent,ceiling SCENARIOS=plaintext,json DURATION=10 make compare

Settings (environment): VARIANTS (names of comparison/variants.py; default: the standard
run's, FULL=1: every one marked in_compare), SCENARIOS (names of scenarios.py; default: the
standard run's, FULL=1: every workload), DURATION, WARMUP
(seconds), USERS, USERS_<SCENARIO> (e.g. USERS_SLEEP=5000), SPAWN_RATE, HANDLERS,
LOCUST_WORKERS, HANDLER_CPUS, MONGREL2_CPUS, DB_CPUS, LOCUST_CPUS, WRK_THREADS,
WRK_CONNECTIONS, ROUNDS (3: every variant once per round, the report gives the median and
the spread), CONCURRENCY (wrk connection counts to sweep, default 16,64,256,1024), FULL
(1: every in_compare variant on every workload, each GET by wrk; default: the standard
run; both in comparison/settings.py), PIN (1, the default: every server container on the lower half of
the CPUs, the generator alone on the upper half; 0: both anywhere), SERVER_CPUSET and
GENERATOR_CPUSET (the two halves chosen by hand, e.g. 0 and 1), ACCESS_LOG, REPORT_DIR,
COMPARE_PROJECT_PREFIX (compose projects are <prefix>-<variant>, default m2cmp), COMPOSE
(the compose command, default "docker compose"), HOTPATH_JSON (rows from
`make bench BENCH_OUT=file`: a per-step table per hub in the report).
Output: reports/<timestamp>/ (report.md, throughput.png, latency.png, cpu.png, results.json,
results.csv, settings.json, machine.json, hotpath.json, raw/). The parts are in comparison/.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # loadtest/: scenarios, comparison
from comparison.measure import run_scenario
from comparison.progress import Progress
from comparison.report import (
    error_note,
    machine_description,
    write_charts,
    write_report,
    write_results,
)
from comparison.settings import ROOT, Settings
from comparison.stack import Stack
from comparison.variants import VARIANTS
from scenarios import SCENARIOS

FAILURES = (RuntimeError, subprocess.SubprocessError, OSError)


def run_variant(stack: Stack, settings: Settings, out: Path, progress: Progress,
                rows: list[dict], round_number: int) -> bool:
    """Every scenario at every level on one variant, appended to rows; False when anything failed."""
    name, ok = stack.name, True
    try:
        stack.up()
        for scenario in settings.scenarios:
            levels = settings.levels(SCENARIOS[scenario])
            for users in levels:
                raw = out / "raw" / name / scenario
                if settings.rounds > 1 or len(levels) > 1:
                    raw = raw / f"round{round_number}-c{users}"
                try:
                    rows.append(run_scenario(stack, SCENARIOS[scenario], raw, progress, users, round_number,
                                             warm_up=users == levels[0]))
                except FAILURES as exc:
                    ok = False
                    progress.skip(name, scenario, f"error: {str(exc)[:500]}")
                    rows.append({"variant": name, "scenario": scenario, "users": users, "round": round_number,
                                 "status": "error", "note": error_note(exc)})
                write_results(out, rows)
    except FAILURES as exc:  # the stack itself: every run not yet made is an error
        progress.line(f"{name}: error: {exc}")
        done = {(r["scenario"], r.get("users")) for r in rows
                if r["variant"] == name and r.get("round") == round_number}
        for scenario in settings.scenarios:
            for users in settings.levels(SCENARIOS[scenario]):
                if (scenario, users) not in done:
                    progress.runs_done += 1
                    rows.append({"variant": name, "scenario": scenario, "users": users, "round": round_number,
                                 "status": "error", "note": error_note(exc)})
        (out / "raw" / name).mkdir(parents=True, exist_ok=True)
        (out / "raw" / name / "compose.log").write_text(stack.logs())
        return False
    finally:
        progress.line(f"{name}: tearing down")
        stack.down()
    return ok


def main() -> int:
    settings = Settings.from_env()
    out = Path(settings.report_dir)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    (out / "settings.json").write_text(json.dumps(asdict(settings), indent=2))
    (out / "machine.json").write_text(json.dumps(machine, indent=2))
    progress = Progress(settings)
    progress.line(f"compare: {len(settings.variants)} variant(s) x {len(settings.scenarios)} "
                  f"scenario(s) -> {out}")

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored

    rows: list[dict] = []
    interrupted = errors = False
    try:
        # Rounds outermost: each round runs every variant once, so drift on the machine
        # (heat, other load) spreads over every variant instead of landing on one.
        for round_number in range(1, settings.rounds + 1):
            progress.round = round_number
            for index, name in enumerate(settings.variants, 1):
                variant = VARIANTS[name]
                absent = [f for f in variant.files if not (ROOT / f).exists()]
                if absent:
                    why = f"variant not available here: {', '.join(absent)} missing"
                    for scenario in settings.scenarios:
                        progress.skip(name, scenario, why)
                        rows.append({"variant": name, "scenario": scenario, "round": round_number,
                                     "status": "n/a", "note": why})
                else:
                    progress.variant(name, index, f"starting ({variant.description}, "
                                                  f"{settings.handlers} handler process(es))")
                    errors |= not run_variant(Stack(variant, settings), settings, out, progress, rows,
                                              round_number)
                progress.variants_done += 1
    except KeyboardInterrupt:
        interrupted = True
        progress.line("interrupted: stacks removed, writing what was measured")
    finally:
        write_results(out, rows)
        charts = write_charts(out, rows, settings.scenarios)
        write_report(out, settings, machine, rows, charts, interrupted, progress.elapsed())
        progress.line(f"report: {out / 'report.md'}")
    return 130 if interrupted else 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
