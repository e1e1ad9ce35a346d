"""What a comparison leaves in its report folder: machine.json, results.json and
results.csv (a row per variant and scenario), throughput.png, latency.png and cpu.png,
report.md; and hotpath.json when `make bench`'s figures are given (HOTPATH_JSON) or there.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

from scenarios import SCENARIOS

from .rounds import GENERATOR_BUSY_LIMIT, Cell, cells, representative
from .sampler import read_text
from .settings import ROOT, Settings
from .stack import COMPOSE
from .variants import VARIANTS

CSV_COLUMNS = ["variant", "scenario", "round", "status", "generator", "users", "handlers", "duration_s",
               "requests", "failures", "rps", "p50_ms", "p95_ms", "p99_ms", "avg_ms", "max_ms",
               "server_cpu_s", "cpu_s_per_1k", "peak_mib_per_handler_process", "handler_cpu_s_per_1k",
               "serving_cpu_s", "serving_cpu_us_per_request", "requests_per_serving_cpu_s",
               "generator_cpu_s", "generator_cores", "generator_cpu_limit", "note"]


DASH = "\u2013"  # en dash: no value
FLAG = " \u26a0"  # the generator may have been the limit


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


def write_charts(out: Path, rows: list[dict], scenarios: list[str], concurrency: int = 64) -> list[str]:
    """throughput.png, latency.png and cpu.png, a panel per measured scenario (the median
    round, at the concurrency nearest `concurrency`), and sweep.png when a scenario ran at
    several levels; none without matplotlib (cpu.png also none when no row has the server
    side's CPU)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    swept = _sweep_chart(out, plt, cells(rows), scenarios)
    rows = representative(rows, concurrency)
    measured = [s for s in scenarios if any(r["scenario"] == s and r["status"] == "ok" for r in rows)]
    if not measured:
        return []
    cols = min(3, len(measured))
    nrows = (len(measured) + cols - 1) // cols
    charts = []
    kinds = [("throughput", "Throughput per variant", _throughput),
             ("latency", "Latency percentiles per variant", _latency)]
    if any(r.get("serving_cpu_us_per_request") for r in rows if r["status"] == "ok"):
        kinds.append(("cpu", "Server CPU-\u00b5s per request (mongrel2 + handlers, or the one server; "
                             "no database)", _cpu))
    for kind, title, draw in kinds:
        fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 3.6 * nrows), squeeze=False)
        for ax, scenario in zip(axes.flat, measured, strict=False):
            ok = [r for r in rows if r["scenario"] == scenario and r["status"] == "ok"]
            draw(ax, ok)
            ax.set_title(scenario)
        for ax in list(axes.flat)[len(measured):]:
            ax.set_visible(False)
        fig.suptitle(title)
        fig.tight_layout()
        name = f"{kind}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        charts.append(name)
    return swept + charts


def _sweep_chart(out: Path, plt, all_cells: list[Cell], scenarios: list[str]) -> list[str]:
    """Throughput and p99 against concurrency, a line per variant, the rounds' spread as
    error bars; for the scenarios measured at more than one level."""
    swept = [s for s in scenarios if len({c.concurrency for c in all_cells if c.scenario == s}) > 1]
    if not swept:
        return []
    fig, axes = plt.subplots(len(swept), 2, figsize=(12, 4.2 * len(swept)), squeeze=False)
    for (rate_ax, p99_ax), scenario in zip(axes, swept, strict=True):
        for variant in dict.fromkeys(c.variant for c in all_cells if c.scenario == scenario):
            line = sorted((c for c in all_cells if c.scenario == scenario and c.variant == variant),
                          key=lambda c: c.concurrency)
            xs = [c.concurrency for c in line]
            rate_ax.errorbar(xs, [c.rps for c in line], yerr=[[c.rps - c.rps_min for c in line],
                                                              [c.rps_max - c.rps for c in line]],
                             marker="o", capsize=3, label=variant)
            p99 = [c for c in line if c.p99_ms is not None]
            p99_ax.errorbar([c.concurrency for c in p99], [c.p99_ms for c in p99],
                            yerr=[[c.p99_ms - c.p99_min for c in p99], [c.p99_max - c.p99_ms for c in p99]],
                            marker="o", capsize=3, label=variant)
        levels = sorted({c.concurrency for c in all_cells if c.scenario == scenario})
        for ax, label in ((rate_ax, "requests/s (median, min-max)"), (p99_ax, "p99 ms (median, min-max)")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(levels, [str(level) for level in levels])
            ax.minorticks_off()
            ax.set_xlabel("connections")
            ax.set_ylabel(label)
            ax.set_title(scenario)
            ax.grid(alpha=0.3)
        p99_ax.set_yscale("log")
        rate_ax.legend(fontsize=7)
    fig.suptitle("Concurrency sweep: every variant at every level, over the rounds")
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=110)
    plt.close(fig)
    return ["sweep.png"]


