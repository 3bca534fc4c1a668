"""The backend protocol and the registry of built-in backends.

A backend turns a batch of (prompt, seed) requests into images. It must be
deterministic per request: the image for (prompt, seed) may not depend on the
other requests in the batch beyond floating-point noise.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from imaginarynet.errors import UserError


@dataclass(frozen=True)
class Request:
    prompt: str
    seed: int


@dataclass
class Generated:
    image: Image.Image | None  # None when the backend's safety checker flagged it
    flagged: bool = False


class Backend(Protocol):
    name: str

    def load(self) -> None:
        """Load models onto the device (called once per process, only if work remains)."""

    def generate(self, requests: list[Request]) -> list[Generated]:
        """One image per request, in order."""

    def describe(self) -> dict:
        """Models, dtype, device, settings actually used: recorded in run.json."""


BUILTIN = {
    "stablediffusion": "imaginarynet.backends.stable_diffusion:StableDiffusionBackend",
    "dalle-mini": "imaginarynet.backends.dalle_mini.backend:DalleMiniBackend",
}


def create_backend(cfg) -> Backend:
    target = BUILTIN.get(cfg.backend)
    if target is None:
        raise UserError(f"unknown backend {cfg.backend!r} (available: {', '.join(BUILTIN)})")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)(cfg)


def resolve_device(requested: str | None) -> str:
    if requested:
        return requested
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


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
