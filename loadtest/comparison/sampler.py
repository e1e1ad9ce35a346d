"""Every container's CPU time and memory, read by the host from its cgroup (v1 or v2).

`docker stats` is the fallback where the cgroup files are not readable (coarser).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from typing import Self

_CGROUP_ROOTS = ("/sys/fs/cgroup/cpuacct/docker", "/sys/fs/cgroup/cpu,cpuacct/docker")
# What one reading can raise: docker missing or slow, a file half-written or gone.
_READ_ERRORS = (OSError, subprocess.SubprocessError, ValueError)


def read_text(path: str) -> str | None:
    """A file's text, or None when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def cgroup_cpu_seconds(container_id: str) -> float | None:
    """Cumulative CPU time of a running container."""
    for root in _CGROUP_ROOTS:
        raw = read_text(f"{root}/{container_id}/cpuacct.usage")
        if raw:
            return int(raw) / 1e9
    for path in (f"/sys/fs/cgroup/docker/{container_id}/cpu.stat",
                 f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"):
        raw = read_text(path)
        if raw:
            for line in raw.splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
    return None


def cgroup_memory_bytes(container_id: str) -> int | None:
    """Memory in use as `docker stats` counts it: usage minus inactive page cache."""
    for base, usage_file, inactive_key in (
            (f"/sys/fs/cgroup/memory/docker/{container_id}", "memory.usage_in_bytes", "total_inactive_file"),
            (f"/sys/fs/cgroup/docker/{container_id}", "memory.current", "inactive_file"),
            (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope", "memory.current", "inactive_file")):
        usage = read_text(f"{base}/{usage_file}")
        if usage is None:
            continue
        inactive = 0
        for line in (read_text(f"{base}/memory.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == inactive_key:
                inactive = int(value)
        return max(0, int(usage) - inactive)
    return None


def docker_stats(ids: list[str]) -> dict[str, tuple[float, int]]:
    """{id: (CPU fraction, memory bytes)} from one `docker stats` reading."""
    units = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "kB": 1000, "MB": 1e6, "GB": 1e9}
    out = subprocess.run(["docker", "stats", "--no-stream", "--format",
                          "{{.ID}} {{.CPUPerc}} {{.MemUsage}}", *ids],
                         check=False, capture_output=True, text=True, timeout=30).stdout
    stats = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        match = re.fullmatch(r"([\d.]+)([A-Za-z]+)", parts[2])
        memory = int(float(match.group(1)) * units.get(match.group(2), 1)) if match else 0
        stats[parts[0]] = (float(parts[1].rstrip("%") or 0) / 100, memory)
    return stats


class Sampler:
    """Samples every running container of a compose project in a thread, while in `with`.

    CPU: cumulative cgroup time, so a run's CPU is the last reading minus the first
    (containers that appear during the run start from zero). Memory: the peak of the
    readings. Without readable cgroups it integrates `docker stats` (coarser).
    """

    def __init__(self, project: str, interval: float = 0.25):
        self.project = project
        self.interval = interval
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.peak_memory: dict[str, int] = {}
        self.service: dict[str, str] = {}
        self.source = "cgroup"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._listed_at = 0.0
        self._ids: list[str] = []
        self._stats_at: float | None = None

    def _list(self) -> list[str]:
        out = subprocess.run(["docker", "ps", "--no-trunc", "--filter",
                              f"label=com.docker.compose.project={self.project}", "--format",
                              '{{.ID}} {{.Label "com.docker.compose.service"}}'],
                             check=False, capture_output=True, text=True, timeout=30).stdout
        ids = []
        for line in out.splitlines():
            cid, _, service = line.partition(" ")
            self.service[cid] = service
            ids.append(cid)
        return ids

    def sample(self, initial: bool = False) -> None:
        now = time.monotonic()
        if initial or now - self._listed_at > 1.0:
            self._ids, self._listed_at = self._list(), now
        missing = []
        for cid in self._ids:
            cpu = cgroup_cpu_seconds(cid) if self.source == "cgroup" else None
            memory = cgroup_memory_bytes(cid)
            if cpu is None:
                if self.source == "cgroup" and not initial:
                    continue  # the container ended between `docker ps` and the read
                missing.append(cid)
                continue
            if cid not in self.first:
                self.first[cid] = cpu if initial else 0.0
            self.last[cid] = cpu
            if memory is not None:
                self.peak_memory[cid] = max(self.peak_memory.get(cid, 0), memory)
        if missing:
            self._integrate_docker_stats(missing)

    def _integrate_docker_stats(self, ids: list[str]) -> None:
        """Adds docker stats' CPU fraction times the time since the previous call."""
        self.source = "docker stats"  # cgroups not readable here: coarser, from now on
        started = time.monotonic()
        step = (started - self._stats_at) if self._stats_at else 0.0
        for cid, (fraction, memory) in docker_stats(ids).items():
            full = next((c for c in ids if c.startswith(cid)), cid)
            self.first.setdefault(full, 0.0)
            self.last[full] = self.last.get(full, 0.0) + fraction * step
            self.peak_memory[full] = max(self.peak_memory.get(full, 0), memory)
        self._stats_at = started

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except _READ_ERRORS as exc:  # a container vanishing mid-read must not end sampling
                print(f"  (sampler: {exc})", file=sys.stderr)

    def __enter__(self) -> Self:
        self.sample(initial=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        with contextlib.suppress(*_READ_ERRORS):  # a bonus reading: the run stands without it
            self.sample()

    def cpu_by_service(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for cid, last in self.last.items():
            service = self.service.get(cid, "?")
            totals[service] = totals.get(service, 0.0) + max(0.0, last - self.first.get(cid, 0.0))
        return totals

    def peak_memory_by_container(self, service: str) -> list[int]:
        return [peak for cid, peak in self.peak_memory.items() if self.service.get(cid) == service]
