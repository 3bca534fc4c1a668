"""Filters judge generated images: `score(candidates)` returns one dict per candidate,
with at least {"accepted": bool}; the dict is stored in the ledger and metadata."""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class Candidate:
    image: Image.Image
    class_index: int
    label: str
    k: int
    prompt: str
