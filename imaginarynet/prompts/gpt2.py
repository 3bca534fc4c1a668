"""GPT-2 prompt expansion: "A photo of a dog" → "A photo of a dog running on the beach."

Prompts of a class form a deterministic stream. It is produced in fixed blocks
of BLOCK sampled continuations (one forward pass per token for the whole
block); block j of class c uses a generator seeded from (run seed, c, j), and
the stream keeps the first occurrence of each distinct prompt. So prompt k
depends only on (seed, class, k, model), never on the batch size or on which
worker asks. Finished blocks are cached in OUT/.state/prompts/ so a resumed run
does not sample them again.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import re
import sys
from pathlib import Path

from imaginarynet.classes import ImageClass
from imaginarynet.errors import UserError, require
from imaginarynet.fsutil import atomic_write_text

BLOCK = 16  # continuations sampled per forward pass
MAX_DRY_BLOCKS = 4  # consecutive blocks without a new prompt before falling back to the template
TOP_K = 50  # transformers' text-generation default, as the original tool used it
_SENTENCE_END = re.compile(r"[.!?\n]")


def block_seed(run_seed: int, label: str, block: int) -> int:
    digest = hashlib.sha256(f"gpt2\x00{run_seed}\x00{label}\x00{block}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFFFFFFFFFF


def cut_continuation(prefix: str, continuation: str) -> str:
    """prefix + continuation up to and including the first sentence end, whitespace tidied."""
    m = _SENTENCE_END.search(continuation)
    if m:
        end = m.end() if m.group() != "\n" else m.start()
        continuation = continuation[:end]
    text = " ".join((prefix + continuation).split())
    return text


class GPT2Expander:
    def __init__(self, cfg, state_dir: Path):
        self.cfg = cfg
        self.cache_dir = Path(state_dir) / "prompts"
        self.model = None
        self.streams: dict[str, dict] = {}
        self.warned = False

    def load(self) -> None:
        torch = require("torch", "gpt", "--gpt")
        transformers = require("transformers", "gpt", "--gpt")
        from imaginarynet.runtime import quiet_libraries, resolve_device

        quiet_libraries()
        self.device = resolve_device(self.cfg.device)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.cfg.gpt_model)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(self.cfg.gpt_model)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load GPT-2 model {self.cfg.gpt_model!r}: {str(exc).splitlines()[0]}") from exc
        self.model.to(self.device).eval()
        self._torch = torch
        # transformers 5 renamed the key/value cache argument from past_key_values to cache
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def prefix(self, cls: ImageClass) -> str:
        # the model continues the template's sentence, so drop its final full stop
        return self.cfg.template.format(name=cls.name).rstrip(" .")

    def _stream(self, cls: ImageClass) -> dict:
        if cls.label not in self.streams:
            path = self.cache_dir / f"{cls.label}.json"
            stream = {"prompts": [], "blocks": 0, "dry": 0, "fallback": False}
            if path.exists():
                try:
                    stream = json.loads(path.read_text())
                except ValueError:
                    pass  # a cache is only a shortcut: sample again
            self.streams[cls.label] = stream
        return self.streams[cls.label]

    def prompts(self, cls: ImageClass, ks: list[int]) -> list[str]:
        stream = self._stream(cls)
        need = max(ks) + 1
        grew = False
        while len(stream["prompts"]) < need and not stream["fallback"]:
            new = 0
            seen = set(stream["prompts"])
            for text in self._sample_block(cls, stream["blocks"]):
                if text not in seen:
                    seen.add(text)
                    stream["prompts"].append(text)
                    new += 1
            stream["blocks"] += 1
            stream["dry"] = 0 if new else stream["dry"] + 1
            stream["fallback"] = stream["dry"] >= MAX_DRY_BLOCKS
            grew = True
        if grew:
            atomic_write_text(self.cache_dir / f"{cls.label}.json", json.dumps(stream))
        if stream["fallback"] and len(stream["prompts"]) < need and not self.warned and not self.cfg.quiet:
            self.warned = True
            print(f"warning: GPT-2 keeps repeating itself for {cls.label!r}; "
                  "using the template prompt for the remaining attempts", file=sys.stderr)
        template = self.cfg.template.format(name=cls.name)
        return [stream["prompts"][k] if k < len(stream["prompts"]) else template for k in ks]

    def _sample_block(self, cls: ImageClass, block: int) -> list[str]:
        torch = self._torch
        prefix = self.prefix(cls)
        enc = self.tokenizer([prefix] * BLOCK, return_tensors="pt")
        input_ids = enc.input_ids.to(self.device)
        new_tokens = self.cfg.gpt_max_tokens - input_ids.shape[1]
        if new_tokens <= 0:
            return [self.cfg.template.format(name=cls.name)]
        gen = torch.Generator("cpu").manual_seed(block_seed(self.cfg.seed, cls.label, block))
        past, step_ids, out = None, input_ids, []
        with torch.inference_mode():
            for _ in range(new_tokens):
                res = self.model(input_ids=step_ids, use_cache=True, **{self._cache_arg: past})
                past = res[self._cache_arg]
                logits = res.logits[:, -1, :].float().cpu()
                top = torch.topk(logits, min(TOP_K, logits.shape[-1]), dim=-1)
                probs = torch.softmax(top.values, dim=-1)
                choice = torch.multinomial(probs, 1, generator=gen)
                step_ids = top.indices.gather(1, choice).to(self.device)
                out.append(step_ids.cpu())
        tokens = torch.cat(out, dim=1).tolist()
        return [self._within_budget(cut_continuation(prefix, self.tokenizer.decode(t, skip_special_tokens=True)),
                                    prefix) for t in tokens]

    def _within_budget(self, text: str, prefix: str) -> str:
        """At most --gpt-max-tokens tokens when the prompt is tokenized again: a byte-level token that is
        not a whole character decodes to U+FFFD (three tokens, and noise to the text-to-image model), so
        those go, then whole words from the end until the prompt fits."""
        text = " ".join(text.replace("\ufffd", "").split())
        while len(self.tokenizer(text).input_ids) > self.cfg.gpt_max_tokens:
            shorter = text.rsplit(" ", 1)[0]
            if shorter == text or len(shorter) <= len(prefix):
                return prefix
            text = shorter
        return text

    def describe(self) -> dict:
        return {"prompts": "gpt2", "model": self.cfg.gpt_model, "max_tokens": self.cfg.gpt_max_tokens,
                "template": self.cfg.template, "block": BLOCK, "top_k": TOP_K}
