"""`--backend dalle-mini`: DalleBart samples 256 image tokens per prompt, the VQGAN decodes them.

Each image gets its own PRNG key chain from its attempt seed, so an image does not
depend on the other prompts in its batch. Batches are padded to --batch-size so
the sampler compiles once. With several local accelerators the batch is split
across them (data parallel, parameters replicated).
"""
from __future__ import annotations

import sys
from pathlib import Path

from imaginarynet.backends.base import Generated, Request
from imaginarynet.backends.options import DalleOptions
from imaginarynet.errors import UserError, require

DALLE_FILES = ["config.json", "flax_model.msgpack", "*.json", "*.txt"]
WORDS_FILE = "enwiki-words-frequency.txt"


class DalleMiniBackend:
    name = "dalle-mini"
    requires = ("jax", "flax", "transformers", "ftfy", "emoji", "unidecode")
    options_class = DalleOptions

    def __init__(self, opts: DalleOptions, backend_options: dict, runtime):
        self.opts, self.runtime = opts, runtime
        self.params = None

    def load(self) -> None:
        jax = require("jax", "dalle", "the DALL·E mini backend")
        require("flax", "dalle", "the DALL·E mini backend")
        transformers = require("transformers", "dalle", "the DALL·E mini backend")
        from imaginarynet.backends.dalle_mini import dallebart, vqgan
        from imaginarynet.backends.dalle_mini.loading import config_from, load_params, resolve_folder
        from imaginarynet.backends.dalle_mini.text import TextNormalizer
        from imaginarynet.runtime import quiet_libraries

        quiet_libraries()
        # The original's key stream (split/categorical) is the non-partitionable threefry.
        jax.config.update("jax_threefry_partitionable", False)
        self.jax, self._dallebart, self._vqgan = jax, dallebart, vqgan
        self.device = self._device(jax)
        dtype = self._dtype(jax)
        bart_dir = resolve_folder(self.opts.dalle_model, "--dalle-model", DALLE_FILES)
        vq_dir = resolve_folder(self.opts.vqgan_model, "--vqgan-model", ["config.json", "flax_model.msgpack"])
        self.bart_cfg = config_from(dallebart.DalleBartConfig, bart_dir)
        self.bart_cfg.check_supported()
        self.vq_cfg = config_from(vqgan.VQGANConfig, vq_dir)
        if self.vq_cfg.grid ** 2 != self.bart_cfg.image_length:
            raise UserError(f"--vqgan-model decodes {self.vq_cfg.grid ** 2} tokens per image but "
                            f"--dalle-model makes {self.bart_cfg.image_length}")
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(bart_dir))
        except (OSError, ValueError) as exc:
            raise UserError(f"--dalle-model: no usable tokenizer in {bart_dir}: {exc}") from exc
        self.normalize = TextNormalizer(lambda: self._words_file(bart_dir)) if self.bart_cfg.normalize_text else None
        with jax.default_device(self.device):
            params = dallebart.stack_unscanned(load_params(bart_dir), self.bart_cfg)
            self.params = self._place(dallebart.cast_params(params, dtype))
            self.vq_params = self._place(dallebart.cast_params(load_params(vq_dir), dtype))
        self.dtype = dtype

    def _device(self, jax):
        want = self.runtime.device or ""
        kind = "cpu" if want.startswith("cpu") else ("gpu" if want.startswith("cuda") else None)
        try:
            devices = jax.devices(kind) if kind else jax.devices()
        except RuntimeError as exc:
            raise UserError(f"--device {want}: JAX sees no such device ({exc})") from exc
        index = int(want.split(":")[1]) if ":" in want else 0
        if index >= len(devices):
            raise UserError(f"--device {want}: JAX sees only {len(devices)} {kind or 'default'} device(s)")
        self.local_devices = [d for d in jax.local_devices() if d.platform == devices[index].platform]
        if ":" in want:
            self.local_devices = [devices[index]]
        return devices[index]

    def _dtype(self, jax):
        import jax.numpy as jnp

        name = self.runtime.dtype
        if name == "auto":
            name = "fp32" if self.device.platform == "cpu" else "fp16"
        return {"fp32": jnp.float32, "fp16": jnp.float16, "bf16": jnp.bfloat16}[name]

    def _words_file(self, bart_dir: Path):
        local = Path(bart_dir) / WORDS_FILE
        if local.exists():
            return local
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download("dalle-mini/dalle-mini", filename=WORDS_FILE))
        except Exception:
            if not self.runtime.quiet:
                print(f"warning: {WORDS_FILE} is not available offline; #hashtags in prompts are not split into words",
                      file=sys.stderr)
            return None

    def _sharding(self):
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(self.local_devices, ("data",))
        return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))

    def _place(self, tree):
        if len(self.local_devices) > 1:
            return self.jax.device_put(tree, self._sharding()[0])
        return self.jax.device_put(tree, self.device)

    def _tokenize(self, texts):
        import numpy as np

        enc = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.bart_cfg.max_text_length,
                             return_tensors="np")
        return enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)

    def tokens(self, requests: list[Request]):
        """(B, image_length) image tokens, one PRNG key chain per request."""
        import numpy as np

        jax, db = self.jax, self._dallebart
        size = max(self.runtime.batch_size, len(requests))
        padded = requests + [requests[-1]] * (size - len(requests))  # one batch shape, one compilation
        texts = [self.normalize(r.prompt) if self.normalize else r.prompt for r in padded]
        ids, mask = self._tokenize(texts)
        uncond_ids, uncond_mask = self._tokenize([""])  # the original: empty prompt, not normalised
        keys = np.stack([np.asarray(jax.random.PRNGKey(r.seed)) for r in padded])
        sampling = db.Sampling(do_sample=True, condition_scale=self.opts.condition_scale, top_k=self.opts.top_k,
                               top_p=self.opts.top_p, temperature=self.opts.temperature, per_row_keys=True)
        inputs = (ids, mask, keys)
        if len(self.local_devices) > 1 and size % len(self.local_devices) == 0:
            inputs = jax.device_put(inputs, self._sharding()[1])
        with jax.default_device(self.device):
            seqs = db.generate(self.params, self.bart_cfg, inputs[0], inputs[1], inputs[2], sampling,
                               uncond_ids, uncond_mask)
        return np.asarray(seqs)[: len(requests), 1:]

    def generate(self, requests: list[Request]) -> list[Generated]:
        import numpy as np
        from PIL import Image

        tokens = np.clip(self.tokens(requests), 0, self.vq_cfg.n_embed - 1)
        with self.jax.default_device(self.device):
            pixels = self._vqgan.decode_code(self.vq_params, self.vq_cfg, tokens)
        return [Generated(Image.fromarray(img, "RGB")) for img in self._vqgan.to_uint8(pixels)]

    def describe(self) -> dict:
        info = {"backend": self.name, "model": self.opts.dalle_model, "vqgan": self.opts.vqgan_model,
                "condition_scale": self.opts.condition_scale, "top_k": self.opts.top_k, "top_p": self.opts.top_p,
                "temperature": self.opts.temperature}
        if self.params is not None:
            info.update(device=str(self.device), dtype=str(self.dtype.__name__ if hasattr(self.dtype, "__name__")
                                                             else self.dtype),
                        image_size=self.vq_cfg.resolution, devices=len(self.local_devices))
        return info
