"""Every command-line flag, declared once, in one group per stage.

Commands take whole groups or single flags (`flags("quiet")`), overriding a default or the help text where a
command gives the flag a narrower meaning; so `--clip-pretrained` means the same in generate, annotate,
export and download, and its help is written once. Defaults and choice lists come from config.py.
"""
from __future__ import annotations

from pathlib import Path

import click

from imaginarynet.config import DEFAULTS as D
from imaginarynet.config import DTYPES, ENGINES, SCHEDULERS


def _flag(*decls, **kw) -> tuple[tuple, dict]:
    return decls, kw


# What to make and where: sizes, classes, output folder, seed.
DATASET = {
    "num": _flag("--num", type=int, help="Total images in the dataset, split evenly across classes "
                     "(earlier classes get the remainder). Default: 100 per class."),
    "per_class": _flag("--per-class", type=int, help="Images per class (instead of --num)."),
    "classfile": _flag("--classfile", default=D["classfile"], show_default=True,
          help="Class file path, or a bundled name: voc, coco."),
    "outputdir": _flag("--outputdir", default=D["outputdir"], show_default=True, type=click.Path(path_type=Path),
          help="Output directory (a VOCdevkit root)."),
    "seed": _flag("--seed", type=int, default=D["seed"], show_default=True, help="Run seed."),
}

# Prompt sources (prompts/): the template, GPT-2 continuations, chat-model captions.
PROMPTS = {
    "template": _flag("--template", help="Prompt template; {name} is the class display name, {names} the "
                     "English list of every prompted class with articles ('a dog, a cat and an apple') "
                     "[default: 'A photo of a {name}.'; 'A photo of {names}.' with --objects-per-image above 1]."),
    "gpt": _flag("--gpt", is_flag=True, help="Expand prompts with GPT-2."),
    "gpt_model": _flag("--gpt-model", default=D["gpt_model"], show_default=True, help="GPT-2 hub id or local folder."),
    "gpt_max_tokens": _flag("--gpt-max-tokens", type=int, default=D["gpt_max_tokens"], show_default=True,
          help="Length of an expanded prompt in GPT-2 tokens, template included."),
    "llm": _flag("--llm", metavar="ID|DIR", help="Captions from an instruction-tuned chat model (transformers, "
                     "with a chat template), e.g. Qwen/Qwen2.5-0.5B-Instruct; instead of --gpt."),
    "llm_instruction": _flag("--llm-instruction", help="Instruction for --llm; {name} is the class display name "
                     "[default: asks for one realistic photo caption containing the name]."),
    "llm_max_tokens": _flag("--llm-max-tokens", type=int, default=D["llm_max_tokens"], show_default=True,
          help="New tokens per caption at most."),
}

# Scenes (scenes.py): several classes per image.
SCENES = {
    "objects_per_image": _flag("--objects-per-image", default=D["objects_per_image"], show_default=True,
                               metavar="N|MIN-MAX",
          help="Classes prompted per image: the image's own (primary) class plus extra classes drawn "
                     "per attempt from the seed; every prompted class must pass --clip / --detector and "
                     "becomes a label."),
    "cooccurrence_file": _flag("--cooccurrence", "cooccurrence_file", metavar="FILE",
          help="JSON {label: {label: weight}} "
                     "biasing which classes share an image: missing pairs weigh 1, 0 forbids a pair."),
}

