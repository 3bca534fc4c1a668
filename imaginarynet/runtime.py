"""Where and with what a run executes: devices, worker device lists, library noise, package versions.

Plain helpers shared by the stages and the orchestrator; torch is imported only when a
device must be discovered.
"""
from __future__ import annotations

import platform
import re
from dataclasses import dataclass, replace
from importlib import metadata

from imaginarynet.errors import UserError

VERSIONED_PACKAGES = ("imaginarynet", "torch", "diffusers", "transformers", "open_clip_torch", "jax", "flax",
                      "pillow")


@dataclass(frozen=True)
class Runtime:
    """Where and how a stage's models run: what every stage is built with besides its own options."""

    device: str | None = None  # None: cuda when torch sees one, else cpu (resolve_device)
    dtype: str = "auto"
    batch_size: int = 4
    cpu_offload: bool = False
    tf32: bool = False
    compile: bool = False
    quiet: bool = False

    @classmethod
    def of(cls, cfg) -> Runtime:
        """The generator's runtime: the run's device and compute options."""
        return cls(cfg.device, cfg.dtype, cfg.batch_size, cfg.cpu_offload, cfg.tf32, cfg.compile, cfg.quiet)

    @classmethod
    def verifier(cls, cfg) -> Runtime:
        """The filter's, detector's and segmenter's: the CPU with --cpu (keeping GPU memory for the
        generator), else the generator's device."""
        runtime = cls.of(cfg)
        return replace(runtime, device="cpu") if cfg.cpu else runtime


def resolve_device(requested: str | None) -> str:
    """The device asked for, else cuda when torch sees one, else cpu."""
    if requested:
        return requested
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


DEVICE_SYNTAX = re.compile(r"^(cpu|mps|cuda)(:\d+)?$")


def check_device(spec: str) -> None:
    """cpu, mps, cuda or cuda:N, and a CUDA device must exist (torch is imported only to check that)."""
    if not DEVICE_SYNTAX.match(spec):
        raise UserError(f"unknown device {spec!r} (use cpu, cuda, cuda:N or mps)")
    if spec.startswith("cuda"):
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise UserError(f"device {spec}: torch is not installed")
        import torch

        count = torch.cuda.device_count()
        index = int(spec.partition(":")[2] or 0)
        if index >= count:
            raise UserError(f"device {spec} does not exist here ({count} CUDA device(s) visible)")


def worker_devices(cfg) -> list[str]:
    """One entry per worker: --devices (a list or 'all'), else --workers copies of --device."""
    if cfg.devices:
        if cfg.devices == "all":
            import torch

            n = torch.cuda.device_count()
            return [f"cuda:{i}" for i in range(n)] if n else ["cpu"]
        return [d.strip() for d in cfg.devices.split(",") if d.strip()]
    if cfg.workers > 1 or cfg.engine == "ray":
        return [cfg.device or resolve_device(None)] * cfg.workers
    return [cfg.device or ""]


def quiet_libraries() -> None:
    """Our progress bar is the only one: silence the loaders' bars and advice."""
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in ("transformers", "diffusers"):
        try:
            logging = __import__(f"{name}.utils.logging", fromlist=["logging"])
        except ImportError:
            continue
        logging.set_verbosity_error()
        logging.disable_progress_bar()


def share_cores(workers: int) -> None:
    """CPU workers split the cores instead of each starting a thread per core (unless the user set
    OMP_NUM_THREADS: then every worker, like a single process, uses that many)."""
    import importlib.util
    import os

    if os.environ.get("OMP_NUM_THREADS"):
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    if importlib.util.find_spec("torch"):
        import torch

        torch.set_num_threads(threads)


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
