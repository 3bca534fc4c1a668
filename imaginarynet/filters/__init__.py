"""Filters judge generated images: `score(candidates)` returns one dict per candidate,
with at least {"accepted": bool}; the dict is stored in the ledger and metadata.

A new filter is one module with a class that satisfies Filter plus one line in FILTERS.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

# name -> "module:Class"; every class is built as Class(FilterOptions, classes, Runtime)
FILTERS = {
    "clip": "imaginarynet.filters.clip:ClipFilter",
}


@dataclass(frozen=True)
class Candidate:
    image: Image.Image
    class_index: int
    label: str
    k: int
    prompt: str
    classes: tuple[int, ...] = ()  # a scene's prompted class indices, primary first (empty: just class_index)


class Filter(Protocol):
    def load(self) -> None:
        """Load models (once per process, only if work remains)."""

    def score(self, candidates: list[Candidate]) -> list[dict]:
        """One verdict per candidate, in order, each with "accepted"."""

    def describe(self) -> dict:
        """What run.json records about the filter."""

    # Optional, for `annotate` (images of unknown class): classify(candidates) -> one verdict per image
    # for its best class, with "top1" (that class's label) and "accepted".


def filter_name(cfg) -> str | None:
    return "clip" if cfg.clip else None


def create_filter(cfg, name: str | None = None) -> Filter | None:
    """The filter the options ask for, on the verifiers' device; `name` builds one regardless (--dedup embeds
    with CLIP's model)."""
    from imaginarynet.filters.options import FilterOptions
    from imaginarynet.runtime import Runtime

    name = name or filter_name(cfg)
    if name is None:
        return None
    module, _, attr = FILTERS[name].partition(":")
    return getattr(importlib.import_module(module), attr)(FilterOptions.of(cfg), cfg.classes, Runtime.verifier(cfg))
