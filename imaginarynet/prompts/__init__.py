"""Prompt sources: the k-th prompt of a class is a pure function of (run seed, class, k)."""
from __future__ import annotations


def create_prompt_source(cfg, state_dir):
    if cfg.gpt:
        from imaginarynet.prompts.gpt2 import GPT2Expander

        return GPT2Expander(cfg, state_dir)
    from imaginarynet.prompts.template import TemplatePrompts

    return TemplatePrompts(cfg.template)
