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
from imaginarynet.runtime import quiet_libraries, resolve_device  # noqa: F401  (plugins import them from here)


@dataclass(frozen=True)
class Request:
    prompt: str
    seed: int


@dataclass
class Generated:
    image: Image.Image | None  # None when the backend's safety checker flagged it


class Backend(Protocol):
    name: str
    requires: tuple[str, ...]  # modules that must import (`imaginarynet backends` reports them)
    # Optional: the StageOptions class the backend is built from (default: DiffusionOptions, the generic
    # sampling options --resolution, --steps, --guidance, --negative-prompt).
    options_class: type

    def __init__(self, options, backend_options: dict, runtime) -> None:
        """options: its options_class instance; backend_options: the checked --backend-option values;
        runtime: runtime.Runtime (device, dtype, batch size, ...). Loads nothing."""

    def load(self) -> None:
        """Load models onto the device (called once per process, only if work remains)."""

    def generate(self, requests: list[Request]) -> list[Generated]:
        """One image per request, in order."""

    def describe(self) -> dict:
        """Models, dtype, device, settings actually used: recorded in run.json."""

    @classmethod
    def validate_options(cls, options: dict) -> dict:
        """Optional: the checked --backend-option values, or UserError. Without it, no options."""


BUILTIN = {
    "stablediffusion": "imaginarynet.backends.stable_diffusion:StableDiffusionBackend",
    "dalle-mini": "imaginarynet.backends.dalle_mini.backend:DalleMiniBackend",
}
ENTRY_POINT_GROUP = "imaginarynet.backends"


@dataclass(frozen=True)
class BackendSpec:
    name: str
    target: str  # "module:Class"
    source: str  # "built-in", "plugin <dist> <version>", or "module path"


def registered() -> dict[str, BackendSpec]:
    """Built-in backends plus those that installed packages declare as entry points."""
    from importlib.metadata import entry_points

    specs = {name: BackendSpec(name, target, "built-in") for name, target in BUILTIN.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in specs:
            continue  # a plugin cannot shadow a built-in
        dist = f"plugin {ep.dist.name} {ep.dist.version}" if ep.dist else "plugin"
        specs[ep.name] = BackendSpec(ep.name, ep.value, dist)
    return specs


def find_backend(name: str) -> BackendSpec:
    specs = registered()
    if name in specs:
        return specs[name]
    if ":" in name:
        return BackendSpec(name, name, "module path")
    raise UserError(f"unknown backend {name!r} (available: {', '.join(specs)}; or module:Class)")


def load_backend_class(spec: BackendSpec):
    module, _, attr = spec.target.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # a broken plugin: report it in one line, whatever it raised
        raise UserError(f"backend {spec.name!r} ({spec.target}, {spec.source}) cannot be loaded: "
                        f"{type(exc).__name__}: {exc}") from exc
    if not callable(getattr(obj, "generate", None)):
        raise UserError(f"backend {spec.name!r} ({spec.target}) has no generate() method")
    return obj


def check_backend_options(cfg) -> dict:
    """The backend's own validation of --backend-option values (before any model loads)."""
    cls = load_backend_class(find_backend(cfg.backend))
    validate = getattr(cls, "validate_options", None)
    if validate is not None:
        return validate(dict(cfg.backend_options))
    if cfg.backend_options:
        raise UserError(f"backend {cfg.backend!r} takes no --backend-option (got {', '.join(cfg.backend_options)})")
    return {}
