"""The load generators: one run of Locust (headless, master + workers) or of wrk.

Both run in the Locust image (compose/loadtest.yml) on the stack's network, and both
return the same numbers: requests, failures, rps, avg/p50/p95/p99/max ms.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

from scenarios import OPEN_RATE, Scenario

from .stack import GENERATOR_SERVICES, Stack


def run_locust(stack: Stack, scenario: Scenario, users: int, duration: int, dest: Path) -> dict:
    settings = stack.settings
    workers = settings.locust_workers
    spawn = settings.spawn_rate or users
    args = (f"--headless -u {users} -r {spawn} -t {duration}s --csv /out/locust "
            f"--expect-workers {workers} --expect-workers-max-wait 60 --only-summary")
    env = {"SCENARIO": scenario.name, "LOCUST_MASTER_ARGS": args}
    stack.compose("up", "-d", "--no-deps", "--force-recreate", "--scale", f"locust-worker={workers}",
                  *GENERATOR_SERVICES, env=env, timeout=300)
    master, = stack.ids("locust-master")
    worker_ids = stack.ids("locust-worker")
    limit = duration + 180 + users / spawn
    try:
        code = subprocess.run(["docker", "wait", master], check=False, capture_output=True,
                              text=True, timeout=limit).stdout.strip()
    except subprocess.TimeoutExpired:
        code = "timeout"
        subprocess.run(["docker", "kill", master], check=False, capture_output=True)
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["docker", "cp", f"{master}:/out/.", str(dest)], check=False, capture_output=True)
    logs = ""
    for cid in [master, *worker_ids]:
        part = subprocess.run(["docker", "logs", cid], check=False, capture_output=True, text=True)
        logs += f"==== {cid[:12]}\n{part.stdout}{part.stderr}"
    (dest / "locust.log").write_text(logs)
    stats = parse_locust_csv(dest / "locust_stats.csv")
    stats["exit_code"] = code
    stats["generator_cpu_warning"] = "CPU usage" in logs or "cpu threshold" in logs.lower()
    if not stats.get("requests") and code != "0":
        raise RuntimeError(f"locust exited {code} with no results; see {dest / 'locust.log'}:\n"
                           + logs[-2000:])
    return stats


def parse_locust_csv(path: Path) -> dict:
    """The Aggregated row's numbers, and every endpoint's under "endpoints"."""
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    endpoints, total = [], {}
    for row in rows:
        item = {
            "name": row["Name"], "method": row["Type"],
            "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
            "rps": float(row["Requests/s"]), "avg_ms": float(row["Average Response Time"]),
            "p50_ms": _number(row.get("50%")), "p95_ms": _number(row.get("95%")),
            "p99_ms": _number(row.get("99%")), "max_ms": _number(row.get("Max Response Time")),
        }
        if row["Name"] == "Aggregated":
            total = item
        else:
            endpoints.append(item)
    return {**{k: v for k, v in total.items() if k not in ("name", "method")},
            "endpoints": endpoints}


def _number(raw: str | None) -> float | None:
    try:
        return float(raw) if raw not in (None, "", "N/A") else None
    except ValueError:
        return None


def _one_off(stack: Stack, entrypoint: str, args: list[str], duration: int, dest: Path,
             name: str, marker: str) -> tuple[dict, str]:
    """A generator run as a one-off container of the Locust image on the stack's network:
    its output kept in dest/<name>.log, the JSON of its `<marker> {...}` line returned,
    with its exit code."""
    command = ["run", "--rm", "--no-deps", "-T", "--entrypoint", entrypoint, "locust-worker", *args]
    result = stack.compose(*command, check=False, timeout=duration + 120)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{name}.log").write_text(result.stdout + result.stderr)
    prefix = marker + " "
    line = next((line for line in result.stdout.splitlines() if line.startswith(prefix)), None)
    if line is None:
        raise RuntimeError(f"{name} printed no summary ({result.returncode}):\n"
                           f"{(result.stdout + result.stderr)[-2000:]}")
    return json.loads(line[len(prefix):]), str(result.returncode)


def run_wrk(stack: Stack, scenario: Scenario, users: int, duration: int, dest: Path) -> dict:
    """wrk on the scenario's first request, `users` connections; wrk_report.lua prints a
    WRK_JSON summary line."""
    threads = max(1, min(stack.settings.wrk_threads, users))
    raw, code = _one_off(stack, "wrk", ["-t", str(threads), "-c", str(users), "-d", f"{duration}s",
                                        "--timeout", "10s", "-s", "/app/loadtest/wrk_report.lua",
                                        stack.variant.target + scenario.requests[0].path],
                         duration, dest, "wrk", "WRK_JSON")
    failures = sum(raw[k] for k in ("errors_connect", "errors_read", "errors_write",
                                    "errors_status", "errors_timeout"))
    return {"requests": raw["requests"], "failures": failures,
            "rps": raw["requests"] / raw["duration_s"] if raw["duration_s"] else 0.0,
            "avg_ms": raw["avg_ms"], "p50_ms": raw["p50_ms"], "p95_ms": raw["p95_ms"],
            "p99_ms": raw["p99_ms"], "max_ms": raw["max_ms"], "wrk": raw, "endpoints": [],
            "exit_code": code, "generator_cpu_warning": False}


def run_openloop(stack: Stack, scenario: Scenario, users: int, duration: int, dest: Path) -> dict:
    """loadtest/openloop.py at OPEN_RATE requests/s on at most `users` connections."""
    url = stack.variant.target + scenario.requests[0].path
    args = ["/app/loadtest/openloop.py", url, str(OPEN_RATE), str(duration), str(users)]
    raw, code = _one_off(stack, "python3", args, duration, dest, "openloop", "OPENLOOP_JSON")
    # The generator held the rate, or it (not the server) set the pace: said in the row.
    behind = (raw["rate_sent"] or 0) < 0.98 * raw["rate_asked"] or (raw["generator_lag_p99_ms"] or 0) > 5
    return {"requests": raw["requests"], "failures": raw["errors"], "rps": raw["rate_answered"],
            "avg_ms": raw["avg_ms"], "p50_ms": raw["p50_ms"], "p95_ms": raw["p95_ms"],
            "p99_ms": raw["p99_ms"], "max_ms": raw["p100_ms"], "openloop": raw, "endpoints": [],
            "exit_code": code, "generator_cpu_warning": behind}


GENERATORS = {"locust": run_locust, "wrk": run_wrk, "openloop": run_openloop}
