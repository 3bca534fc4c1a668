"""Prompt sources: the k-th prompt of a class is a pure function of (run seed, class, k).

A new source is one module with a class that satisfies PromptSource plus one line in SOURCES.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

from imaginarynet.classes import ImageClass

# name -> "module:Class"; every class is built as Class(PromptOptions, Scenes, Runtime, state_dir)
SOURCES = {
    "template": "imaginarynet.prompts.template:TemplatePrompts",
    "gpt2": "imaginarynet.prompts.gpt2:GPT2Expander",
    "llm": "imaginarynet.prompts.llm:LLMPrompts",
}


class PromptSource(Protocol):
    def load(self) -> None:
        """Load models (once per process, only if work remains)."""

    def prompts(self, cls: ImageClass, ks: list[int]) -> list[str]:
        """The prompts of attempts ks of class cls, in order."""

    def describe(self) -> dict:
        """What run.json records about the source."""


def source_name(cfg) -> str:
    return "llm" if cfg.llm else "gpt2" if cfg.gpt else "template"


def create_prompt_source(cfg, state_dir: Path) -> PromptSource:
    """The run's prompt source, built from its own options, the run's scene draw and runtime."""
    from imaginarynet.prompts.options import PromptOptions
    from imaginarynet.runtime import Runtime
    from imaginarynet.scenes import Scenes

    module, _, attr = SOURCES[source_name(cfg)].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls(PromptOptions.of(cfg), Scenes.of(cfg), Runtime.of(cfg), state_dir)
