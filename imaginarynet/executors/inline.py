"""One worker in this process: the JPEG writes of unit i overlap the generation of unit i+1.

The worker (its loaded models) is kept between calls, so a --shard that also assembles the
dataset loads its models once.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait

from imaginarynet.work import UnitWorker, stage_image, sync_folders

WRITE_THREADS = 4


class InlineExecutor:
    def __init__(self):
        self.worker: UnitWorker | None = None
        self.announced = False  # sink.ready is called once per run, whoever loaded the worker

    def worker_for(self, cfg, devices: list[str]) -> UnitWorker:
        """The loaded worker (loading it the first time): repairs before the run use the same one."""
        if self.worker is None:
            self.worker = UnitWorker(cfg, devices[0] if devices else None)
        return self.worker

    def __call__(self, cfg, devices: list[str], next_unit, sink) -> dict[int, int]:
        worker = self.worker_for(cfg, devices)
        if not self.announced:
            sink.ready(*worker.ready())
            self.announced = True
        attempts = 0
        pending = None  # the previous unit: (records, futures, seconds), committed once its files exist

        def finish(records, futures, writes, seconds) -> None:
            start = time.perf_counter()
            for f in futures:
                f.result()  # re-raises a failed write before the ledger points at the file
            sync_folders(writes)
            seconds["write"] = seconds.get("write", 0.0) + time.perf_counter() - start
            sink.commit(records, seconds, 0)

        with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
            try:
                while unit := next_unit():
                    records, writes, seconds = worker.generate(unit)
                    sink.record(records)
                    futures = [pool.submit(stage_image, path, image) for path, image in writes]
                    if pending:
                        previous, pending = pending, None
                        finish(*previous)
                    pending = (records, futures, writes, seconds)
                    attempts += len(records)
                if pending:
                    previous, pending = pending, None
                    finish(*previous)
            except BaseException:
                # interrupted (SIGTERM, Ctrl-C) or failed: the unit whose images are staged is still committed
                if pending and not wait(pending[1], timeout=60).not_done and not any(f.exception() for f in pending[1]):
                    try:
                        finish(*pending)
                    except Exception:
                        pass  # it will simply run again on resume
                raise
        return {0: attempts}
