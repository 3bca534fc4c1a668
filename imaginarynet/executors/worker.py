"""One worker: loads the stages once, then turns units into ledger records (images already staged).

Shared by the local process pool and the Ray actors.
"""
from __future__ import annotations

from dataclasses import replace


class UnitWorker:
    def __init__(self, cfg, device: str | None):
        from imaginarynet.outdir import OutputDir
        from imaginarynet.pipeline import Stages

        self.cfg = replace(cfg, device=device) if device else cfg
        if (device or "cpu").startswith("cpu") and cfg.workers > 1:
            _share_cores(cfg.workers)
        self.out = OutputDir(self.cfg.outputdir)
        self.stages = Stages(self.cfg, self.out)
        self.stages.load()

    def describe(self) -> dict:
        return self.stages.describe()

    def run(self, batch: list[tuple[int, int]]) -> tuple[list[dict], dict]:
        from imaginarynet.fsutil import atomic_write_bytes
        from imaginarynet.pipeline import StageTimer, encode_jpeg, run_batch

        timer = StageTimer()
        records, writes = run_batch(self.cfg, self.stages, [tuple(x) for x in batch], timer)
        with timer("write"):
            for path, image in writes:  # before the parent's ledger can name them
                atomic_write_bytes(self.out.state / path, encode_jpeg(image))
        return records, timer.seconds


def _share_cores(workers: int) -> None:
    """CPU workers split the cores instead of each starting a thread per core."""
    import importlib.util
    import os

    threads = max(1, (os.cpu_count() or 1) // workers)
    if importlib.util.find_spec("torch"):
        import torch

        torch.set_num_threads(threads)