# The text-to-image backend (backends/): which one, and the options of the built-in ones.
BACKEND = {
    "backend": _flag("--backend", default=D["backend"], show_default=True,
          help="Text-to-image backend: stablediffusion, dalle-mini, an installed plugin's name "
                     "(see `imaginarynet backends`) or module:Class."),
    "backend_option": _flag("--backend-option", "backend_option", multiple=True, metavar="KEY=VALUE",
          help="Option for the backend (repeatable); values are JSON or plain strings."),
    "sd_model": _flag("--sd-model", default=D["sd_model"], show_default=True,
          help="diffusers text-to-image pipeline: hub id or local folder."),
    "steps": _flag("--steps", type=int, help="Denoising steps [default: the model family's, e.g. 50 for SD, "
                     "1 for Turbo]."),
    "guidance": _flag("--guidance", type=float, help="Classifier-free guidance scale [default: the family's, "
                     "e.g. 7.5 for SD 1.x, 5.0 for SDXL, 0 for Turbo]."),
    "resolution": _flag("--resolution", type=int, help="Image size in pixels, a multiple of 8 [default: the model's "
                     "native size, e.g. 512 for SD 1.5, 1024 for SDXL]."),
    "negative_prompt": _flag("--negative-prompt", help="Negative prompt for every image."),
    "scheduler": _flag("--scheduler", type=click.Choice(SCHEDULERS),
          help="Replace the model's scheduler [default: the model's own]."),
    "no_safety_checker": _flag("--no-safety-checker", "no_safety_checker", is_flag=True,
          help="Disable the model's safety checker (flagged images are otherwise dropped)."),
    "dalle_model": _flag("--dalle-model", default=D["dalle_model"], show_default=True,
          help="DalleBart checkpoint: hub id or local folder."),
    "vqgan_model": _flag("--vqgan-model", default=D["vqgan_model"], show_default=True,
          help="VQGAN checkpoint: hub id or local folder."),
    "condition_scale": _flag("--condition-scale", type=float, default=D["condition_scale"], show_default=True,
          help="DALL·E mini super-conditioning scale."),
    "top_k": _flag("--top-k", type=int, help="DALL·E mini top-k sampling [default: the model config's]."),
    "top_p": _flag("--top-p", type=float, help="DALL·E mini nucleus sampling."),
    "temperature": _flag("--temperature", type=float, help="DALL·E mini sampling temperature."),
}

# The CLIP filter (filters/clip.py).
FILTER = {
    "clip": _flag("--clip", is_flag=True, help="Keep only images CLIP assigns to their class."),
    "clip_model": _flag("--clip-model", default=D["clip_model"], show_default=True, help="open_clip architecture."),
    "clip_pretrained": _flag("--clip-pretrained", default=D["clip_pretrained"], show_default=True,
          help="open_clip weights: a tag, a local weights file or local-dir:FOLDER."),
    "threshold": _flag("--threshold", type=float, default=D["threshold"], show_default=True,
          help="Minimum CLIP probability of the image's own class."),
    "cpu": _flag("--cpu", is_flag=True, help="Run the CLIP filter on the CPU (keeps GPU memory for the "
                     "generator)."),
}

# The open-vocabulary detector (detectors/).
DETECTOR = {
    "detector": _flag("--detector", metavar="ID|DIR", help="Open-vocabulary detector for boxes: a transformers "
                     "zero-shot detector, e.g. google/owlv2-base-patch16-ensemble. Keeps only images with a box "
                     "of their own class."),
    "box_threshold": _flag("--box-threshold", type=float, help="Minimum detector score of a box [default: the "
                     "family's, 0.1 for OWLv2/OWL-ViT, 0.35 for Grounding DINO]."),
    "nms_iou": _flag("--nms-iou", type=float, default=D["nms_iou"], show_default=True,
          help="IoU above which class-wise NMS drops the weaker of two boxes."),
    "label_other_detections": _flag("--label-other-detections", is_flag=True,
          help="Also write boxes of classes other than the "
                     "prompted one as labels (always kept in metadata.jsonl)."),
}

# Near-duplicate removal (dedup.py).
DEDUP = {
    "dedup": _flag("--dedup", type=float, metavar="T", help="Reject an image whose CLIP embedding has cosine "
                     ">= T with an earlier kept image of its class (refilled; decided in attempt order)."),
}

