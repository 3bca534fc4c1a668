"""Executors decide where work units run; they know nothing about what the stages do.

inline.py: one worker in this process. local.py: one process per device (or --workers N on
the CPU). ray.py: the same units on Ray actors. A --shard slice (shards.py) runs its own
blocks through whichever of these its --devices/--workers select.

One contract for all of them:

    executor(cfg, devices, next_unit, sink) -> attempts per worker

- `next_unit()` returns the next unit (a list of (class index, attempt k)), or [] when none is
  wanted right now.
- `sink.ready(described, load_seconds)` once per worker, when its models are loaded.
- `sink.record(records)` for a finished unit *before* the executor calls `next_unit()` again, so
  with one worker nothing is in flight when a unit is chosen (a resumed run issues the same units).
- `sink.commit(records, seconds, worker)` only after the unit's images are staged on disk.
"""
from __future__ import annotations

from imaginarynet.executors.base import Executor


def pick(cfg, devices: list[str]) -> tuple[str, Executor]:
    """(name, executor) for these options: ray, local processes, or inline in this process."""
    if cfg.engine == "ray":
        from imaginarynet.executors.ray import run_ray

        return "ray", run_ray
    if len(devices) > 1:
        from imaginarynet.executors.local import run_local

        return "local", run_local
    from imaginarynet.executors.inline import InlineExecutor

    return "inline", InlineExecutor()
