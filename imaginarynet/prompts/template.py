"""The plain template prompt, "A photo of a {name}.", the same for every attempt."""
from __future__ import annotations

from imaginarynet.classes import ImageClass


class TemplatePrompts:
    def __init__(self, cfg, state_dir=None):
        self.template = cfg.template

    def load(self) -> None:
        pass

    def prompts(self, cls: ImageClass, ks: list[int]) -> list[str]:
        return [self.template.format(name=cls.name)] * len(ks)

    def describe(self) -> dict:
        return {"prompts": "template", "template": self.template}
