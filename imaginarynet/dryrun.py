"""`--dry-run`: what a run would do, without loading any model."""
from __future__ import annotations

from pathlib import Path

from imaginarynet.outdir import OutputDir

JPEG_BYTES_PER_PIXEL = 0.4  # JPEG quality 95 of generated photos, measured order of magnitude


def _hub_cached(ref: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(ref, filename), str)
    except Exception:
        return False


def model_status(ref: str, filename: str = "config.json") -> str:
    path = ref[len("local-dir:"):] if ref.startswith("local-dir:") else ref
    if Path(path).expanduser().exists():
        return "local"
    return "in the local cache" if _hub_cached(ref, filename) else "NOT in the local cache (imaginarynet download)"


def models_of(cfg) -> list[tuple[str, str, str]]:
    """(role, reference, status) of every model the run would load."""
    status = {"diffusers": lambda ref: model_status(ref, "model_index.json"), "hub": model_status,
              "open_clip": lambda ref: clip_status(cfg), "plugin": lambda ref: "-"}
    return [(role, ref, status[kind](ref)) for role, ref, kind in cfg.models()]


def clip_status(cfg) -> str:
    """Without importing open_clip (and torch with it): a dry run loads no model library."""
    from imaginarynet.filters.clip import model_spec

    name, tag = model_spec(cfg.clip_model, cfg.clip_pretrained)
    if tag is None or Path(tag).expanduser().exists():
        return model_status(name if tag is None else tag)
    return f"open_clip weights {tag!r}, not checked in a dry run (imaginarynet download fetches them)"


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def describe_plan(cfg) -> str:
    size = 256 if cfg.backend == "dalle-mini" else cfg.resolution
    total = sum(cfg.quotas)
    width = max(len(c.label) for c in cfg.classes)
    lines = [f"Plan for {cfg.outputdir} (dry run: nothing is loaded or written)", "",
             f"{'class':<{width}}  display name / quota / attempts"]
    for c, q in zip(cfg.classes, cfg.quotas):
        cap = cfg.max_attempts_for(q)
        attempts = f"{q}" if not cfg.clip else f"{q} or more, at most {cap}"
        lines.append(f"{c.label:<{width}}  {c.name!r} / {q} / {attempts}")
    lines += ["", f"images: {total} at {size}x{size} px, batch size {cfg.batch_size}, seed {cfg.seed}"]
    if cfg.backend != "dalle-mini":
        lines.append(f"sampling: {cfg.steps} steps, guidance {cfg.guidance}, "
                     f"scheduler {cfg.scheduler or 'model default'}"
                     + (f" (family {cfg.family.get('family')})" if cfg.family.get("family") else ""))
    if cfg.scenes:
        from imaginarynet.scenes import render, scene_names

        first = cfg.classes[0]
        example = render(cfg.template, scene_names(cfg, first, 0))
        lines.append(f"scenes: {cfg.objects_per_image} objects per image"
                     + (", weighted by --cooccurrence" if cfg.cooccurrence else "")
                     + f"; e.g. {first.label} attempt 0: {example!r}")
    lines += ["", "models:"] + [f"  {role:<13} {ref}  [{status}]" for role, ref, status in models_of(cfg)]
    disk = total * size * size * JPEG_BYTES_PER_PIXEL
    out = OutputDir(cfg.outputdir)
    lines += ["", "output:",
              f"  {out.voc}/{{Annotations,JPEGImages,ImageSets/Main}}  (ids 000001..{total:06d})",
              f"  {out.metadata}, {out.prompt_list('<label>').relative_to(out.root)}, {out.run_json.name}, "
              f"{(out.report / 'index.html').relative_to(out.root)}",
              f"  estimated disk use: {human_bytes(disk)}"]
    return "\n".join(lines)
