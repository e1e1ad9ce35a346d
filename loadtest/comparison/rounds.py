"""Repeated runs summed up: one cell per variant, scenario and concurrency, with the median
and the spread over the rounds, the verdict against the best of its column (best, tie or
behind) and whether the load generator may have been the limit. Pure: rows in, cells out.

A difference is only claimed when the ranges do not overlap: a cell whose best round
reaches the best cell's worst round is a tie (pyperf's habit: report the spread, and do
not call noise a difference).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

# Above this share of its CPU limit the generator, not the server, may set the rate.
GENERATOR_BUSY_LIMIT = 0.7


@dataclass(frozen=True)
class Cell:
    variant: str
    scenario: str
    concurrency: int
    rounds: int                # how many measured rounds the cell has
    rps: float                 # median over the rounds
    rps_min: float
    rps_max: float
    p99_ms: float | None       # median of the rounds' p99
    p99_min: float | None
    p99_max: float | None
    serving_us: float | None   # median server CPU-µs per request
    generator_busy: float      # the highest share of its CPU limit the generator used
    failures: int              # over every round
    verdict: str = ""          # "best", "tie" (within the best's spread) or "" (behind)

    @property
    def generator_bound(self) -> bool:
        return self.generator_busy > GENERATOR_BUSY_LIMIT


def generator_busy(row: dict) -> float:
    limit = row.get("generator_cpu_limit") or 0
    return (row.get("generator_cores") or 0) / limit if limit else 0.0


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def cells(rows: list[dict]) -> list[Cell]:
    """The measured rows (status ok) grouped by variant, scenario and concurrency, in the
    order they first appear, each with its verdict in its (scenario, concurrency) column."""
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for row in rows:
        if row.get("status") == "ok" and row.get("rps") is not None:
            groups.setdefault((row["variant"], row["scenario"], int(row["users"])), []).append(row)
    out = []
    for (variant, scenario, concurrency), group in groups.items():
        rates = [float(r["rps"]) for r in group]
        p99 = [float(r["p99_ms"]) for r in group if r.get("p99_ms") is not None]
        serving = [float(r["serving_cpu_us_per_request"]) for r in group if r.get("serving_cpu_us_per_request")]
        out.append(Cell(variant, scenario, concurrency, len(group), statistics.median(rates), min(rates),
                        max(rates), _median(p99), min(p99, default=None), max(p99, default=None),
                        _median(serving), max(generator_busy(r) for r in group),
                        sum(int(r.get("failures") or 0) for r in group)))
    return _verdicts(out)


def _verdicts(all_cells: list[Cell]) -> list[Cell]:
    best: dict[tuple[str, int], Cell] = {}
    for cell in all_cells:
        key = (cell.scenario, cell.concurrency)
        if key not in best or cell.rps > best[key].rps:
            best[key] = cell
    judged = []
    for cell in all_cells:
        top = best[(cell.scenario, cell.concurrency)]
        verdict = "best" if cell is top else ("tie" if cell.rps_max >= top.rps_min else "")
        judged.append(Cell(**{**cell.__dict__, "verdict": verdict}))
    return judged


def headline(all_cells: list[Cell], concurrency: int) -> list[Cell]:
    """One cell per variant and scenario: the one nearest the given concurrency (the
    single-level charts and the efficiency table use it)."""
    chosen: dict[tuple[str, str], Cell] = {}
    for cell in all_cells:
        key = (cell.variant, cell.scenario)
        if key not in chosen or abs(cell.concurrency - concurrency) < abs(chosen[key].concurrency - concurrency):
            chosen[key] = cell
    return list(chosen.values())


def representative(rows: list[dict], concurrency: int) -> list[dict]:
    """One measured row per variant and scenario, nearest the given concurrency: the round
    whose rate is the median of its cell's (the charts that show one run use it)."""
    chosen = {(c.variant, c.scenario): c for c in headline(cells(rows), concurrency)}
    out = []
    for (variant, scenario), cell in chosen.items():
        group = [r for r in rows if r.get("status") == "ok" and r["variant"] == variant
                 and r["scenario"] == scenario and int(r["users"]) == cell.concurrency]
        out.append(min(group, key=lambda r: abs(float(r["rps"]) - cell.rps)))
    return out
