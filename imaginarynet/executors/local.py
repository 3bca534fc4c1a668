"""One worker process per device (spawned), each fed units over its own pipe; the parent owns the
ledger, the scheduler and the progress bar. A worker that dies stops the run cleanly: finished
units are in the ledger, and the same command again resumes."""
from __future__ import annotations

import traceback

from imaginarynet.errors import ModelLoadError, UserError
from imaginarynet.errors import WorkerDiedError as WorkerDied
from imaginarynet.executors.base import PREFETCH, least_loaded


def _worker_main(cfg, device: str, conn) -> None:
    from imaginarynet.work import UnitWorker

    try:
        worker = UnitWorker(cfg, device)
        conn.send(("ready", worker.ready()))
        while (task := conn.recv()) is not None:
            uid, batch = task
            records, seconds = worker.run(batch)
            conn.send(("done", (uid, records, seconds)))
    except UserError as exc:
        conn.send(("usererror", str(exc)))
    except ModelLoadError as exc:
        conn.send(("loaderror", str(exc)))
    except BaseException as exc:  # report anything, in one line, then die
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
        conn.send(("error", f"{type(exc).__name__}: {exc}{where}"))
        raise SystemExit(1)


def run_local(cfg, devices: list[str], next_unit, sink) -> dict[int, int]:
    """Run until no unit is wanted (the contract in executors/__init__.py); returns attempts per worker."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")  # CUDA and JAX do not survive fork
    pipes = [ctx.Pipe() for _ in devices]
    procs = [ctx.Process(target=_worker_main, args=(cfg, d, child), daemon=True)
             for d, (_, child) in zip(devices, pipes)]
    for p in procs:
        p.start()
    conns = [parent for parent, _ in pipes]
    owner = {c: i for i, c in enumerate(conns)}
    pending: dict[int, dict[int, list]] = {i: {} for i in range(len(procs))}  # worker -> uid -> batch
    per_worker = {i: 0 for i in range(len(procs))}
    assigned = [0] * len(procs)
    uid = 0

    def died(i: int) -> WorkerDied:
        procs[i].join(timeout=1)
        return WorkerDied(f"worker {i} ({devices[i]}) died with exit code {procs[i].exitcode}")

    ready: set[int] = set()
    try:
        while True:
            # Units go out once every worker has loaded its models (they start together, for an even split).
            while len(ready) == len(procs):
                i = least_loaded(assigned, [len(pending[j]) for j in range(len(procs))])
                if len(pending[i]) >= PREFETCH or not (batch := next_unit()):
                    break
                pending[i][uid] = batch
                assigned[i] += len(batch)
                conns[i].send((uid, batch))
                uid += 1
            if len(ready) == len(procs) and not any(pending.values()):
                break
            for conn in wait(conns + [p.sentinel for p in procs], timeout=1.0):
                if conn not in owner:  # a process sentinel: that worker exited
                    i = next(j for j, p in enumerate(procs) if p.sentinel == conn)
                    if pending[i] or procs[i].exitcode:
                        raise died(i)
                    continue
                i = owner[conn]
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    raise died(i) from None
                if kind == "usererror":
                    raise UserError(f"worker {i} ({devices[i]}): {payload}")
                if kind == "loaderror":
                    raise ModelLoadError(f"worker {i} ({devices[i]}): {payload}")
                if kind == "error":
                    raise WorkerDied(f"worker {i} ({devices[i]}) failed: {payload}")
                if kind == "ready":
                    ready.add(i)
                    sink.ready(*payload)
                    continue
                done_uid, records, seconds = payload
                pending[i].pop(done_uid)
                per_worker[i] += len(records)
                sink.record(records)
                sink.commit(records, seconds, i)  # the worker staged the images before it answered
    finally:
        for conn, p in zip(conns, procs):
            try:
                if p.is_alive():
                    conn.send(None)
            except OSError:
                pass
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join()
    return per_worker
