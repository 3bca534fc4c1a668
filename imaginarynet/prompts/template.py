"""The plain template prompt, "A photo of a {name}." (or "A photo of {names}." for a scene)."""
from __future__ import annotations

from imaginarynet.classes import ImageClass
from imaginarynet.scenes import render, scene_names


class TemplatePrompts:
    def __init__(self, cfg, state_dir=None):
        self.cfg = cfg
        self.template = cfg.template

    def load(self) -> None:
        pass

    def prompts(self, cls: ImageClass, ks: list[int]) -> list[str]:
        return [render(self.template, scene_names(self.cfg, cls, k)) for k in ks]

    def describe(self) -> dict:
        return {"prompts": "template", "template": self.template}
