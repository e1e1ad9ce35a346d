"""What `make compare` runs, from the environment (every name is in loadtest/compare.py)."""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from scenarios import SCENARIOS, Scenario

from .variants import VARIANTS

ROOT = Path(__file__).resolve().parents[2]


def seconds(raw: str) -> int:
    """'30', '30s', '2m', '1m30s' -> seconds."""
    raw = raw.strip()
    if raw.isdigit():
        return int(raw)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", raw)
    if not raw or not parts:
        raise SystemExit(f"not a duration: {raw!r} (use 30, 30s, 2m, 1m30s)")
    h, m, s = (int(p or 0) for p in parts.groups())
    return h * 3600 + m * 60 + s


def names(raw: str, known: dict, default: list[str], what: str) -> list[str]:
    """A comma-separated selection of known names; empty selects the default."""
    chosen = [n.strip() for n in raw.split(",") if n.strip()] or default
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


@dataclass
class Settings:
    variants: list[str]
    scenarios: list[str]
    duration: int
    warmup: int
    users: int
    spawn_rate: int | None
    handlers: int
    locust_workers: int
    handler_cpus: str
    mongrel2_cpus: str
    db_cpus: str
    locust_cpus: str
    wrk_threads: int
    wrk_connections: int | None
    access_log: str
    report_dir: str
    users_per_scenario: dict[str, int] = field(default_factory=dict)
    # `make bench`'s per-step figures ({"hub", "step", "us"} rows) for the report; empty:
    # hotpath.json in the report folder, if there is one.
    hotpath_json: str = ""

    @classmethod
    def from_env(cls, env=os.environ) -> Settings:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")

        def get(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        settings = cls(
            variants=names(env.get("VARIANTS", ""), VARIANTS,
                           [n for n, v in VARIANTS.items() if v.in_compare], "variant"),
            scenarios=names(env.get("SCENARIOS", ""), SCENARIOS, list(SCENARIOS), "scenario"),
            duration=seconds(get("DURATION", "30")),
            warmup=seconds(get("WARMUP", "5")),
            users=int(get("USERS", "64")),
            spawn_rate=int(get("SPAWN_RATE", "0")) or None,
            handlers=int(get("HANDLERS", "1")),
            locust_workers=int(get("LOCUST_WORKERS", "1")),
            handler_cpus=get("HANDLER_CPUS", "1.0"),
            mongrel2_cpus=get("MONGREL2_CPUS", "1.0"),
            db_cpus=get("DB_CPUS", "1.0"),
            locust_cpus=get("LOCUST_CPUS", "1.0"),
            wrk_threads=int(get("WRK_THREADS", "2")),
            wrk_connections=int(get("WRK_CONNECTIONS", "0")) or None,
            access_log=get("ACCESS_LOG", "false"),
            report_dir=get("REPORT_DIR", str(ROOT / "reports" / stamp)),
            hotpath_json=get("HOTPATH_JSON", ""),
        )
        for name in settings.scenarios:
            override = env.get("USERS_" + name.upper().replace("-", "_"), "").strip()
            if override:
                settings.users_per_scenario[name] = int(override)
        if settings.duration < 1 or settings.users < 1 or settings.handlers < 1:
            raise SystemExit("DURATION, USERS and HANDLERS must be at least 1")
        return settings

    def users_for(self, scenario: Scenario) -> int:
        return self.users_per_scenario.get(scenario.name) or scenario.users or self.users
