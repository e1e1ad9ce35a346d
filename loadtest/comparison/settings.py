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

# The standard run (`make compare`): the scenarios and variants the README's claims rest
# on, every concurrency level, every round, in about half an hour here. FULL=1: every
# variant marked in_compare on every workload, each measured by a generator that is not
# its limit: wrk for every GET, the open loop, Locust only where wrk cannot check the
# answers (the validation POSTs' 4xx, the mix). The Locust versions of the GET workloads
# stay available by name; one Locust worker on the generator's core is the limit there
# before most servers are (their cells say so), and they would triple the run.
STANDARD_SCENARIOS = ["wrk-plaintext", "wrk-json", "open-json", "wrk-db"]
FULL_SCENARIOS = ["wrk-plaintext", "wrk-json", "wrk-db", "wrk-queries", "wrk-fortunes", "wrk-updates",
                  "wrk-fanout", "open-json", "wrk-sleep", "validation", "mixed"]
STANDARD_VARIANTS = ["mongrel2-gevent", "mongrel2-eventlet", "mongrel2-gevent-dispatch", "wsgi-gevent",
                     "wsgi-granian", "uvicorn-starlette", "granian-starlette"]
STANDARD_CONCURRENCY = [16, 64, 256, 1024]
STANDARD_SWEPT = ["wrk-plaintext"]   # the other wrk scenarios at USERS (64) connections
STANDARD_DURATION, STANDARD_WARMUP = "5", "2"  # seconds, FULL's too (DURATION=15 for close calls)


