"""The stream contract shared by the sampled prompt sources (GPT-2, instruction-tuned LLMs).

Prompts of a class form a deterministic stream produced in fixed blocks of BLOCK samples; block j of
class c is sampled with a seed from (source, run seed, c, j), and the stream keeps the first occurrence
of each distinct prompt. So prompt k depends only on (seed, class, k, model), never on the batch size
or on which worker asks. Finished blocks are cached in OUT/.state/prompts/ so a resumed run does not
sample them again. After MAX_DRY_BLOCKS blocks in a row without a new prompt the class falls back to the
template prompt, with one warning.

Scenes (--objects-per-image above 1) give every attempt its own prompted classes, so a scene block j
holds attempts k = j*BLOCK .. j*BLOCK+BLOCK-1 of a class, one sample each from its own prefix or
instruction, all in one batched generation seeded from (source, run seed, c, j). Prompt k is its
sample, or the template prompt if the sample was unusable.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from imaginarynet.classes import ImageClass
from imaginarynet.fsutil import atomic_write_text
from imaginarynet.scenes import render

BLOCK = 16  # samples per block (one batched generation)
MAX_DRY_BLOCKS = 4


def block_seed(source: str, run_seed: int, label: str, block: int) -> int:
    digest = hashlib.sha256(f"{source}\x00{run_seed}\x00{label}\x00{block}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFFFFFFFFFF


class BlockStream:
    """A prompt source whose subclasses only say how to sample one block (`sample_block`)."""

    source = "stream"  # in the block seeds and the cache file names
    who = "the prompt model"  # in the warning

    def __init__(self, opts, scenes, runtime, state_dir: Path):
        self.opts, self.scenes, self.runtime = opts, scenes, runtime  # PromptOptions, Scenes, Runtime
        self.seed = scenes.seed
        self.cache_dir = Path(state_dir) / "prompts"
        self.streams: dict[str, dict] = {}
        self.warned = False

    def sample_block(self, cls: ImageClass, block: int) -> list[str]:
        raise NotImplementedError

    def sample_scene_block(self, cls: ImageClass, block: int, scenes: list[list[str]]) -> list[str | None]:
        """One prompt (or None: unusable) per scene, given as display names with the primary first."""
        raise NotImplementedError

    def cache_path(self, cls: ImageClass) -> Path:
        return self.cache_dir / f"{cls.label}.json"

    def _stream(self, cls: ImageClass) -> dict:
        if cls.label not in self.streams:
            path = self.cache_path(cls)
            stream = {"prompts": [], "blocks": 0, "dry": 0, "fallback": False}
            if path.exists():
                try:
                    stream = json.loads(path.read_text())
                except ValueError:
                    pass  # a cache is only a shortcut: sample again
            self.streams[cls.label] = stream
        return self.streams[cls.label]

    def prompts(self, cls: ImageClass, ks: list[int]) -> list[str]:
        if self.scenes.multi:
            return self._scene_prompts(cls, ks)
        stream = self._stream(cls)
        need = max(ks) + 1
        grew = False
        while len(stream["prompts"]) < need and not stream["fallback"]:
            new = 0
            seen = set(stream["prompts"])
            for text in self.sample_block(cls, stream["blocks"]):
                if text not in seen:
                    seen.add(text)
                    stream["prompts"].append(text)
                    new += 1
            stream["blocks"] += 1
            stream["dry"] = 0 if new else stream["dry"] + 1
            stream["fallback"] = stream["dry"] >= MAX_DRY_BLOCKS
            grew = True
        if grew:
            atomic_write_text(self.cache_path(cls), json.dumps(stream))
        if stream["fallback"] and len(stream["prompts"]) < need and not self.warned and not self.runtime.quiet:
            self.warned = True
            print(f"warning: {self.who} gives no new prompt for {cls.label!r}; "
                  "using the template prompt for the remaining attempts", file=sys.stderr)
        template = render(self.opts.template, [cls.name])
        return [stream["prompts"][k] if k < len(stream["prompts"]) else template for k in ks]

    def _scene_prompts(self, cls: ImageClass, ks: list[int]) -> list[str]:
        path = self.cache_path(cls).with_suffix(".scenes.json")
        key = f"scenes:{cls.label}"
        if key not in self.streams:
            self.streams[key] = {}
            if path.exists():
                try:
                    self.streams[key] = json.loads(path.read_text())
                except ValueError:
                    pass
        blocks = self.streams[key]
        grew = False
        for j in sorted({k // BLOCK for k in ks}):
            if str(j) not in blocks:
                scenes = [self.scenes.names(cls, k) for k in range(j * BLOCK, (j + 1) * BLOCK)]
                blocks[str(j)] = self.sample_scene_block(cls, j, scenes)
                grew = True
        if grew:
            atomic_write_text(path, json.dumps(blocks))
        out = []
        for k in ks:
            text = blocks[str(k // BLOCK)][k % BLOCK]
            if text is None:
                if not self.warned and not self.runtime.quiet:
                    self.warned = True
                    print(f"warning: {self.who} gave no usable prompt for some scenes of {cls.label!r}; "
                          "using the template prompt for those attempts", file=sys.stderr)
                text = render(self.opts.template, self.scenes.names(cls, k))
            out.append(text)
        return out
