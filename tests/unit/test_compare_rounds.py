"""The comparison's repeated runs: medians, spreads, ties, the generator flag, the levels."""

from __future__ import annotations

import pytest

from comparison.rounds import GENERATOR_BUSY_LIMIT, cells, headline, representative
from comparison.settings import FULL_SCENARIOS, Settings, cpu_count, split_cpus
from scenarios import SCENARIOS


def row(variant, rps, *, round_number=1, users=64, scenario="wrk-plaintext", p99=10.0, cores=0.3, limit=1.0,
        status="ok", failures=0):
    return {"variant": variant, "scenario": scenario, "users": users, "round": round_number, "status": status,
            "rps": rps, "p99_ms": p99, "serving_cpu_us_per_request": 1e6 / rps if rps else None,
            "generator_cores": cores, "generator_cpu_limit": limit, "failures": failures}


def by_variant(all_cells):
    return {c.variant: c for c in all_cells}


def test_median_and_spread_over_the_rounds():
    got = by_variant(cells([row("a", r, round_number=i, p99=p) for i, (r, p) in
                            enumerate([(100, 9), (130, 7), (90, 30)], 1)]))["a"]
    assert (got.rounds, got.rps, got.rps_min, got.rps_max) == (3, 100, 90, 130)
    assert (got.p99_ms, got.p99_min, got.p99_max) == (9, 7, 30)


def test_overlapping_ranges_are_ties_and_separate_ones_are_not():
    rows = [row("best", r) for r in (100, 110, 120)] + [row("close", r) for r in (95, 101, 105)] \
        + [row("behind", r) for r in (60, 70, 99)]
    got = by_variant(cells(rows))
    assert got["best"].verdict == "best"
    assert got["close"].verdict == "tie"      # its best round (105) reaches best's worst (100)
    assert got["behind"].verdict == ""        # 99 < 100: behind in every round


def test_verdicts_are_per_scenario_and_concurrency():
    rows = [row("a", 100, users=16), row("b", 50, users=16), row("a", 50, users=256), row("b", 100, users=256),
            row("b", 10, scenario="db")]
    verdicts = {(c.variant, c.scenario, c.concurrency): c.verdict for c in cells(rows)}
    assert verdicts == {("a", "wrk-plaintext", 16): "best", ("b", "wrk-plaintext", 16): "",
                        ("a", "wrk-plaintext", 256): "", ("b", "wrk-plaintext", 256): "best",
                        ("b", "db", 64): "best"}


def test_failed_and_missing_runs_are_not_counted():
    rows = [row("a", 100), row("a", 0, status="error"), {"variant": "a", "scenario": "x", "status": "n/a"}]
    assert [(c.variant, c.rounds) for c in cells(rows)] == [("a", 1)]


def test_the_generator_flag_takes_the_busiest_round():
    quiet, busy = row("a", 100, cores=0.2), row("a", 100, round_number=2, cores=1.5, limit=2.0)
    got = cells([quiet, busy])[0]
    assert got.generator_busy == pytest.approx(0.75) and got.generator_bound
    assert not cells([quiet])[0].generator_bound
    assert not cells([row("a", 100, cores=GENERATOR_BUSY_LIMIT)])[0].generator_bound


def test_headline_and_representative_pick_the_level_and_the_median_round():
    rows = [row("a", r, round_number=i, users=u) for u in (16, 64, 256) for i, r in enumerate((10, 30, 20), 1)]
    assert [c.concurrency for c in headline(cells(rows), 64)] == [64]
    assert [c.concurrency for c in headline(cells(rows), 1000)] == [256]
    chosen, = representative(rows, 64)
    assert (chosen["users"], chosen["rps"], chosen["round"]) == (64, 20, 3)


def test_levels_sweep_wrk_only_and_keep_fixed_concurrency():
    settings = Settings.from_env({"REPORT_DIR": "/tmp/x"})
    assert settings.rounds == 3 and settings.concurrency == [16, 64, 256, 1024]
    assert settings.levels(SCENARIOS["wrk-plaintext"]) == [16, 64, 256, 1024]
    assert settings.levels(SCENARIOS["wrk-json"]) == [64]       # the standard run sweeps plaintext only
    assert settings.levels(SCENARIOS["db"]) == [64]             # Locust: its users
    assert settings.levels(SCENARIOS["open-json"]) == [64]      # open loop: its connections
    every = Settings.from_env({"REPORT_DIR": "/tmp/x", "CONCURRENCY": "8,32"})
    assert every.levels(SCENARIOS["wrk-json"]) == [8, 32] and every.levels(SCENARIOS["wrk-db"]) == [8, 32]
    assert settings.levels(SCENARIOS["wrk-sleep"]) == [5000]    # fixed by the scenario
    one = Settings.from_env({"REPORT_DIR": "/tmp/x", "WRK_CONNECTIONS": "256", "ROUNDS": "1"})
    assert one.levels(SCENARIOS["wrk-json"]) == [256] and one.rounds == 1
    assert one.runs() == len(one.variants) * len(one.scenarios)
    full = Settings.from_env({"REPORT_DIR": "/tmp/x", "FULL": "1"})
    assert full.concurrency == [] and set(full.scenarios) == set(FULL_SCENARIOS) <= set(SCENARIOS)
    assert (full.duration, settings.duration) == (5, 5)
    # every workload in FULL: each GET by wrk, Locust only for scenarios with a POST
    def gets(names, generators):
        return {r.path for n in names if SCENARIOS[n].generator in generators
                for r in SCENARIOS[n].requests if r.method == "GET"}
    assert gets(SCENARIOS, {"locust", "wrk", "openloop"}) == gets(FULL_SCENARIOS, {"wrk"})
    assert all(any(r.method != "GET" for r in SCENARIOS[n].requests)
               for n in FULL_SCENARIOS if SCENARIOS[n].generator == "locust")
    with pytest.raises(SystemExit):
        Settings.from_env({"REPORT_DIR": "/tmp/x", "ROUNDS": "0"})


def test_the_generator_is_pinned_apart_from_the_servers():
    assert split_cpus([0, 1]) == ("0", "1")
    assert split_cpus([0, 1, 2, 3, 4, 5, 6, 7]) == ("0-3", "4-7")
    assert split_cpus([0, 2, 3]) == ("0", "2-3")
    assert split_cpus([0]) == ("", "")                  # one CPU: nothing to pin apart
    assert cpu_count("0-3,6") == 5 and cpu_count("") == 0
    pinned = Settings.from_env({"REPORT_DIR": "/tmp/x", "SERVER_CPUSET": "0", "GENERATOR_CPUSET": "1-2"})
    assert pinned.wrk_threads == 2                      # a thread per generator CPU
    assert pinned.generator_cpus(workers=4) == 2        # four 1-CPU workers on two CPUs
    assert pinned.generator_cpus(workers=1) == 1
    unpinned = Settings.from_env({"REPORT_DIR": "/tmp/x", "PIN": "0"})
    assert (unpinned.server_cpuset, unpinned.generator_cpuset) == ("", "")
    assert unpinned.generator_cpus(workers=3) == 3
    for bad in ({"PIN": "0", "SERVER_CPUSET": "0"}, {"SERVER_CPUSET": "0;1", "GENERATOR_CPUSET": "2"},
                {"SERVER_CPUSET": "0-2", "GENERATOR_CPUSET": "2-3"}):
        with pytest.raises(SystemExit):
            Settings.from_env({"REPORT_DIR": "/tmp/x", **bad})
