"""Defaults for any diffusers text-to-image pipeline, from its own files.

The pipeline class in model_index.json names the family (steps, guidance);
the native resolution is the denoiser's sample_size times the VAE's
down-sampling factor, as diffusers computes it. Turbo checkpoints are
distilled for 1-4 steps without guidance at 512 px.
"""
from __future__ import annotations

import json
from pathlib import Path

from imaginarynet.errors import UserError

# pipeline class -> (family, steps, guidance)
FAMILIES = {
    "StableDiffusionPipeline": ("sd", 50, 7.5),
    "StableDiffusionXLPipeline": ("sdxl", 50, 5.0),
    "PixArtAlphaPipeline": ("pixart", 20, 4.5),
    "PixArtSigmaPipeline": ("pixart", 20, 4.5),
    "StableDiffusion3Pipeline": ("sd3", 28, 7.0),
    "FluxPipeline": ("flux", 28, 3.5),
    "LatentConsistencyModelPipeline": ("lcm", 4, 8.5),
}
GENERIC = ("diffusers", 50, 7.5)
TURBO = {"steps": 1, "guidance": 0.0, "resolution": 512}


def _fetch(ref: str, filename: str) -> dict | None:
    local = Path(ref).expanduser()
    if local.is_dir():
        path = local / filename
        return json.loads(path.read_text()) if path.exists() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return json.loads(Path(hf_hub_download(ref, filename)).read_text())
    except EntryNotFoundError as exc:
        if isinstance(exc, LocalEntryNotFoundError):  # offline and not cached, not "no such file"
            raise _unavailable(ref, filename, exc) from exc
        return None
    except Exception as exc:
        raise _unavailable(ref, filename, exc) from exc


def _unavailable(ref: str, filename: str, exc: Exception) -> UserError:
    return UserError(f"--sd-model {ref}: cannot read its {filename} ({type(exc).__name__}); "
                     f"on a machine with internet run `imaginarynet download --sd-model {ref}`")


def family_defaults(ref: str) -> dict:
    index = _fetch(ref, "model_index.json")
    if index is None:
        raise UserError(f"--sd-model {ref}: not a diffusers pipeline (no model_index.json)")
    pipeline = index.get("_class_name", "")
    family, steps, guidance = FAMILIES.get(pipeline, GENERIC)
    denoiser = next((name for name in ("unet", "transformer") if name in index), None)
    sample = (_fetch(ref, f"{denoiser}/config.json") or {}).get("sample_size") if denoiser else None
    vae = _fetch(ref, "vae/config.json") if "vae" in index else None
    factor = 2 ** (len(vae["block_out_channels"]) - 1) if vae and "block_out_channels" in vae else 8
    if isinstance(sample, (list, tuple)):
        sample = sample[0]
    defaults = {"family": family, "pipeline": pipeline, "steps": steps, "guidance": guidance,
                "resolution": sample * factor if sample else 512}
    if "turbo" in ref.lower():
        defaults.update(TURBO, family=f"{family}-turbo")
    return defaults
