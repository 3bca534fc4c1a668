"""GPT-2 prompt expansion: "A photo of a dog" → "A photo of a dog running on the beach."

Prompts of a class form a deterministic stream (prompts/stream.py): fixed blocks
of BLOCK sampled continuations, one forward pass per token for the whole block,
each block with a generator seeded from (run seed, class, block).
"""
from __future__ import annotations

import inspect
import re

from imaginarynet.classes import ImageClass
from imaginarynet.errors import UserError, require
from imaginarynet.prompts.stream import BLOCK, BlockStream, block_seed
from imaginarynet.scenes import render

TOP_K = 50  # transformers' text-generation default, as the original tool used it
_SENTENCE_END = re.compile(r"[.!?\n]")


def cut_continuation(prefix: str, continuation: str) -> str:
    """prefix + continuation up to and including the first sentence end, whitespace tidied."""
    m = _SENTENCE_END.search(continuation)
    if m:
        end = m.end() if m.group() != "\n" else m.start()
        continuation = continuation[:end]
    text = " ".join((prefix + continuation).split())
    return text


class GPT2Expander(BlockStream):
    source = "gpt2"
    who = "GPT-2"

    def load(self) -> None:
        torch = require("torch", "gpt", "--gpt")
        transformers = require("transformers", "gpt", "--gpt")
        from imaginarynet.runtime import quiet_libraries, resolve_device

        quiet_libraries()
        self.device = resolve_device(self.runtime.device)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.opts.gpt_model)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(self.opts.gpt_model)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load GPT-2 model {self.opts.gpt_model!r}: {str(exc).splitlines()[0]}") from exc
        self.model.to(self.device).eval()
        self._torch = torch
        if self.tokenizer.pad_token is None:  # scene blocks pad different prefixes on the left
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        # transformers 5 renamed the key/value cache argument from past_key_values to cache
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def prefix(self, names: list[str]) -> str:
        # the model continues the template's sentence, so drop its final full stop
        return render(self.opts.template, names).rstrip(" .")

    def sample_block(self, cls: ImageClass, block: int) -> list[str]:
        seed = block_seed(self.source, self.seed, cls.label, block)
        texts = self._continue([self.prefix([cls.name])] * BLOCK, seed)
        return texts if texts else [render(self.opts.template, [cls.name])]

    def sample_scene_block(self, cls: ImageClass, block: int, scenes: list[list[str]]) -> list[str | None]:
        seed = block_seed(self.source, self.seed, cls.label, block)
        texts = self._continue([self.prefix(names) for names in scenes], seed)
        return texts or [None] * len(scenes)  # a template longer than --gpt-max-tokens: the template itself

    def _continue(self, prefixes: list[str], seed: int) -> list[str]:
        """One sampled continuation per prefix, one forward pass per token for all of them; [] if the
        prefixes leave no token to sample. Different prefixes are left-padded (positions and attention
        follow the mask)."""
        torch = self._torch
        same = len(set(prefixes)) == 1
        enc = self.tokenizer(prefixes, return_tensors="pt", padding=not same)
        input_ids = enc.input_ids.to(self.device)
        mask = None if same else enc.attention_mask.to(self.device)
        shortest = input_ids.shape[1] if same else int(enc.attention_mask.sum(dim=1).min())
        new_tokens = self.opts.gpt_max_tokens - shortest
        if new_tokens <= 0:
            return []
        gen = torch.Generator("cpu").manual_seed(seed)
        past, step_ids, out = None, input_ids, []
        position = None if same else (mask.cumsum(dim=1) - 1).clamp(min=0)
        with torch.inference_mode():
            for _ in range(new_tokens):
                extra = {} if same else {"attention_mask": mask, "position_ids": position}
                res = self.model(input_ids=step_ids, use_cache=True, **{self._cache_arg: past}, **extra)
                past = res[self._cache_arg]
                logits = res.logits[:, -1, :].float().cpu()
                top = torch.topk(logits, min(TOP_K, logits.shape[-1]), dim=-1)
                probs = torch.softmax(top.values, dim=-1)
                choice = torch.multinomial(probs, 1, generator=gen)
                step_ids = top.indices.gather(1, choice).to(self.device)
                out.append(step_ids.cpu())
                if not same:
                    mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)
                    position = position[:, -1:] + 1
        tokens = torch.cat(out, dim=1).tolist()
        return [self._within_budget(cut_continuation(p, self.tokenizer.decode(t, skip_special_tokens=True)), p)
                for p, t in zip(prefixes, tokens)]

    def _within_budget(self, text: str, prefix: str) -> str:
        """At most --gpt-max-tokens tokens when the prompt is tokenized again: a byte-level token that is
        not a whole character decodes to U+FFFD (three tokens, and noise to the text-to-image model), so
        those go, as do control characters, then whole words from the end until the prompt fits."""
        text = " ".join("".join(ch for ch in text if ch.isprintable() or ch.isspace()).replace("\ufffd", "").split())
        while len(self.tokenizer(text).input_ids) > self.opts.gpt_max_tokens:
            shorter = text.rsplit(" ", 1)[0]
            if shorter == text or len(shorter) <= len(prefix):
                return prefix
            text = shorter
        return text

    def describe(self) -> dict:
        return {"prompts": "gpt2", "model": self.opts.gpt_model, "max_tokens": self.opts.gpt_max_tokens,
                "template": self.opts.template, "block": BLOCK, "top_k": TOP_K}