def _throughput(ax, ok: list[dict]) -> None:
    values = [r["rps"] for r in ok]
    bars = ax.barh([r["variant"] for r in ok], values, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3, fontsize=8)
    ax.invert_yaxis()  # the table's order, top down
    ax.set_xlabel("requests/s")
    ax.margins(x=0.2)


def _cpu(ax, ok: list[dict]) -> None:
    """Stacked: the app processes' share, then the rest of the server side (mongrel2)."""
    names, app_us, rest_us = [], [], []
    for r in ok:
        total = r.get("serving_cpu_us_per_request")
        if not total:
            continue
        variant = VARIANTS.get(r["variant"])
        app_cpu = (r.get("cpu_by_service_s") or {}).get(variant.app_service, 0.0) if variant else 0.0
        app = min(total, app_cpu / r["requests"] * 1e6) if r.get("requests") else total
        names.append(r["variant"])
        app_us.append(app)
        rest_us.append(total - app)
    ax.barh(names, app_us, color="tab:blue", label="app processes")
    bars = ax.barh(names, rest_us, left=app_us, color="tab:orange", label="mongrel2")
    ax.bar_label(bars, labels=[f"{a + b:,.0f}" for a, b in zip(app_us, rest_us, strict=True)],
                 padding=3, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("server CPU-\u00b5s per request")
    ax.margins(x=0.2)
    if any(rest_us):  # below the axis: the bars' own labels stay readable
        ax.legend(fontsize=7, ncol=2, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22))


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
                 charts: list[str], interrupted: bool, elapsed_s: int | None = None) -> None:
    lines = [f"# Load-test comparison, {machine['started']}", ""]
    if interrupted:
        lines += ["**Interrupted: the tables hold only what finished.**", ""]
    if elapsed_s is not None:
        lines += [(f"Run time: {elapsed_s // 60} min {elapsed_s % 60:02d} s for {settings.rounds} round(s) of "
                   f"{len(settings.variants)} variant(s) x {len(settings.scenarios)} scenario(s)"
                   + (f", wrk at {', '.join(map(str, settings.concurrency))} connections" if settings.concurrency
                      else "") + "."), ""]
    lines += [
        (f"Same profile for every variant: {settings.duration} s measured after {settings.warmup} s "
         f"of warm-up; {settings.users} Locust users unless the scenario says otherwise, "
         f"{settings.locust_workers} Locust worker(s) at {settings.locust_cpus} CPU each; "
         f"{settings.handlers} handler process(es) at {settings.handler_cpus} CPU each, "
         f"mongrel2 at {settings.mongrel2_cpus} CPU, database at {settings.db_cpus} CPU; "
         f"access log {settings.access_log}."),
        (f"Machine: {machine['cpu_model']}, {machine['cpus']} CPUs, {machine['memory_gib']} GiB, "
         f"Docker {machine['docker']}, commit {machine['git_commit']}"
         f"{' (dirty)' if machine['git_dirty'] else ''}. "
         + (f"The load generator runs on the same machine, pinned apart: every server container on "
            f"CPU {settings.server_cpuset} (shared by the variant's mongrel2, dispatcher, handlers and "
            f"database; the limits above cap each inside it), the generator alone on CPU "
            f"{settings.generator_cpuset}."
            if settings.server_cpuset else
            "The load generator runs on the same machine, unpinned (PIN=0): it and the servers share every CPU.")),
        "",
        ("Columns: **vs best** is the variant's requests/s over the best in that table; "
         "**CPU-s/1k** is the CPU time of every server container (mongrel2, handlers, database) "
         "per 1,000 requests, **handler CPU-s/1k** the same for the app processes alone (the "
         "price of hub and app, without mongrel2 and the database); "
         "**server CPU-\u00b5s/req** is the CPU time of the whole server side per request "
         "(mongrel2 + handlers for the Mongrel2 variants, the one server process tree for the "
         "others; no database, no generator), and **req/server CPU-s** its inverse, the "
         "requests one CPU-second of the server side serves; "
         "**MiB/proc** is the peak memory of one handler process; "
         "**gen. cores** is the CPU the load generator's workers used per second measured, next "
         "to their limit: near the limit, the generator and not the server was the bottleneck "
         "(it includes each worker's start, about 0.5 CPU-s, so short runs overstate it)."),
        "",
    ]
    lines += _summary_tables(settings, cells(rows))
    for name in settings.scenarios:
        scenario_rows = [r for r in rows if r["scenario"] == name]
        if scenario_rows:
            lines += _scenario_table(name, scenario_rows)
    lines += _efficiency_table(settings.scenarios, representative(rows, settings.users))
    lines += _price_split_table(settings.scenarios, representative(rows, settings.users))
    lines += _hotpath_section(out, settings)
    if charts:
        lines += ["## Charts", ""] + [f"![{c}]({c})" for c in charts] + [""]
    lines += ["## Settings", "", "```json", json.dumps(asdict(settings), indent=2), "```", "",
              "## Machine", "", "```json", json.dumps(machine, indent=2), "```", "",
              ("Raw data: `results.json`, `results.csv`, and per variant and scenario "
               "`raw/<variant>/<scenario>/` (Locust's CSV files and logs, or wrk's output)."), ""]
    (out / "report.md").write_text("\n".join(lines))


