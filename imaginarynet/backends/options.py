"""The text-to-image backends' options: which backend, and the options of the two built-in ones."""
from __future__ import annotations

from dataclasses import dataclass

from imaginarynet.errors import UserError
from imaginarynet.options import StageOptions, check_model_ref, option

SCHEDULERS = ("pndm", "ddim", "dpm++", "euler", "euler-a")
DALLE = "dalle-mini"


@dataclass(frozen=True)
class BackendOptions(StageOptions):
    group = "backend"
    backend: str = option("stablediffusion", "--backend", help=(
        "Text-to-image backend: stablediffusion, dalle-mini, an installed plugin's name (see `imaginarynet "
        "backends`) or module:Class."))
    backend_options: dict = option(None, "--backend-option", "backend_option", factory=dict, multiple=True,
                                   metavar="KEY=VALUE",
                                   help="Option for the backend (repeatable); values are JSON or plain strings.")

    def check(self, cfg) -> dict:
        from imaginarynet.backends.base import check_backend_options

        return {"backend_options": check_backend_options(cfg)}  # also: unknown backend, broken plugin

    def models(self, cfg) -> list[tuple[str, str, str]]:
        if self.backend in ("stablediffusion", DALLE):
            return []  # their own options' classes say
        return [("generator", f"plugin backend {self.backend}", "plugin")]


@dataclass(frozen=True)
class DiffusionOptions(StageOptions):
    """Any diffusers pipeline (--backend stablediffusion); plugins may read the generic sampling options."""

    group = "backend"
    sd_model: str = option("stable-diffusion-v1-5/stable-diffusion-v1-5", "--sd-model",
                           help="diffusers text-to-image pipeline: hub id or local folder.")
    steps: int | None = option(None, "--steps", type=int, help=(
        "Denoising steps [default: the model family's, e.g. 50 for SD, 1 for Turbo]."))
    guidance: float | None = option(None, "--guidance", type=float, help=(
        "Classifier-free guidance scale [default: the family's, e.g. 7.5 for SD 1.x, 5.0 for SDXL, 0 for Turbo]."))
    resolution: int | None = option(None, "--resolution", type=int, help=(
        "Image size in pixels, a multiple of 8 [default: the model's native size, e.g. 512 for SD 1.5, 1024 for "
        "SDXL]."))
    negative_prompt: str | None = option(None, "--negative-prompt", help="Negative prompt for every image.")
    scheduler: str | None = option(None, "--scheduler", choices=SCHEDULERS,
                                   help="Replace the model's scheduler [default: the model's own].")
    safety_checker: bool = option(True, "--no-safety-checker", "no_safety_checker", is_flag=True,
                                  help="Disable the model's safety checker (flagged images are otherwise dropped).")
    family: dict = option(None, factory=dict, data=False)  # what the model's files said about its defaults

    def active(self, cfg) -> bool:
        return cfg.backend != DALLE

    def check(self, cfg) -> dict:
        if self.resolution is not None and (self.resolution < 8 or self.resolution % 8):
            raise UserError(f"--resolution must be a positive multiple of 8 (got {self.resolution})")
        if self.steps is not None and self.steps < 1:
            raise UserError(f"--steps must be at least 1 (got {self.steps})")
        if self.guidance is not None and self.guidance < 0:
            raise UserError(f"--guidance must not be negative (got {self.guidance})")
        if cfg.backend == "stablediffusion":
            check_model_ref("--sd-model", self.sd_model)
        return {}

    def defaults(self, cfg) -> dict:
        """Steps, guidance and resolution the user left unset come from the model family."""
        family = self._family(cfg.dry_run) if cfg.backend == "stablediffusion" else {}
        defaults = family or {"steps": 50, "guidance": 7.5, "resolution": 512}
        filled = {key: defaults[key] for key in ("steps", "guidance", "resolution") if getattr(self, key) is None}
        return {"family": family, **filled}

    def _family(self, dry_run: bool) -> dict:
        from imaginarynet.backends.sd_families import GENERIC, family_defaults

        try:
            return family_defaults(self.sd_model)
        except UserError:
            if not dry_run:
                raise
            return {"steps": GENERIC[1], "guidance": GENERIC[2], "resolution": 512}  # a plan, not a run

    def models(self, cfg) -> list[tuple[str, str, str]]:
        return [("generator", self.sd_model, "diffusers")] if cfg.backend == "stablediffusion" else []


@dataclass(frozen=True)
class DalleOptions(StageOptions):
    """DALL·E mini / mega on our JAX code (--backend dalle-mini)."""

    group = "backend"
    dalle_model: str = option("dalle-mini/dalle-mega", "--dalle-model",
                              help="DalleBart checkpoint: hub id or local folder.")
    vqgan_model: str = option("dalle-mini/vqgan_imagenet_f16_16384", "--vqgan-model",
                              help="VQGAN checkpoint: hub id or local folder.")
    condition_scale: float = option(10.0, "--condition-scale", type=float,
                                    help="DALL·E mini super-conditioning scale.")
    top_k: int | None = option(None, "--top-k", type=int,
                               help="DALL·E mini top-k sampling [default: the model config's].")
    top_p: float | None = option(None, "--top-p", type=float, help="DALL·E mini nucleus sampling.")
    temperature: float | None = option(None, "--temperature", type=float,
                                       help="DALL·E mini sampling temperature.")

    def active(self, cfg) -> bool:
        return cfg.backend == DALLE

    def check(self, cfg) -> dict:
        if self.temperature is not None and self.temperature <= 0:
            raise UserError(f"--temperature must be above 0 (got {self.temperature})")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be within (0, 1] (got {self.top_p})")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"--top-k must be at least 1 (got {self.top_k})")
        if self.condition_scale < 0:
            raise UserError(f"--condition-scale must not be negative (got {self.condition_scale})")
        if self.active(cfg):
            check_model_ref("--dalle-model", self.dalle_model)
            check_model_ref("--vqgan-model", self.vqgan_model)
        return {}

    def models(self, cfg) -> list[tuple[str, str, str]]:
        if not self.active(cfg):
            return []
        return [("generator", self.dalle_model, "hub"), ("image decoder", self.vqgan_model, "hub")]
