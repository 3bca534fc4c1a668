"""`imaginarynet download`: fetch every model a run with the same options needs into the caches,
so that a later run on a node without internet (HF_HUB_OFFLINE=1) finds them."""
from __future__ import annotations

from pathlib import Path

from imaginarynet.errors import UserError, require

HUB_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "*.msgpack"]


def _is_local(ref: str) -> bool:
    ref = ref[len("local-dir:"):] if ref.startswith("local-dir:") else ref
    return Path(ref).expanduser().exists()


def _fail(what: str, ref: str, exc: Exception) -> UserError:
    return UserError(f"cannot download {what} {ref!r}: {type(exc).__name__} (offline? HF_HUB_OFFLINE is "
                     f"{'set' if _offline() else 'not set'})")


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def download_models(cfg, cache_dir: Path | None, log=print) -> list[str]:
    """Returns one line per model: where it is now."""
    from imaginarynet.runtime import quiet_libraries

    quiet_libraries()
    hub = require("huggingface_hub", "sd", "imaginarynet download")
    done = []
    for role, ref, kind in cfg.models():
        if kind == "open_clip":
            done.append(_download_clip(cfg, cache_dir, role))
            continue
        if kind == "plugin":
            done.append(f"{role}: {ref} (a plugin downloads its own models)")
            continue
        if _is_local(ref):
            done.append(f"{role}: {ref} is a local folder, nothing to download")
            continue
        log(f"downloading {role} {ref} ...")
        try:
            if kind == "diffusers":
                diffusers = require("diffusers", "sd", "imaginarynet download")
                path = diffusers.DiffusionPipeline.download(ref, cache_dir=cache_dir)
            else:
                path = hub.snapshot_download(ref, allow_patterns=HUB_PATTERNS, cache_dir=cache_dir)
        except Exception as exc:
            raise _fail(role, ref, exc) from exc
        done.append(f"{role}: {ref} -> {path}")
    if cfg.backend == "dalle-mini" and not _is_local(cfg.dalle_model):
        from imaginarynet.backends.dalle_mini.backend import WORDS_FILE

        try:  # the hashtag word list of the text normaliser
            hub.hf_hub_download("dalle-mini/dalle-mini", WORDS_FILE, cache_dir=cache_dir)
        except Exception as exc:
            raise _fail("word list", WORDS_FILE, exc) from exc
    return done


def _download_clip(cfg, cache_dir: Path | None, role: str) -> str:
    from imaginarynet.filters.clip import model_spec

    name, tag = model_spec(cfg.clip_model, cfg.clip_pretrained)
    if tag is None or _is_local(tag):
        return f"{role}: {tag or name} is local, nothing to download"
    open_clip = require("open_clip", "clip", "imaginarynet download")
    pretrained = open_clip.get_pretrained_cfg(name, tag)
    if not pretrained:
        raise UserError(f"--clip-pretrained {tag!r} is not a known tag for {name}")
    try:
        path = open_clip.download_pretrained(pretrained, cache_dir=str(cache_dir) if cache_dir else None)
    except Exception as exc:
        raise _fail(role, f"{name}/{tag}", exc) from exc
    return f"{role}: {name} / {tag} -> {path}"
