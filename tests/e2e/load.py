"""A small, bounded, steady load from plain HTTP clients, recording every outcome."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import requests


@dataclass
class Outcome:
    result: int | str      # HTTP status, or the exception's class name
    seconds: float
    started: float


@dataclass
class Load:
    url: str
    clients: int = 8
    timeout: float = 30.0          # a request still waiting after this counts as hung
    pause: float = 0.005
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]

    def _client(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                result: int | str = session.get(self.url, timeout=self.timeout).status_code
            except requests.Timeout:
                result = "hung"
            except requests.RequestException as exc:
                result = type(exc).__name__
                session = requests.Session()  # a broken connection: start afresh
            self.outcomes.append(Outcome(result, time.monotonic() - started, started))
            time.sleep(self.pause)

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    @property
    def counts(self) -> Counter:
        return Counter(o.result for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result != 200]

    @property
    def slowest(self) -> float:
        return max((o.seconds for o in self.outcomes), default=0.0)

    def ok_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first request started after it that succeeded."""
        times = [o.started + o.seconds for o in self.outcomes if o.started >= moment and o.result == 200]
        return min(times) - moment if times else None
