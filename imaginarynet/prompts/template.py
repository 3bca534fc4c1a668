"""The plain template prompt, "A photo of a {name}." (or "A photo of {names}." for a scene)."""
from __future__ import annotations

from imaginarynet.classes import ImageClass
from imaginarynet.scenes import render


class TemplatePrompts:
    def __init__(self, opts, scenes, runtime=None, state_dir=None):
        self.scenes = scenes
        self.template = opts.template

    def load(self) -> None:
        pass

    def prompts(self, cls: ImageClass, ks: list[int]) -> list[str]:
        return [render(self.template, self.scenes.names(cls, k)) for k in ks]

    def describe(self) -> dict:
        return {"prompts": "template", "template": self.template}