# Refills and shortfalls.
QUOTAS = {
    "max_attempts": _flag("--max-attempts", type=int, help="Attempt cap per class when images are rejected (CLIP, "
                     "safety checker) [default: 4x quota]."),
    "keep_rejected": _flag("--keep-rejected", is_flag=True, help="Also save CLIP-rejected images under OUT/rejected/."),
    "strict": _flag("--strict", is_flag=True, help="Exit 1 when a class cannot fill its quota."),
}

# Devices, precision and workers (runtime.py, executors/).
COMPUTE = {
    "batch_size": _flag("--batch-size", type=int, default=D["batch_size"], show_default=True,
          help="Images per model call."),
    "dtype": _flag("--dtype", type=click.Choice(DTYPES), default=D["dtype"], show_default=True,
          help="auto: fp16 on CUDA, fp32 on CPU."),
    "compile": _flag("--compile", "compile", is_flag=True,
          help="torch.compile the denoiser (minutes of warm-up, then faster; for long runs)."),
    "cpu_offload": _flag("--cpu-offload", is_flag=True, help="Keep models on the CPU until used (GPUs with ~8 GB)."),
    "tf32": _flag("--tf32", is_flag=True, help="Allow TF32 matmuls on Ampere and newer GPUs."),
    "device": _flag("--device", help="torch/jax device for everything, e.g. cuda:0 or cpu [default: cuda if "
                     "present]."),
    "workers": _flag("--workers", type=int, default=D["workers"], show_default=True,
          help="Worker processes on --device (the CPU, for instance), each pulling work units."),
    "devices": _flag("--devices", help="One worker per device: cuda:0,cuda:1,... or 'all'."),
    "engine": _flag("--engine", type=click.Choice(ENGINES), default=D["engine"], show_default=True,
          help="Where workers run: local processes, or Ray actors (pip install 'imaginarynet[ray]')."),
    "ray_address": _flag("--ray-address", help="Ray cluster to join (default: start a local one)."),
    "shard": _flag("--shard", metavar="I/N", help="Run slice I of N (a job array task); the last slice to "
                     "finish assembles the dataset."),
}

# The run itself: the folder's previous run, output on the terminal, the report.
RUN = {
    "overwrite": _flag("--overwrite", is_flag=True, help="Delete a previous run in --outputdir and start again."),
    "quiet": _flag("--quiet", "-q", is_flag=True, help="No progress bar or summary table."),
    "log_json": _flag("--log-json", type=click.Path(path_type=Path, dir_okay=False),
          help="Append machine-readable events to FILE: one JSON line per batch."),
    "no_report": _flag("--no-report", "no_report", is_flag=True, help="Skip OUT/report/index.html at the end."),
    "dry_run": _flag("--dry-run", is_flag=True, help="Print the plan (quotas, models, layout, disk) and load nothing."),
}

# The options of other commands (a flag above keeps its one declaration)
OTHER = {
    "split": _flag("--split", default="trainval", show_default=True, help="ImageSets/Main split to read."),
}

GROUPS = {"dataset": DATASET, "prompts": PROMPTS, "scenes": SCENES, "backend": BACKEND, "filter": FILTER,
          "detector": DETECTOR, "dedup": DEDUP, "quotas": QUOTAS, "compute": COMPUTE, "run": RUN}
FLAGS = {dest: spec for group in (*GROUPS.values(), OTHER) for dest, spec in group.items()}


def flags(*names: str, **overrides: dict):
    """Decorator adding these flags (a group's name adds the whole group) in the order given; `overrides`
    maps a flag to the click keywords this command changes (a default, the help text)."""
    dests = [d for name in names for d in (GROUPS[name] if name in GROUPS else [name])]

    def apply(f):
        for dest in reversed(dests):
            decls, kw = FLAGS[dest]
            f = click.option(*decls, **{**kw, **overrides.get(dest, {})})(f)
        return f

    return apply


GENERATE = tuple(GROUPS)  # generate, download and the dry run take every group
