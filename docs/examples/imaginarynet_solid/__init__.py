"""A complete ImaginaryNet backend plugin: flat colour images, one colour per seed.

Install a package holding this module with, in its pyproject.toml,

    [project.entry-points."imaginarynet.backends"]
    solid = "imaginarynet_solid:SolidBackend"

and `imaginarynet --backend solid ...` uses it.
"""
from __future__ import annotations

import random

from PIL import Image

from imaginarynet.backends.base import Generated, Request
from imaginarynet.errors import UserError


class SolidBackend:
    name = "solid"
    requires = ("PIL",)  # modules `imaginarynet backends` checks for

    @classmethod
    def validate_options(cls, options: dict) -> dict:
        """--backend-option values, checked before anything loads; raise UserError to refuse."""
        shade = options.setdefault("shade", 1.0)
        if not isinstance(shade, (int, float)) or not 0 <= shade <= 1:
            raise UserError(f"solid: shade must be a number in [0, 1], got {shade!r}")
        return options

    def __init__(self, options, backend_options: dict, runtime):
        # options: the generic sampling options (resolution, steps, guidance, negative_prompt);
        # backend_options: what validate_options returned; runtime: device, dtype, batch_size, ...
        self.size = options.resolution
        self.shade = backend_options["shade"]

    def load(self) -> None:
        """Load weights here: called once per process, and only if there is work to do."""

    def generate(self, requests: list[Request]) -> list[Generated]:
        shade, size = self.shade, self.size
        out = []
        for r in requests:
            rng = random.Random(r.seed)  # the image depends on its own seed only
            colour = tuple(int(rng.randrange(256) * shade) for _ in range(3))
            out.append(Generated(Image.new("RGB", (size, size), colour)))
        return out

    def describe(self) -> dict:
        return {"backend": self.name, "shade": self.shade}
