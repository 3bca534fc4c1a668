"""Captions from an instruction-tuned chat model (`--llm`): "a dog" → "A golden retriever dog runs
across a sunlit meadow."

The model gets the class's instruction through its own chat template and samples BLOCK captions per
block (prompts/stream.py: fixed blocks, per-block seeds, de-duplicated and cached, so prompt k of a class
depends only on seed, class and k). A caption is cleaned (first line, list marks and quotes removed,
first sentence, whitespace tidied), bounded in length, and discarded if it holds garbled or control
characters or does not name the class's display name; discarded captions simply do not enter the stream.
"""
from __future__ import annotations

import re

from imaginarynet.classes import ImageClass
from imaginarynet.errors import UserError, require
from imaginarynet.prompts.stream import BLOCK, BlockStream, block_seed
from imaginarynet.scenes import render

DEFAULT_INSTRUCTION = ("Write one realistic caption for a photo of {name}. The caption must contain the words "
                       "\"{name}\". Reply with the caption only.")
SCENE_INSTRUCTION = ("Write one realistic caption for a photo of {names}. The caption must name every one of "
                     "them. Reply with the caption only.")
TOP_K = 50
MAX_CHARS = 200
MIN_WORDS = 3
_LIST_MARK = re.compile(r"^\s*(?:[-*•]+|\d+[.)])\s*")
_QUOTES = "\"'“”‘’«»`"
_SENTENCE = re.compile(r"^(.+?[.!?])(?=[\"'”’»]*(?:\s|$))")


def clean_caption(text: str, name: str | list[str]) -> str | None:
    """The caption the model meant, or None if it is not one (too short or long, or without the name, or
    without any one of the names of a scene)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    caption = _LIST_MARK.sub("", lines[0]).strip().strip(_QUOTES).strip()
    m = _SENTENCE.match(caption)
    if m:
        caption = m.group(1)
    caption = " ".join(caption.strip(_QUOTES).split())
    if not MIN_WORDS <= len(caption.split()) or len(caption) > MAX_CHARS:
        return None
    if not caption.isprintable() or "\ufffd" in caption:  # garbled bytes or control characters
        return None
    names = [name] if isinstance(name, str) else name
    if not all(re.search(rf"(?<!\w){re.escape(n.lower())}(?!\w)", caption.lower()) for n in names):
        return None
    return caption[0].upper() + caption[1:]


class LLMPrompts(BlockStream):
    source = "llm"
    who = "the LLM"

    def cache_path(self, cls: ImageClass):
        return self.cache_dir / f"{cls.label}.llm.json"

    def load(self) -> None:
        torch = require("torch", "gpt", "--llm")
        transformers = require("transformers", "gpt", "--llm")
        from imaginarynet.runtime import quiet_libraries, resolve_device

        quiet_libraries()
        self._torch = torch
        self.device = resolve_device(self.runtime.device)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.opts.llm)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(self.opts.llm)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load LLM {self.opts.llm!r}: {str(exc).splitlines()[0]}; for a machine "
                            f"without internet: imaginarynet download --llm {self.opts.llm}") from exc
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError(f"--llm {self.opts.llm} has no chat template: use an instruction-tuned (chat) model")
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token_id is None:  # scene blocks pad different instructions on the left
            self.tokenizer.pad_token_id = self.tokenizer.eos_token_id
        self.tokenizer.padding_side = "left"

    def instruction(self, names: list[str]) -> str:
        default = SCENE_INSTRUCTION if self.scenes.multi else DEFAULT_INSTRUCTION
        return render(self.opts.llm_instruction or default, names)

    def sample_block(self, cls: ImageClass, block: int) -> list[str]:
        texts = self._generate([self.instruction([cls.name])], BLOCK, block_seed(self.source, self.seed,
                                                                                  cls.label, block))
        return [c for c in (clean_caption(t, cls.name) for t in texts) if c]

    def sample_scene_block(self, cls: ImageClass, block: int, scenes: list[list[str]]) -> list[str | None]:
        texts = self._generate([self.instruction(names) for names in scenes], 1,
                               block_seed(self.source, self.seed, cls.label, block))
        return [clean_caption(t, names) for t, names in zip(texts, scenes)]

    def _generate(self, instructions: list[str], per_instruction: int, seed: int) -> list[str]:
        """Sampled replies, per_instruction for each instruction, in one seeded batched generate (left-padded
        when the chat texts differ in length)."""
        torch = self._torch
        texts = [self.tokenizer.apply_chat_template([{"role": "user", "content": i}], add_generation_prompt=True,
                                                    tokenize=False) for i in instructions]
        enc = self.tokenizer(texts, return_tensors="pt", add_special_tokens=False, padding=True)
        input_ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        devices = [torch.device(self.device).index or 0] if str(self.device).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, do_sample=True, top_k=TOP_K,
                                      max_new_tokens=self.opts.llm_max_tokens, num_return_sequences=per_instruction,
                                      pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.batch_decode(out[:, input_ids.shape[1]:], skip_special_tokens=True)

    def describe(self) -> dict:
        default = SCENE_INSTRUCTION if self.scenes.multi else DEFAULT_INSTRUCTION
        return {"prompts": "llm", "model": self.opts.llm, "instruction": self.opts.llm_instruction or default,
                "max_new_tokens": self.opts.llm_max_tokens, "block": BLOCK, "top_k": TOP_K}
