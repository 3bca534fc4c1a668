"""--engine ray: the same work units on Ray actors (one per GPU with num_gpus=1, or CPU actors).

Actors write staged images straight into the output directory, so on a cluster it
must be on a filesystem every node sees; the driver owns the ledger and the scheduler.
"""
from __future__ import annotations

from imaginarynet.errors import ModelLoadError, UserError, WorkerDiedError, require
from imaginarynet.executors.base import PREFETCH, least_loaded
from imaginarynet.work import UnitWorker


def run_ray(cfg, devices: list[str], next_unit, sink) -> dict[int, int]:
    """The contract in executors/__init__.py, on Ray actors; returns attempts per worker."""
    ray = require("ray", "ray", "--engine ray")

    if not ray.is_initialized():
        local = {} if cfg.ray_address else {"num_cpus": max(len(devices), 1)}
        ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, **local)
    gpus = all(d.startswith("cuda") for d in devices)
    actor_cls = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1)(UnitWorker)
    # Ray hands each GPU actor its own device (CUDA_VISIBLE_DEVICES): inside, it is cuda:0.
    actors = [actor_cls.remote(cfg, "cuda:0" if gpus else d) for d in devices]
    for i, actor in enumerate(actors):
        try:
            sink.ready(*ray.get(actor.ready.remote()))
        except ray.exceptions.RayError as exc:
            raise _explain(exc, i) from exc
    per_worker = {i: 0 for i in range(len(actors))}
    running: dict = {}  # object ref -> (actor index, batch)
    queued = [0] * len(actors)
    assigned = [0] * len(actors)
    while True:
        while True:
            i = least_loaded(assigned, queued)
            if queued[i] >= PREFETCH or not (batch := next_unit()):
                break
            queued[i] += 1
            assigned[i] += len(batch)
            running[actors[i].run.remote(batch)] = (i, batch)
        if not running:
            break
        ready, _ = ray.wait(list(running), num_returns=1)
        i, batch = running.pop(ready[0])
        try:
            records, seconds = ray.get(ready[0])
        except ray.exceptions.RayError as exc:
            raise _explain(exc, i) from exc
        per_worker[i] += len(records)
        sink.record(records)
        sink.commit(records, seconds, i)  # the actor staged the images before it returned
        queued[i] -= 1
    for actor in actors:
        ray.kill(actor)
    return per_worker


def _explain(exc, index: int) -> Exception:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, UserError):
        return UserError(f"ray actor {index}: {cause}")
    if isinstance(cause, ModelLoadError):
        return ModelLoadError(f"ray actor {index}: {cause}")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return WorkerDiedError(f"ray actor {index} failed: {first}")
