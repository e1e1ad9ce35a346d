"""One scenario on one variant's running stack: probe, warm up, measure, make the row.

A scenario whose endpoints the variant lacks (404, 405 or 501 where the scenario does
not expect it) is "n/a" for that variant, not an error.
"""

from __future__ import annotations

import time
from pathlib import Path

from scenarios import Scenario, probes

from .generators import GENERATORS
from .progress import Progress
from .rounds import GENERATOR_BUSY_LIMIT, generator_busy
from .sampler import Sampler
from .stack import GENERATOR_SERVICES, Stack, http

BACKING_SERVICES = ("db",)  # behind the server: its CPU is in cpu_s_per_1k, not in serving_cpu_s


SETTLE_LIMIT = 180.0  # seconds a server may take to work off the previous scenario's backlog


def settle(stack: Stack) -> float:
    """Wait until the server answers a cheap request again; the seconds it took. A server
    with a thread per request (the granian peer) queues what it cannot run: after the
    sleep scenario it can be minutes behind, and the next scenario would measure that."""
    began = time.monotonic()
    while time.monotonic() - began < SETTLE_LIMIT:
        status, _ = http(stack.url + "/plaintext", "GET", None, {}, timeout=5)
        if isinstance(status, int):
            break
        time.sleep(0.5)
    return time.monotonic() - began


def check_endpoints(stack: Stack, scenario: Scenario) -> str | None:
    """None when the variant serves every endpoint of the scenario, else why not."""
    settle(stack)
    for request in probes(scenario):
        body = request.body.encode() if request.body is not None else None
        status, _ = http(stack.url + request.path, request.method, body, request.headers, timeout=30)
        if status in (404, 405, 501) and status not in request.expect:
            return f"{request.method} {request.path.split('?')[0]} answered {status} on this variant"
        if not isinstance(status, int):
            return f"{request.method} {request.path.split('?')[0]} failed: {status}"
    return None


def run_scenario(stack: Stack, scenario: Scenario, raw_dir: Path, progress: Progress,
                 users: int | None = None, round_number: int = 1, warm_up: bool = True) -> dict:
    """One measured run; `users` is the concurrency (Locust users or wrk connections).
    warm_up=False: the level before, measured a moment ago on this stack, warmed it."""
    settings = stack.settings
    users = users or settings.users_for(scenario)
    row = {"variant": stack.name, "scenario": scenario.name, "generator": scenario.generator,
           "users": users, "round": round_number, "duration_s": settings.duration,
           "handlers": settings.handlers}
    missing = check_endpoints(stack, scenario)
    if missing:
        progress.skip(stack.name, scenario.name, missing)
        return {**row, "status": "n/a", "note": missing}
    generate = GENERATORS[scenario.generator]
    if settings.warmup and warm_up:
        progress.step(stack.name, scenario.name, f"warming up {settings.warmup}s")
        generate(stack, scenario, users, settings.warmup, raw_dir / "warmup")
    progress.step(stack.name, scenario.name, f"measuring {settings.duration}s, {users} "
                  f"{'connections' if scenario.generator == 'wrk' else 'users'}")
    started = time.monotonic()
    with Sampler(stack.project) as sampler:
        stats = generate(stack, scenario, users, settings.duration, raw_dir)
    wall = time.monotonic() - started
    row.update({k: v for k, v in stats.items() if k != "endpoints"})
    row.update({"status": "ok", "note": ""})
    row.update(_costs(stack, scenario, sampler, stats.get("requests") or 0))
    row.update({"wall_s": round(wall, 1), "sampling": sampler.source,
                "endpoints": stats.get("endpoints", [])})
    if row["failures"]:
        row["note"] = f"{row['failures']} failed requests"
    if stats.get("generator_cpu_warning"):
        row["note"] = (row["note"] + "; " if row["note"] else "") + (
            "the generator fell behind its rate" if scenario.generator == "openloop"
            else "Locust warned: generator CPU-bound")
    busy = generator_busy(row)
    if busy > GENERATOR_BUSY_LIMIT:
        row["note"] = (row["note"] + "; " if row["note"] else "") + \
            f"generator at {busy:.0%} of its CPU: it may be the limit"
    progress.done(stack.name, scenario.name, row)
    return row


def _costs(stack: Stack, scenario: Scenario, sampler: Sampler, requests: int) -> dict:
    """CPU and memory of the run: the servers', the app processes' alone, the generator's."""
    settings = stack.settings
    variant = stack.variant
    cpu = sampler.cpu_by_service()
    # The generator's work is in the workers (and the wrk container, a locust-worker run);
    # the master only coordinates, and its CPU stays in cpu_by_service_s.
    generator_cpu = cpu.get("locust-worker", 0.0)
    server_cpu = sum(v for k, v in cpu.items() if k not in GENERATOR_SERVICES)
    # The server side without the database: mongrel2 + handlers for us, the one server of
    # a WSGI variant or a peer. What one request costs to serve, whatever the architecture.
    serving_cpu = sum(v for k, v in cpu.items() if k not in GENERATOR_SERVICES and k not in BACKING_SERVICES)
    processes_per_container = 1 if variant.scaled else settings.handlers
    app_peaks = sampler.peak_memory_by_container(variant.app_service)
    generator_limit = settings.generator_cpus(settings.locust_workers if scenario.generator == "locust" else 1)
    return {
        "server_cpu_s": round(server_cpu, 3),
        "cpu_s_per_1k": round(server_cpu / requests * 1000, 4) if requests else None,
        # the app processes alone (no mongrel2, no database): the price of hub + app
        "handler_cpu_s_per_1k": round(cpu.get(variant.app_service, 0.0) / requests * 1000, 4)
        if requests else None,
        "serving_cpu_s": round(serving_cpu, 3),
        "serving_cpu_us_per_request": round(serving_cpu / requests * 1e6, 1) if requests else None,
        "requests_per_serving_cpu_s": round(requests / serving_cpu) if requests and serving_cpu else None,
        "cpu_by_service_s": {k: round(v, 3) for k, v in sorted(cpu.items())},
        "generator_cpu_s": round(generator_cpu, 3),
        # busy cores while measuring (the generator idles before and after its run)
        "generator_cores": round(generator_cpu / settings.duration, 3),
        "generator_cpu_limit": generator_limit,
        "peak_mib_per_handler_process": round(max(app_peaks) / 2 ** 20 / processes_per_container, 1)
        if app_peaks else None,
        "peak_mib_by_service": {
            service: round(max(sampler.peak_memory_by_container(service)) / 2 ** 20, 1)
            for service in sorted(set(sampler.service.values()))
            if sampler.peak_memory_by_container(service)},
    }
