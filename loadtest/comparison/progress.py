"""Progress lines on stdout: what is running, and about how long is left."""

from __future__ import annotations

import time

from scenarios import SCENARIOS

from .report import fmt
from .settings import Settings


class Progress:
    # Seconds, measured on the standard run here (2026-12-06): a stack up, healthy and down;
    # a generator run's own start and end (Locust's workers connect, wrk's container starts).
    VARIANT_OVERHEAD = 12
    RUN_OVERHEAD = {"locust": 12, "wrk": 1, "openloop": 1}

    def __init__(self, settings: Settings):
        self.settings = settings
        self.total_runs = settings.runs()
        self.runs_done = 0
        self.variants_done = 0   # variant stacks brought up and down, over every round
        self.round = 1
        self.started = time.monotonic()

    def elapsed(self) -> int:
        return round(time.monotonic() - self.started)

    def estimate(self) -> int:
        """Seconds the whole comparison takes: each run, a warm-up per scenario, each stack."""
        s = self.settings
        per_variant = 0
        for name in s.scenarios:
            scenario = SCENARIOS[name]
            overhead = self.RUN_OVERHEAD.get(scenario.generator, 12)
            per_variant += len(s.levels(scenario)) * (s.duration + overhead)
            per_variant += (s.warmup + overhead) if s.warmup else 0
        return s.rounds * len(s.variants) * (per_variant + self.VARIANT_OVERHEAD)

    def remaining(self) -> str:
        done = self.runs_done / self.total_runs if self.total_runs else 1.0
        left = max(0, round(self.estimate() * (1 - done)))
        return f"about {left // 60}m{left % 60:02d}s left"

    def line(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    def variant(self, name: str, index: int, text: str) -> None:
        self.line(f"round {self.round}/{self.settings.rounds}, {name} ({index}/{len(self.settings.variants)}): "
                  f"{text}; {self.remaining()}")

    def step(self, variant: str, scenario: str, text: str) -> None:
        index = self.settings.scenarios.index(scenario) + 1
        self.line(f"{variant} · {scenario} ({index}/{len(self.settings.scenarios)}): {text}; "
                  f"{self.remaining()}")

    def done(self, variant: str, scenario: str, row: dict) -> None:
        self.runs_done += 1
        self.line(f"{variant} · {scenario}: {row['rps']:.0f} req/s, p99 {fmt(row['p99_ms'])} ms, "
                  f"{row['failures']} failures, server {fmt(row['cpu_s_per_1k'], 3)} CPU-s/1k req, "
                  f"generator {row['generator_cores']:.2f} cores")

    def skip(self, variant: str, scenario: str, why: str) -> None:
        self.runs_done += 1
        self.line(f"{variant} · {scenario}: n/a ({why})")
