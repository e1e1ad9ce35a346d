"""What a comparison leaves in its report folder: machine.json, results.json and
results.csv (a row per variant and scenario), throughput.png and latency.png, report.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path

from scenarios import SCENARIOS

from .sampler import read_text
from .settings import ROOT, Settings
from .stack import COMPOSE

CSV_COLUMNS = ["variant", "scenario", "status", "generator", "users", "handlers", "duration_s",
               "requests", "failures", "rps", "p50_ms", "p95_ms", "p99_ms", "avg_ms", "max_ms",
               "server_cpu_s", "cpu_s_per_1k", "peak_mib_per_handler_process", "handler_cpu_s_per_1k",
               "generator_cpu_s", "generator_cores", "generator_cpu_limit", "note"]


DASH = "\u2013"  # en dash: no value


def fmt(value, digits: int = 0) -> str:
    if value is None:
        return DASH
    return f"{value:,.{digits}f}"


def error_note(exc: BaseException) -> str:
    """The first line of an error and its last meaningful line (where the cause usually is)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return text.replace("|", "/")[:300]


def machine_description() -> dict:
    def run(*command: str) -> str:
        try:
            return subprocess.run(command, check=False, capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    cpuinfo = (read_text("/proc/cpuinfo") or "").splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                 platform.processor())
    meminfo = (read_text("/proc/meminfo") or "").splitlines()
    mem_kib = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")), 0)
    return {
        "started": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2 ** 20, 1),
        "kernel": platform.release(),
        "os": run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "docker": run("docker", "version", "--format", "{{.Server.Version}}"),
        "compose": run(*COMPOSE, "version", "--short"),
        "cgroup": run("docker", "info", "--format", "{{.CgroupDriver}} v{{.CgroupVersion}}"),
        "load_average_at_start": os.getloadavg(),
        "git_commit": run("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(run("git", "-C", str(ROOT), "status", "--porcelain")),
        "python": platform.python_version(),
    }


def write_results(out: Path, rows: list[dict]) -> None:
    (out / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_charts(out: Path, rows: list[dict], scenarios: list[str]) -> list[str]:
    """throughput.png and latency.png, a panel per measured scenario; none without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    measured = [s for s in scenarios if any(r["scenario"] == s and r["status"] == "ok" for r in rows)]
    if not measured:
        return []
    cols = min(3, len(measured))
    nrows = (len(measured) + cols - 1) // cols
    charts = []
    for kind, title in (("throughput", "Throughput per variant"),
                        ("latency", "Latency percentiles per variant")):
        fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 3.6 * nrows), squeeze=False)
        for ax, scenario in zip(axes.flat, measured, strict=False):
            ok = [r for r in rows if r["scenario"] == scenario and r["status"] == "ok"]
            (_throughput if kind == "throughput" else _latency)(ax, ok)
            ax.set_title(scenario)
        for ax in list(axes.flat)[len(measured):]:
            ax.set_visible(False)
        fig.suptitle(title)
        fig.tight_layout()
        name = f"{kind}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        charts.append(name)
    return charts


def _throughput(ax, ok: list[dict]) -> None:
    values = [r["rps"] for r in ok]
    bars = ax.barh([r["variant"] for r in ok], values, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3, fontsize=8)
    ax.invert_yaxis()  # the table's order, top down
    ax.set_xlabel("requests/s")
    ax.margins(x=0.2)


def _latency(ax, ok: list[dict]) -> None:
    width = 0.27
    for i, (key, color) in enumerate((("p50_ms", "tab:green"), ("p95_ms", "tab:orange"),
                                      ("p99_ms", "tab:red"))):
        ax.bar([x + (i - 1) * width for x in range(len(ok))],
               [r.get(key) or 0 for r in ok], width, label=key[:3], color=color)
    ax.set_xticks(range(len(ok)), [r["variant"] for r in ok], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("ms")
    ax.legend(fontsize=8)


def write_report(out: Path, settings: Settings, machine: dict, rows: list[dict],
                 charts: list[str], interrupted: bool) -> None:
    lines = [f"# Load-test comparison, {machine['started']}", ""]
    if interrupted:
        lines += ["**Interrupted: the tables hold only what finished.**", ""]
    lines += [
        (f"Same profile for every variant: {settings.duration} s measured after {settings.warmup} s "
         f"of warm-up; {settings.users} Locust users unless the scenario says otherwise, "
         f"{settings.locust_workers} Locust worker(s) at {settings.locust_cpus} CPU each; "
         f"{settings.handlers} handler process(es) at {settings.handler_cpus} CPU each, "
         f"mongrel2 at {settings.mongrel2_cpus} CPU, database at {settings.db_cpus} CPU; "
         f"access log {settings.access_log}."),
        (f"Machine: {machine['cpu_model']}, {machine['cpus']} CPUs, {machine['memory_gib']} GiB, "
         f"Docker {machine['docker']}, commit {machine['git_commit']}"
         f"{' (dirty)' if machine['git_dirty'] else ''}. The load generator runs on the same machine."),
        "",
        ("Columns: **vs best** is the variant's requests/s over the best in that table; "
         "**CPU-s/1k** is the CPU time of every server container (mongrel2, handlers, database) "
         "per 1,000 requests, **handler CPU-s/1k** the same for the app processes alone (the "
         "price of hub and app, without mongrel2 and the database); "
         "**MiB/proc** is the peak memory of one handler process; "
         "**gen. cores** is the CPU the load generator's workers used per second measured, next "
         "to their limit: near the limit, the generator and not the server was the bottleneck "
         "(it includes each worker's start, about 0.5 CPU-s, so short runs overstate it)."),
        "",
    ]
    for name in settings.scenarios:
        scenario_rows = [r for r in rows if r["scenario"] == name]
        if scenario_rows:
            lines += _scenario_table(name, scenario_rows)
    if charts:
        lines += ["## Charts", ""] + [f"![{c}]({c})" for c in charts] + [""]
    lines += ["## Settings", "", "```json", json.dumps(asdict(settings), indent=2), "```", "",
              "## Machine", "", "```json", json.dumps(machine, indent=2), "```", "",
              ("Raw data: `results.json`, `results.csv`, and per variant and scenario "
               "`raw/<variant>/<scenario>/` (Locust's CSV files and logs, or wrk's output)."), ""]
    (out / "report.md").write_text("\n".join(lines))


def _scenario_table(name: str, rows: list[dict]) -> list[str]:
    scenario = SCENARIOS[name]
    ok = [r for r in rows if r["status"] == "ok"]
    best = max((r["rps"] for r in ok), default=0) or None
    lines = [f"## {name}", "", scenario.description + f" ({scenario.generator}).", "",
             ("| variant | req/s | vs best | p50 ms | p95 ms | p99 ms | requests | failures "
              "| CPU-s/1k | handler CPU-s/1k | MiB/proc | gen. cores | notes |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['variant']} | {r['status']} | | | | | | | | | | | {r['note']} |")
            continue
        ratio = f"{r['rps'] / best:.2f}" if best else DASH
        lines.append(
            f"| {r['variant']} | {fmt(r['rps'])} | {ratio} | {fmt(r['p50_ms'])} "
            f"| {fmt(r['p95_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['requests'])} "
            f"| {fmt(r['failures'])} | {fmt(r['cpu_s_per_1k'], 3)} "
            f"| {fmt(r.get('handler_cpu_s_per_1k'), 3)} "
            f"| {fmt(r['peak_mib_per_handler_process'], 1)} "
            f"| {r['generator_cores']:.2f} / {r['generator_cpu_limit']:g} | {r['note']} |")
    lines.append("")
    return lines