def cpu_list(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (Docker's --cpuset-cpus syntax)."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][-1] + 1:
            runs[-1].append(cpu)
        else:
            runs.append([cpu])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def cpu_set(cpuset: str) -> set[int]:
    """'0-2,5' -> {0, 1, 2, 5}; '' -> set()."""
    cpus: set[int] = set()
    for part in filter(None, cpuset.split(",")):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def cpu_count(cpuset: str) -> int:
    """'0-2,5' -> 4; '' -> 0."""
    return len(cpu_set(cpuset))


def split_cpus(cpus: list[int]) -> tuple[str, str]:
    """The servers' cpuset and the generator's: the machine cut in two, the generator on the
    upper half (TechEmpower's two identical machines, on one); ('', '') below 2 CPUs."""
    if len(cpus) < 2:
        return "", ""
    half = len(cpus) // 2
    return cpu_list(cpus[:half]), cpu_list(cpus[half:])


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
    rounds: int = 1
    # wrk scenarios run at each of these connection counts (empty: WRK_CONNECTIONS, or the
    # scenario's users); Locust scenarios keep their users (one Locust worker cannot drive
    # 1,024 users here without being the limit).
    concurrency: list[int] = field(default_factory=list)
    swept: list[str] | None = None   # scenarios the sweep applies to (None: every wrk scenario)
    full: bool = False
    users_per_scenario: dict[str, int] = field(default_factory=dict)
    # `make bench`'s per-step figures ({"hub", "step", "us"} rows) for the report; empty:
    # hotpath.json in the report folder, if there is one.
    hotpath_json: str = ""
    # Docker cpusets: every server container on the one, the generator on the other, so the
    # generator never takes a server's CPU time (and the reverse); "" for both: unpinned.
    server_cpuset: str = ""
    generator_cpuset: str = ""

    @classmethod
    def from_env(cls, env=os.environ) -> Settings:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")

        def get(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        full = get("FULL", "0") not in ("0", "false", "no")
        sweep = full or env.get("WRK_CONNECTIONS", "").strip()  # one level asked for: no sweep
        concurrency = get("CONCURRENCY", "" if sweep else ",".join(map(str, STANDARD_CONCURRENCY)))
        server_cpuset, generator_cpuset = ("", "") if get("PIN", "1") in ("0", "false", "no") else \
            split_cpus(sorted(os.sched_getaffinity(0)))
        server_cpuset = get("SERVER_CPUSET", server_cpuset)
        generator_cpuset = get("GENERATOR_CPUSET", generator_cpuset)
        settings = cls(
            variants=names(env.get("VARIANTS", ""), VARIANTS,
                           [n for n, v in VARIANTS.items() if v.in_compare] if full else STANDARD_VARIANTS,
                           "variant"),
            scenarios=names(env.get("SCENARIOS", ""), SCENARIOS, FULL_SCENARIOS if full else STANDARD_SCENARIOS,
                            "scenario"),
            duration=seconds(get("DURATION", STANDARD_DURATION)),
            warmup=seconds(get("WARMUP", STANDARD_WARMUP)),
            users=int(get("USERS", "64")),
            spawn_rate=int(get("SPAWN_RATE", "0")) or None,
            handlers=int(get("HANDLERS", "1")),
            locust_workers=int(get("LOCUST_WORKERS", "1")),
            handler_cpus=get("HANDLER_CPUS", "1.0"),
            mongrel2_cpus=get("MONGREL2_CPUS", "1.0"),
            db_cpus=get("DB_CPUS", "1.0"),
            locust_cpus=get("LOCUST_CPUS", "1.0"),
            # a wrk thread per generator CPU: more only take turns on them
            wrk_threads=int(get("WRK_THREADS", str(cpu_count(generator_cpuset) or 2))),
            wrk_connections=int(get("WRK_CONNECTIONS", "0")) or None,
            access_log=get("ACCESS_LOG", "false"),
            report_dir=get("REPORT_DIR", str(ROOT / "reports" / stamp)),
            hotpath_json=get("HOTPATH_JSON", ""),
            rounds=int(get("ROUNDS", "3")),
            concurrency=[int(c) for c in concurrency.replace(" ", "").split(",") if c],
            full=full,
            swept=None if full or env.get("CONCURRENCY", "").strip() else STANDARD_SWEPT,
            server_cpuset=server_cpuset,
            generator_cpuset=generator_cpuset,
        )
        for name in settings.scenarios:
            override = env.get("USERS_" + name.upper().replace("-", "_"), "").strip()
            if override:
                settings.users_per_scenario[name] = int(override)
        if settings.duration < 1 or settings.users < 1 or settings.handlers < 1 or settings.rounds < 1:
            raise SystemExit("DURATION, USERS, HANDLERS and ROUNDS must be at least 1")
        if any(c < 1 for c in settings.concurrency):
            raise SystemExit("CONCURRENCY: connection counts of at least 1, comma-separated")
        for name, cpuset in (("SERVER_CPUSET", server_cpuset), ("GENERATOR_CPUSET", generator_cpuset)):
            if not re.fullmatch(r"(\d+(-\d+)?(,\d+(-\d+)?)*)?", cpuset):
                raise SystemExit(f"{name}: a cpuset like 0 or 0-1,3 (got {cpuset!r})")
        if bool(server_cpuset) != bool(generator_cpuset):
            raise SystemExit("SERVER_CPUSET and GENERATOR_CPUSET: both, or neither (PIN=0)")
        if cpu_set(server_cpuset) & cpu_set(generator_cpuset):
            raise SystemExit(f"SERVER_CPUSET {server_cpuset} and GENERATOR_CPUSET {generator_cpuset} "
                             "share CPUs: pinned apart means disjoint")
        return settings

    def generator_cpus(self, workers: int) -> float:
        """The CPU the generator may use: its containers' limits, or its cpuset if smaller."""
        limit = float(self.locust_cpus) * workers
        pinned = cpu_count(self.generator_cpuset)
        return min(limit, pinned) if pinned else limit

    def users_for(self, scenario: Scenario) -> int:
        return self.users_per_scenario.get(scenario.name) or scenario.users or self.users

    def levels(self, scenario: Scenario) -> list[int]:
        """The concurrency levels a scenario runs at: users (Locust, open loop) or connections
        (wrk). A scenario that fixes its own (wrk-sleep's 5,000) or a USERS_<NAME> keeps it;
        a wrk scenario is swept over CONCURRENCY when the sweep applies to it."""
        fixed = scenario.users or self.users_per_scenario.get(scenario.name)
        if scenario.generator != "wrk" or fixed:
            return [self.users_for(scenario)]
        one = self.wrk_connections or self.users
        if self.swept is not None and scenario.name not in self.swept:
            return [one]
        return self.concurrency or [one]

    def runs(self) -> int:
        """Generator runs in the whole comparison (for the progress estimate)."""
        return self.rounds * len(self.variants) * sum(len(self.levels(SCENARIOS[s])) for s in self.scenarios)
