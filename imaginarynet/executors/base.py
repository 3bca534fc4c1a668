"""The executor contract (see executors/__init__.py) and the dispatch policy the executors share."""
from __future__ import annotations

from typing import Callable, Protocol

PREFETCH = 2  # units queued per worker, so no worker waits for the parent


class Sink(Protocol):
    def ready(self, described: dict, load_seconds: float) -> None: ...

    def record(self, records: list[dict]) -> None: ...

    def commit(self, records: list[dict], seconds: dict, worker: int) -> None: ...


Executor = Callable[..., dict]


def least_loaded(assigned: list[int], queued: list[int]) -> int:
    """The worker with the fewest attempts so far (then the shortest queue): identical devices do
    identical work, so the split stays within one unit."""
    return min(range(len(assigned)), key=lambda j: (assigned[j], queued[j], j))
