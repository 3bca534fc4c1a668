"""Stable Diffusion (and any diffusers text-to-image pipeline) as a backend.

Loads the pipeline with `from_pretrained` from a hub id or a local folder,
generates a whole batch per call with one torch.Generator per image, so an
image depends on its own seed and not on its neighbours in the batch.
"""
from __future__ import annotations

import warnings

from imaginarynet.backends.base import Generated, Request
from imaginarynet.backends.options import DiffusionOptions
from imaginarynet.errors import UserError, require
from imaginarynet.runtime import quiet_libraries, resolve_device

SCHEDULER_CLASSES = {
    "pndm": "PNDMScheduler",
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
}


def torch_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


OPTIONS = {  # --backend-option name -> what it switches on (all save memory on small GPUs)
    "vae_slicing": "decode the batch one image at a time",
    "vae_tiling": "decode each image in tiles",
    "attention_slicing": "compute attention in slices",
}


class StableDiffusionBackend:
    name = "stablediffusion"
    requires = ("torch", "diffusers", "transformers")

    @classmethod
    def validate_options(cls, options: dict) -> dict:
        for key, value in options.items():
            if key not in OPTIONS:
                raise UserError(f"stablediffusion: unknown --backend-option {key!r} "
                                f"(known: {', '.join(sorted(OPTIONS))})")
            if not isinstance(value, bool):
                raise UserError(f"stablediffusion: --backend-option {key} wants true or false, got {value!r}")
        return options

    def __init__(self, opts: DiffusionOptions, backend_options: dict, runtime):
        self.opts, self.backend_options, self.runtime = opts, backend_options, runtime
        self.device = resolve_device(runtime.device)
        self.pipe = None

    def load(self) -> None:
        require("torch", "sd", "the Stable Diffusion backend")
        diffusers = require("diffusers", "sd", "the Stable Diffusion backend")
        opts = self.opts
        self.dtype = torch_dtype(self.runtime.dtype, self.device)
        quiet_libraries()
        try:
            with warnings.catch_warnings():
                # newer diffusers renamed torch_dtype to dtype; the old name works everywhere
                warnings.simplefilter("ignore", FutureWarning)
                pipe = diffusers.AutoPipelineForText2Image.from_pretrained(opts.sd_model, torch_dtype=self.dtype)
        except (OSError, ValueError) as exc:
            raise UserError(
                f"cannot load Stable Diffusion model {opts.sd_model!r}: {str(exc).splitlines()[0]}"
            ) from exc
        if not opts.safety_checker and getattr(pipe, "safety_checker", None) is not None:
            pipe.safety_checker = None
        if opts.scheduler:
            sched_cls = getattr(diffusers, SCHEDULER_CLASSES[opts.scheduler])
            pipe.scheduler = sched_cls.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self._speed_up(pipe)
        for key, on in self.backend_options.items():
            if on:
                self._enable(key)

    def _speed_up(self, pipe) -> None:
        """CUDA fast paths: channels_last convolutions, TF32 matmuls, torch.compile, offload.
        Attention already runs through torch's scaled_dot_product_attention (diffusers' default)."""
        import torch

        run, cuda = self.runtime, self.device.startswith("cuda")
        if run.tf32 and cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if run.cpu_offload and cuda:
            pipe.enable_model_cpu_offload(device=self.device)  # moves each model to the GPU only while it runs
        else:
            pipe.to(self.device)
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        if cuda:
            for module in (getattr(pipe, "unet", None), getattr(pipe, "vae", None)):
                if module is not None:
                    module.to(memory_format=torch.channels_last)
        if run.compile and denoiser is not None:
            compiled = torch.compile(denoiser, mode="max-autotune-no-cudagraphs" if cuda else "default")
            setattr(pipe, "unet" if hasattr(pipe, "unet") else "transformer", compiled)

    def observed_fast_paths(self) -> dict:
        """What is really in effect, read off the loaded pipeline (not the options asked for)."""
        import torch

        pipe = self.pipe
        denoiser = getattr(pipe, "unet", None)
        if denoiser is None:  # a compiled module has no truth value: no `or` here
            denoiser = getattr(pipe, "transformer", None)
        base = getattr(denoiser, "_orig_mod", denoiser)  # under torch.compile's wrapper
        processors = sorted({type(p).__name__ for p in getattr(base, "attn_processors", {}).values()})
        convs = [p for p in base.parameters() if p.dim() == 4] if base is not None else []
        modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
        vae = getattr(pipe, "vae", None)
        return {
            "compile": type(denoiser).__name__ == "OptimizedModule",
            "attention": processors,  # AttnProcessor2_0: torch's scaled_dot_product_attention
            "sdpa": any(name.endswith("2_0") for name in processors),
            "channels_last": bool(convs) and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs),
            "cpu_offload": any(hasattr(m, "_hf_hook") for m in modules),
            "tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "vae_tiling": bool(getattr(vae, "use_tiling", False)),
            "vae_slicing": bool(getattr(vae, "use_slicing", False)),
        }

    def _enable(self, key: str) -> None:
        pipe = self.pipe
        target = pipe.vae if key.startswith("vae_") and hasattr(pipe, "vae") else pipe
        method = getattr(target, f"enable_{key.removeprefix('vae_')}", None) or getattr(pipe, f"enable_{key}", None)
        if method is None:
            raise UserError(f"stablediffusion: {type(pipe).__name__} does not support {key}")
        method()

    def generate(self, requests: list[Request]) -> list[Generated]:
        import numpy as np
        import torch
        from PIL import Image

        opts = self.opts
        # CPU generators: the initial noise is then the same on every device.
        generators = [torch.Generator("cpu").manual_seed(r.seed) for r in requests]
        negative = [opts.negative_prompt] * len(requests) if opts.negative_prompt else None
        with torch.inference_mode():
            out = self.pipe(
                prompt=[r.prompt for r in requests],
                negative_prompt=negative,
                num_inference_steps=opts.steps,
                guidance_scale=opts.guidance,
                height=opts.resolution,
                width=opts.resolution,
                generator=generators,
                output_type="np",
            )
        flags = getattr(out, "nsfw_content_detected", None) or [False] * len(requests)
        results = []
        for pixels, flagged in zip(out.images, flags):
            if flagged:
                results.append(Generated(None))
                continue
            arr = (np.clip(pixels, 0.0, 1.0) * 255.0).round().astype(np.uint8)
            results.append(Generated(Image.fromarray(arr, "RGB")))
        return results

    def describe(self) -> dict:
        info = {"backend": self.name, "model": self.opts.sd_model, "device": self.device,
                "family": self.opts.family, "options": self.backend_options}
        if self.pipe is not None:
            info.update(pipeline=type(self.pipe).__name__, scheduler=type(self.pipe.scheduler).__name__,
                        fast_paths=self.observed_fast_paths(),
                        dtype=str(self.dtype).replace("torch.", ""),
                        safety_checker=getattr(self.pipe, "safety_checker", None) is not None)
        return info