def _summary_tables(settings: Settings, all_cells: list[Cell]) -> list[str]:
    """Per scenario and concurrency: the median of the rounds and their spread, the verdict
    against the best (a tie when the ranges overlap), and the generator flag."""
    if not all_cells:
        return []
    lines = [f"## Summary: median of {settings.rounds} round(s), spread, ties", "",
             ("Each cell is the median over the rounds (each round runs every variant once, one "
              "after another), with the lowest and highest round in brackets. **vs best** is the "
              "median over the best median of the column; **verdict**: *best*, *tie* when the "
              "cell's best round reaches the best cell's worst round (the difference is within "
              "the noise of this run), else behind. **gen.** is the highest share of its CPU "
              f"limit the load generator used in any round: above {GENERATOR_BUSY_LIMIT:.0%} "
              "(flagged \u26a0) the generator may have set the rate, not the server."), ""]
    for scenario in dict.fromkeys(c.scenario for c in all_cells):
        for concurrency in sorted({c.concurrency for c in all_cells if c.scenario == scenario}):
            column = [c for c in all_cells if c.scenario == scenario and c.concurrency == concurrency]
            best = max(c.rps for c in column)
            generator = SCENARIOS[scenario].generator
            unit = "users" if generator == "locust" else "connections"
            fixed_rate = generator == "openloop"  # every variant asked the same rate: the p99 decides
            lines += [f"**{scenario}, {concurrency} {unit}**"
                      + (" (a fixed rate: sorted by p99; req/s shows the rate was held)" if fixed_rate else ""), "",
                      ("| variant | req/s | vs best | verdict | p99 ms | server CPU-\u00b5s/req | gen. "
                       "| failures | rounds |"),
                      "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
            for c in sorted(column, key=lambda c: (c.p99_ms or 0) if fixed_rate else -c.rps):
                p99 = (f"{fmt(c.p99_ms)} ({fmt(c.p99_min)}{DASH}{fmt(c.p99_max)})" if c.p99_ms is not None
                       else DASH)
                lines.append(
                    f"| {c.variant} | {fmt(c.rps)} ({fmt(c.rps_min)}{DASH}{fmt(c.rps_max)}) "
                    f"| {c.rps / best:.2f} | {DASH if fixed_rate else c.verdict} | {p99} | {fmt(c.serving_us)} "
                    f"| {c.generator_busy:.0%}{FLAG if c.generator_bound else ''} | {c.failures} | {c.rounds} |")
            lines.append("")
    return lines


def _scenario_table(name: str, rows: list[dict]) -> list[str]:
    scenario = SCENARIOS[name]
    ok = [r for r in rows if r["status"] == "ok"]
    best: dict[tuple, float] = {}   # per round and concurrency: the runs measured side by side
    for r in ok:
        key = (r.get("round"), r.get("users"))
        best[key] = max(best.get(key, 0.0), r["rps"])
    lines = [f"## {name}", "", scenario.description + f" ({scenario.generator}); every run, "
             "**vs best** within its round and concurrency.", "",
             ("| variant | round | conc. | req/s | vs best | p50 ms | p95 ms | p99 ms | requests | failures "
              "| CPU-s/1k | handler CPU-s/1k | server CPU-\u00b5s/req | req/server CPU-s "
              "| MiB/proc | gen. cores | notes |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['variant']} | {r.get('round', '')} | {r.get('users', '')} | {r['status']} "
                         f"| | | | | | | | | | | | | {r['note']} |")
            continue
        top = best.get((r.get("round"), r.get("users")))
        ratio = f"{r['rps'] / top:.2f}" if top else DASH
        lines.append(
            f"| {r['variant']} | {r.get('round', 1)} | {r.get('users')} | {fmt(r['rps'])} | {ratio} "
            f"| {fmt(r['p50_ms'])} "
            f"| {fmt(r['p95_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['requests'])} "
            f"| {fmt(r['failures'])} | {fmt(r['cpu_s_per_1k'], 3)} "
            f"| {fmt(r.get('handler_cpu_s_per_1k'), 3)} "
            f"| {fmt(r.get('serving_cpu_us_per_request'))} | {fmt(r.get('requests_per_serving_cpu_s'))} "
            f"| {fmt(r['peak_mib_per_handler_process'], 1)} "
            f"| {r['generator_cores']:.2f} / {r['generator_cpu_limit']:g} | {r['note']} |")
    lines.append("")
    return lines


def _efficiency_table(scenarios: list[str], rows: list[dict]) -> list[str]:
    """Requests per server CPU-second, a variant per row and a scenario per column."""
    measured = [s for s in scenarios if any(r["scenario"] == s and r.get("requests_per_serving_cpu_s")
                                            for r in rows)]
    if not measured:
        return []
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    value = {(r["variant"], r["scenario"]): r.get("requests_per_serving_cpu_s")
             for r in rows if r["status"] == "ok"}
    lines = ["## Requests per server CPU-second", "",
             ("What one CPU-second of the server side serves (mongrel2 + handlers, or the one "
              "server; no database): the throughput per CPU, whatever the CPU limits let through. "
              "In brackets: over the best of the column."), "",
             "| variant | " + " | ".join(measured) + " |",
             "|---|" + "---:|" * len(measured)]
    best = {s: max((value.get((v, s)) or 0 for v in variants), default=0) for s in measured}
    for variant in variants:
        cells = []
        for scenario in measured:
            number = value.get((variant, scenario))
            cells.append(f"{fmt(number)} ({number / best[scenario]:.2f})" if number and best[scenario]
                         else DASH)
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines + [""]


def _price_split_table(scenarios: list[str], rows: list[dict]) -> list[str]:
    """Where a request's server CPU goes: CPU-µs per request of each service of the stack
    (the median round at the headline concurrency). For the Mongrel2 variants the front's
    price (mongrel2, and the dispatcher in its shape) sits beside the app's: what bounds
    the shape, measured in the same run rather than against a separate ceiling."""
    measured = [r for r in rows if r.get("requests") and r.get("cpu_by_service_s")]
    if not measured:
        return []
    services = ["mongrel2", "dispatcher", "app", "db"]
    lines = ["## Where the server CPU goes", "",
             ("CPU-\u00b5s per request of each part of the stack, from its containers' cgroups (the "
              "median round at the headline concurrency): **front** is mongrel2, **dispatcher** the "
              "dispatcher (its shape only), **app** the app processes (handlers, or the one server of "
              "a WSGI variant or peer), **db** PostgreSQL. A Mongrel2 variant cannot serve more "
              "requests per core than 1e6 over front + dispatcher + app; the front's share is the "
              "price of the door."), "",
             "| scenario | variant | front | dispatcher | app | db | total |", "|---|---|---:|---:|---:|---:|---:|"]
    for scenario in scenarios:
        for r in (r for r in measured if r["scenario"] == scenario):
            variant = VARIANTS.get(r["variant"])
            cpu = dict(r["cpu_by_service_s"])
            parts = {"mongrel2": cpu.pop("mongrel2", 0.0), "dispatcher": cpu.pop("dispatcher", 0.0),
                     "app": cpu.pop(variant.app_service, 0.0) if variant else 0.0, "db": cpu.pop("db", 0.0)}
            us = {k: v / r["requests"] * 1e6 for k, v in parts.items()}
            cells_us = " | ".join(fmt(us[k]) if us[k] else DASH for k in services)
            lines.append(f"| {scenario} | {r['variant']} | {cells_us} | {fmt(sum(us.values()))} |")
    return lines + [""]


def load_hotpath(out: Path, settings: Settings) -> list[dict]:
    """`make bench`'s rows, from HOTPATH_JSON (copied into the report folder) or the folder's
    own hotpath.json; [] when there are none or they cannot be read."""
    target = out / "hotpath.json"
    source = Path(settings.hotpath_json) if settings.hotpath_json else target
    try:
        rows = json.loads(source.read_text())
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
    except (OSError, ValueError):
        return []
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, dict) and {"hub", "step", "us"} <= r.keys()]


