"""Progress lines on stdout: what is running, and about how long is left."""

from __future__ import annotations

import time

from .report import fmt
from .settings import Settings


class Progress:
    VARIANT_OVERHEAD = 40   # seconds: up, health, down
    RUN_OVERHEAD = 12       # seconds per generator run: containers start, workers connect

    def __init__(self, settings: Settings):
        self.settings = settings
        self.total_runs = settings.runs()
        self.runs_done = 0
        self.variants_done = 0   # variant stacks brought up and down, over every round
        self.round = 1
        self.started = time.monotonic()

    def elapsed(self) -> int:
        return round(time.monotonic() - self.started)

    def remaining(self) -> str:
        s = self.settings
        per_run = s.duration + self.RUN_OVERHEAD + (s.warmup + self.RUN_OVERHEAD if s.warmup else 0)
        left = (self.total_runs - self.runs_done) * per_run \
            + (len(s.variants) * s.rounds - self.variants_done) * self.VARIANT_OVERHEAD
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