def _hotpath_section(out: Path, settings: Settings) -> list[str]:
    """The cost of each step of one request, a column per hub (whatever steps the bench has)."""
    rows = load_hotpath(out, settings)
    if not rows:
        return []
    hubs = list(dict.fromkeys(str(r["hub"]) for r in rows))
    steps = list(dict.fromkeys(str(r["step"]) for r in rows))
    by_key = {(str(r["hub"]), str(r["step"])): r for r in rows}
    lines = ["## Hot path per hub (make bench)", "",
             ("\u00b5s per request for each step of one request, measured in process by "
              "`make bench` (no sockets, no load): where each hub's CPU per request goes. "
              "The median round, and in brackets the spread of the rounds where the bench "
              "gives it. From `hotpath.json`."), "",
             "| step | " + " | ".join(hubs) + " |",
             "|---|" + "---:|" * len(hubs)]
    for step in steps:
        cells = []
        for hub in hubs:
            row = by_key.get((hub, step), {})
            cells.append(_us(row.get("us")) + (f" ({_us(row['min'])}{DASH}{_us(row['max'])})"
                                               if _number(row.get("min")) and _number(row.get("max")) else ""))
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines + [""]


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _us(value) -> str:
    return fmt(value, 1 if abs(value) < 100 else 0) if _number(value) else DASH
