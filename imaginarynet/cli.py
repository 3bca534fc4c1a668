"""Command line: parses and validates, then hands a RunConfig to the pipeline.

`imaginarynet [generate] OPTIONS` generates a dataset (generate is the default
command); other subcommands work on an existing output directory. Heavy
libraries are imported only inside the commands that need them.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from imaginarynet.config import DEFAULTS, DTYPES, ENGINES, SCHEDULERS
from imaginarynet.errors import Interrupted, Reported, StorageError, UserError


class DefaultGroup(click.Group):
    """A group whose default command is `generate`, so the original flags work as written."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["generate", *args]
        elif not args:
            args = ["generate"]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imaginarynet")
def cli():
    """Generate synthetic training sets for weakly/semi-supervised object detection.

    Run `imaginarynet generate --help` (or just `imaginarynet --num ... --classfile ...`)."""


def _generate_options(f):
    D = DEFAULTS
    opts = [
        click.option("--num", type=int, help="Total images in the dataset, split evenly across classes "
                     "(earlier classes get the remainder). Default: 100 per class."),
        click.option("--per-class", type=int, help="Images per class (instead of --num)."),
        click.option("--classfile", default=D["classfile"], show_default=True,
                     help="Class file path, or a bundled name: voc, coco."),
        click.option("--outputdir", default=D["outputdir"], show_default=True, type=click.Path(path_type=Path),
                     help="Output directory (a VOCdevkit root)."),
        click.option("--seed", type=int, default=D["seed"], show_default=True, help="Run seed."),
        click.option("--backend", default=D["backend"], show_default=True,
                     help="Text-to-image backend: stablediffusion, dalle-mini, an installed plugin's name "
                     "(see `imaginarynet backends`) or module:Class."),
        click.option("--backend-option", "backend_option", multiple=True, metavar="KEY=VALUE",
                     help="Option for the backend (repeatable); values are JSON or plain strings."),
        click.option("--template", help="Prompt template; {name} is the class display name, {names} the "
                     "English list of every prompted class with articles ('a dog, a cat and an apple') "
                     "[default: 'A photo of a {name}.'; 'A photo of {names}.' with --objects-per-image above 1]."),
        click.option("--objects-per-image", default=D["objects_per_image"], show_default=True, metavar="N|MIN-MAX",
                     help="Classes prompted per image: the image's own (primary) class plus extra classes drawn "
                     "per attempt from the seed; every prompted class must pass --clip / --detector and "
                     "becomes a label."),
        click.option("--cooccurrence", "cooccurrence_file", metavar="FILE", help="JSON {label: {label: weight}} "
                     "biasing which classes share an image: missing pairs weigh 1, 0 forbids a pair."),
        click.option("--gpt", is_flag=True, help="Expand prompts with GPT-2."),
        click.option("--gpt-model", default=D["gpt_model"], show_default=True, help="GPT-2 hub id or local folder."),
        click.option("--gpt-max-tokens", type=int, default=D["gpt_max_tokens"], show_default=True,
                     help="Length of an expanded prompt in GPT-2 tokens, template included."),
        click.option("--llm", metavar="ID|DIR", help="Captions from an instruction-tuned chat model (transformers, "
                     "with a chat template), e.g. Qwen/Qwen2.5-0.5B-Instruct; instead of --gpt."),
        click.option("--llm-instruction", help="Instruction for --llm; {name} is the class display name "
                     "[default: asks for one realistic photo caption containing the name]."),
        click.option("--llm-max-tokens", type=int, default=D["llm_max_tokens"], show_default=True,
                     help="New tokens per caption at most."),
        click.option("--clip", is_flag=True, help="Keep only images CLIP assigns to their class."),
        click.option("--clip-model", default=D["clip_model"], show_default=True, help="open_clip architecture."),
        click.option("--clip-pretrained", default=D["clip_pretrained"], show_default=True,
                     help="open_clip weights: a tag, a local weights file or local-dir:FOLDER."),
        click.option("--threshold", type=float, default=D["threshold"], show_default=True,
                     help="Minimum CLIP probability of the image's own class."),
        click.option("--detector", metavar="ID|DIR", help="Open-vocabulary detector for boxes: a transformers "
                     "zero-shot detector, e.g. google/owlv2-base-patch16-ensemble. Keeps only images with a box "
                     "of their own class."),
        click.option("--box-threshold", type=float, help="Minimum detector score of a box [default: the "
                     "family's, 0.1 for OWLv2/OWL-ViT, 0.35 for Grounding DINO]."),
        click.option("--nms-iou", type=float, default=D["nms_iou"], show_default=True,
                     help="IoU above which class-wise NMS drops the weaker of two boxes."),
        click.option("--label-other-detections", is_flag=True, help="Also write boxes of classes other than the "
                     "prompted one as labels (always kept in metadata.jsonl)."),
        click.option("--dedup", type=float, metavar="T", help="Reject an image whose CLIP embedding has cosine "
                     ">= T with an earlier kept image of its class (refilled; decided in attempt order)."),
        click.option("--max-attempts", type=int, help="Attempt cap per class when images are rejected (CLIP, "
                     "safety checker) [default: 4x quota]."),
        click.option("--keep-rejected", is_flag=True, help="Also save CLIP-rejected images under OUT/rejected/."),
        click.option("--strict", is_flag=True, help="Exit 1 when a class cannot fill its quota."),
        click.option("--cpu", is_flag=True, help="Run the CLIP filter on the CPU (keeps GPU memory for the "
                     "generator)."),
        click.option("--sd-model", default=D["sd_model"], show_default=True,
                     help="diffusers text-to-image pipeline: hub id or local folder."),
        click.option("--steps", type=int, help="Denoising steps [default: the model family's, e.g. 50 for SD, "
                     "1 for Turbo]."),
        click.option("--guidance", type=float, help="Classifier-free guidance scale [default: the family's, "
                     "e.g. 7.5 for SD 1.x, 5.0 for SDXL, 0 for Turbo]."),
        click.option("--resolution", type=int, help="Image size in pixels, a multiple of 8 [default: the model's "
                     "native size, e.g. 512 for SD 1.5, 1024 for SDXL]."),
        click.option("--negative-prompt", help="Negative prompt for every image."),
        click.option("--scheduler", type=click.Choice(SCHEDULERS),
                     help="Replace the model's scheduler [default: the model's own]."),
        click.option("--no-safety-checker", "no_safety_checker", is_flag=True,
                     help="Disable the model's safety checker (flagged images are otherwise dropped)."),
        click.option("--dalle-model", default=D["dalle_model"], show_default=True,
                     help="DalleBart checkpoint: hub id or local folder."),
        click.option("--vqgan-model", default=D["vqgan_model"], show_default=True,
                     help="VQGAN checkpoint: hub id or local folder."),
        click.option("--condition-scale", type=float, default=D["condition_scale"], show_default=True,
                     help="DALL·E mini super-conditioning scale."),
        click.option("--top-k", type=int, help="DALL·E mini top-k sampling [default: the model config's]."),
        click.option("--top-p", type=float, help="DALL·E mini nucleus sampling."),
        click.option("--temperature", type=float, help="DALL·E mini sampling temperature."),
        click.option("--batch-size", type=int, default=D["batch_size"], show_default=True,
                     help="Images per model call."),
        click.option("--dtype", type=click.Choice(DTYPES), default=D["dtype"],
                     show_default=True, help="auto: fp16 on CUDA, fp32 on CPU."),
        click.option("--compile", "compile", is_flag=True,
                     help="torch.compile the denoiser (minutes of warm-up, then faster; for long runs)."),
        click.option("--cpu-offload", is_flag=True, help="Keep models on the CPU until used (GPUs with ~8 GB)."),
        click.option("--tf32", is_flag=True, help="Allow TF32 matmuls on Ampere and newer GPUs."),
        click.option("--workers", type=int, default=D["workers"], show_default=True,
                     help="Worker processes on --device (the CPU, for instance), each pulling work units."),
        click.option("--devices", help="One worker per device: cuda:0,cuda:1,... or 'all'."),
        click.option("--engine", type=click.Choice(ENGINES), default=D["engine"], show_default=True,
                     help="Where workers run: local processes, or Ray actors (pip install 'imaginarynet[ray]')."),
        click.option("--ray-address", help="Ray cluster to join (default: start a local one)."),
        click.option("--shard", metavar="I/N", help="Run slice I of N (a job array task); the last slice to "
                     "finish assembles the dataset."),
        click.option("--device", help="torch/jax device for everything, e.g. cuda:0 or cpu [default: cuda if "
                     "present]."),
        click.option("--overwrite", is_flag=True, help="Delete a previous run in --outputdir and start again."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary table."),
        click.option("--log-json", type=click.Path(path_type=Path, dir_okay=False),
                     help="Append machine-readable events to FILE: one JSON line per batch."),
        click.option("--no-report", "no_report", is_flag=True, help="Skip OUT/report/index.html at the end."),
        click.option("--dry-run", is_flag=True, help="Print the plan (quotas, models, layout, disk) and load nothing."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def parse_backend_options(pairs) -> dict:
    import json

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--backend-option wants KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


def settle(outputdir: Path) -> None:
    """Before a command reads OUT: put back (or drop) what a killed --overwrite set aside, saying which."""
    from imaginarynet.outdir import OutputDir
    from imaginarynet.runstate import RunState

    state = RunState(OutputDir(outputdir))
    if state.out.root.is_dir() and state.leftovers():
        with storage_errors(outputdir), state.locked():
            if note := state.settle():
                click.echo(note, err=True)


@contextmanager
def storage_errors(outputdir: Path):
    """A full disk or a read-only folder is one line naming the folder, not a traceback."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG):
            raise
        raise StorageError(f"{outputdir}: {exc.strerror or exc}") from exc


def build_config(opts: dict):
    """Validated RunConfig from CLI options; raises UserError before any model loads."""
    from imaginarynet.classes import load_classes
    from imaginarynet.config import RunConfig, validate

    opts = dict(opts)
    opts["safety_checker"] = not opts.pop("no_safety_checker")
    opts["report"] = not opts.pop("no_report")
    opts["backend_options"] = parse_backend_options(opts.pop("backend_option", ()))
    classes = load_classes(opts["classfile"])
    return validate(RunConfig(classes=classes, **opts))


@cli.command()
@_generate_options
def generate(**opts):
    """Generate a dataset: prompts → text-to-image → (CLIP filter) → Pascal VOC."""
    from imaginarynet.monitor import format_pairs, format_table
    from imaginarynet.outdir import OutputDir
    from imaginarynet.pipeline import run

    cfg = build_config(opts)
    if cfg.dry_run:
        from imaginarynet.dryrun import describe_plan

        click.echo(describe_plan(cfg))
        return
    say = (lambda *a: None) if cfg.quiet else (lambda msg: click.echo(msg, err=True))
    with storage_errors(cfg.outputdir):
        result = run(cfg, log=say)
    if result.outcome == "shard_finished":
        return
    if result.outcome != "already_done":
        if not cfg.quiet:
            click.echo(format_table(result.table), err=True)
            if result.cooccurrence is not None:
                click.echo(format_pairs(result.cooccurrence), err=True)
        click.echo(f"{result.kept}/{result.target} images in {OutputDir(cfg.outputdir).voc}", err=True)
    for s in result.shortfalls:
        click.echo(f"warning: class {s['class']} is short of its quota: {s['kept']}/{s['target']} kept "
                   f"after {s['attempts']} attempts", err=True)
    if result.problems:
        click.echo(f"error: the written dataset fails its check:\n{result.problems}", err=True)
        sys.exit(1)
    if result.shortfalls and cfg.strict:
        sys.exit(1)


@cli.command()
@_generate_options
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Download here instead of the default Hugging Face / open_clip caches "
              "(then set HF_HUB_CACHE to it for the runs).")
def download(cache_dir, **opts):
    """Fetch every model a run with these options needs, for nodes without internet."""
    from imaginarynet.download import download_models

    opts["dry_run"] = True  # validate the options without touching --outputdir or loading models
    cfg = build_config(opts)
    for line in download_models(cfg, cache_dir, log=lambda m: click.echo(m, err=True)):
        click.echo(line)


@cli.command()
@click.argument("outputdir", type=click.Path(path_type=Path, exists=True, file_okay=False))
def report(outputdir):
    """Write OUTPUTDIR/report/index.html: per-class statistics, CLIP histograms, contact sheets."""
    from imaginarynet.reader import read_dataset
    from imaginarynet.report import write_report

    settle(outputdir)
    read_dataset(outputdir)  # a finished run, or a clear error
    click.echo(write_report(outputdir))


@cli.command()
@click.argument("voc", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--classfile", default=DEFAULTS["classfile"], show_default=True,
              help="Class file path, or a bundled name: voc, coco.")
@click.option("--split", default="trainval", show_default=True, help="Split to read; 'all' reads every XML.")
@click.option("--unseen", type=float, default=0.0, show_default=True,
              help="Weight of the pairs that never share an image (0 forbids them).")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the JSON to FILE [default: standard output].")
def cooccurrence(voc, classfile, split, unseen, output):
    """Pair weights for --cooccurrence from a Pascal VOC dataset's labels (lift: 1 = independent)."""
    import json

    from imaginarynet.classes import load_classes
    from imaginarynet.cooccurrence import pair_weights, read_label_sets
    from imaginarynet.fsutil import atomic_write_text

    if unseen < 0:
        raise UserError(f"--unseen must not be negative (got {unseen})")
    labels = [c.label for c in load_classes(classfile)]
    sets = read_label_sets(voc, None if split == "all" else split)
    weights, count, seen = pair_weights(sets, labels, unseen)
    text = json.dumps(weights, indent=1) + "\n"
    if output:
        atomic_write_text(output, text)
    else:
        click.echo(text, nl=False)
    click.echo(f"{len(sets)} images, {sum(len(s & set(labels)) > 1 for s in sets)} with two or more classes; "
               f"{seen} of {len(labels) * (len(labels) - 1) // 2} pairs share an image", err=True)
    for label in labels:
        if not count[label]:
            click.echo(f"warning: no image holds {label!r}: its pairs all weigh {unseen:g}", err=True)
        elif not any(weights[label].values()):
            click.echo(f"warning: {label!r} shares no image with another class: generate refuses it with these "
                       "weights (try --unseen 0.1)", err=True)


@cli.command()
def backends():
    """List the text-to-image backends: built-in, installed plugins, and whether they import."""
    from imaginarynet.backends.base import load_backend_class, registered

    for spec in registered().values():
        try:
            cls = load_backend_class(spec)
            status = "ok" if _deps_import(cls) else "missing dependencies"
        except UserError as exc:
            status = f"broken: {str(exc).split(': ', 1)[-1]}"
        click.echo(f"{spec.name:<18} {spec.source:<28} {spec.target}  [{status}]")


def _deps_import(cls) -> bool:
    """A backend lists the modules it needs in `requires` (built-ins do); all must import."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in getattr(cls, "requires", ()))


@cli.command()
@click.option("--outputdir", default="imaginarynet-demo", show_default=True, type=click.Path(path_type=Path))
@click.option("--num", type=int, default=40, show_default=True)
@click.option("--overwrite", is_flag=True)
@click.option("--quiet", "-q", is_flag=True)
def demo(outputdir, num, overwrite, quiet):
    """Run the whole pipeline offline on tiny random models (images are noise)."""
    from imaginarynet.outdir import OutputDir
    from imaginarynet.testing import build_tiny_models

    click.echo("Building tiny random models (once, cached)...", err=True)
    models = build_tiny_models()
    args = ["--num", str(num), "--classfile", "voc", "--outputdir", str(outputdir), "--sd-model", str(models["sd"]),
            "--steps", "2", "--resolution", "64", "--batch-size", "4"]
    # No --clip here: a CLIP with random weights sends every noise image to the same class, so the
    # top-1 rule would reject nearly all of them. The tests run the filter on the same tiny model.
    args += ["--gpt", "--gpt-model", str(models["gpt2"])]
    args += ["--overwrite"] * overwrite + ["--quiet"] * quiet
    ctx = generate.make_context("generate", args)
    with ctx:
        generate.invoke(ctx)
    out = OutputDir(outputdir)
    click.echo(f"\nDataset: {out.voc}; report: {out.report / 'index.html'}", err=True)
    click.echo("The images are noise: these models have random weights. With real weights on a GPU, run:\n"
               "  imaginarynet --num 10000 --classfile voc --gpt --clip --backend stablediffusion "
               "--outputdir out", err=True)


@cli.command()
@click.argument("outputdir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--device", help="Device, if attempts are still missing and models must run.")
@click.option("--quiet", "-q", is_flag=True)
def finalize(outputdir, device, quiet):
    """Assemble a dataset from --shard runs (the last shard does this by itself)."""
    from imaginarynet.config import config_from_run
    from imaginarynet.monitor import format_pairs, format_table
    from imaginarynet.outdir import OutputDir
    from imaginarynet.pipeline import run
    from imaginarynet.runstate import RunState

    settle(outputdir)
    out = OutputDir(outputdir)
    previous = RunState(out).read()
    if previous is None:
        raise UserError(f"{outputdir} has no run.json: nothing to finalize")
    cfg = config_from_run(previous, outputdir=outputdir, shard=None, finalize=True, device=device, quiet=quiet,
                          overwrite=False)
    with storage_errors(outputdir):
        result = run(cfg, log=lambda m: click.echo(m, err=True))
    if not quiet and result.table:
        click.echo(format_table(result.table), err=True)
        if result.cooccurrence is not None:
            click.echo(format_pairs(result.cooccurrence), err=True)
    click.echo(f"{result.kept}/{result.target} images in {out.voc}", err=True)


@cli.command()
@click.argument("outputdir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["voc", "coco", "detic", "yolo"]), default="voc",
              show_default=True, help="voc checks the dataset; coco/detic/yolo check the files `export` wrote.")
@click.option("--split", default="trainval", show_default=True, help="Split of the export to check.")
def check(outputdir, fmt, split):
    """Validate a dataset against what downstream loaders require; exit 1 on any problem."""
    from imaginarynet.check import format_problems
    from imaginarynet.exports import check_output

    problems = check_output(outputdir, fmt, split)
    if problems:
        click.echo(format_problems(problems, outputdir))
        click.echo(f"{len(problems)} problem(s) found", err=True)
        sys.exit(1)
    click.echo(f"{outputdir}: {fmt} OK")


@cli.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--classfile", default=DEFAULTS["classfile"], show_default=True,
              help="Class file path, or a bundled name: voc, coco.")
@click.option("--outputdir", default=DEFAULTS["outputdir"], show_default=True, type=click.Path(path_type=Path),
              help="Output directory (a VOCdevkit root).")
@click.option("--detector", metavar="ID|DIR", help="Open-vocabulary detector for boxes (see generate --help).")
@click.option("--box-threshold", type=float, help="Minimum detector score of a box [default: the family's].")
@click.option("--nms-iou", type=float, default=DEFAULTS["nms_iou"], show_default=True)
@click.option("--label-other-detections", is_flag=True, help="Also write boxes of the other classes as labels.")
@click.option("--clip", is_flag=True, help="Classify with CLIP: an image's class is CLIP's top-1, kept if its "
              "probability reaches --threshold.")
@click.option("--clip-model", default=DEFAULTS["clip_model"], show_default=True)
@click.option("--clip-pretrained", default=DEFAULTS["clip_pretrained"], show_default=True)
@click.option("--threshold", type=float, default=DEFAULTS["threshold"], show_default=True)
@click.option("--batch-size", type=int, default=DEFAULTS["batch_size"], show_default=True)
@click.option("--device", help="Device for the models [default: cuda if present].")
@click.option("--cpu", is_flag=True, help="Run CLIP on the CPU.")
@click.option("--quiet", "-q", is_flag=True)
@click.option("--no-report", "no_report", is_flag=True)
def annotate(source, **opts):
    """Run the CLIP filter and/or the detector on existing images (JPEG, PNG, WebP) into the same OUT layout."""
    from imaginarynet.annotate import list_images, run_annotate
    from imaginarynet.classes import load_classes
    from imaginarynet.config import RunConfig, validate_annotate
    from imaginarynet.monitor import format_table
    from imaginarynet.outdir import OutputDir

    opts["report"] = not opts.pop("no_report")
    cfg = validate_annotate(RunConfig(classes=load_classes(opts["classfile"]), source=str(Path(source).resolve()),
                                      **opts))
    list_images(source)  # a missing or empty folder: one line, before any model loads
    with storage_errors(cfg.outputdir):
        result = run_annotate(cfg, log=lambda m: click.echo(m, err=True))
    if result.get("already_done"):
        return
    if not cfg.quiet:
        click.echo(format_table(result["table"]), err=True)
    for name in result["unreadable"]:
        click.echo(f"warning: {source / name} could not be read; skipped", err=True)
    click.echo(f"{result['kept']}/{result['images']} images kept in {OutputDir(cfg.outputdir).voc}", err=True)


@cli.command()
@click.argument("outputdir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["coco", "detic", "imagefolder", "yolo"]), required=True)
@click.option("--split", default="trainval", show_default=True, help="Which ImageSets/Main split to export.")
@click.option("--images-only", is_flag=True, help="COCO without annotations (SSOD unlabeled set).")
@click.option("--categories", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Detic: an LVIS-style categories JSON to map labels onto (ids and synonyms).")
@click.option("--clip-model", default=DEFAULTS["clip_model"], show_default=True,
              help="Detic embeddings: open_clip model.")
@click.option("--clip-pretrained", default=DEFAULTS["clip_pretrained"], show_default=True,
              help="Detic embeddings: weights.")
@click.option("--device", default="cpu", show_default=True, help="Device for the Detic text embeddings.")
def export(outputdir, fmt, split, images_only, categories, clip_model, clip_pretrained, device):
    """Export a finished dataset as COCO JSON, Detic image-labeled data or a HF imagefolder."""
    from imaginarynet.outdir import OutputDir
    from imaginarynet.runstate import RunState

    settle(outputdir)
    out = OutputDir(outputdir)
    images = out.images
    with RunState(out).locked():
        _export(outputdir, fmt, split, images_only, categories, clip_model, clip_pretrained, device, images)


def _export(outputdir, fmt, split, images_only, categories, clip_model, clip_pretrained, device, images):
    from imaginarynet import exports

    if fmt == "coco":
        path = exports.export_coco(outputdir, split, images_only)
        click.echo(f"{path} (images in {images})")
    elif fmt == "yolo":
        folder, boxes = exports.export_yolo(outputdir)
        click.echo(f"{folder}: {folder / 'data.yaml'} (ultralytics)")
        if not boxes:
            click.echo("no detector boxes in this dataset (run with --detector): each label is a whole-image box",
                       err=True)
    elif fmt == "imagefolder":
        folder = exports.export_imagefolder(outputdir, split)
        click.echo(f"{folder}: datasets.load_dataset('imagefolder', data_dir='{folder}')")
    else:
        folder, names, shape = exports.export_detic(outputdir, split, categories, clip_model, clip_pretrained, device)
        click.echo(f"{folder}: {', '.join(names)} {shape} (images in {images})")


@cli.command()
@click.argument("outputdir", type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(["selective-search"]), default="selective-search", show_default=True)
@click.option("--mode", type=click.Choice(["fast", "quality"]), default="fast", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["oicr", "pcl"]), default="oicr", show_default=True,
              help="oicr: .mat, [y1 x1 y2 x2] 1-based; pcl: .pkl for PCL/wetectron, [x1 y1 x2 y2] 0-based.")
@click.option("--split", default="trainval", show_default=True)
@click.option("--workers", type=int, default=None, help="Processes [default: all cores].")
@click.option("--quiet", "-q", is_flag=True)
def proposals(outputdir, method, mode, fmt, split, workers, quiet):
    """Precompute region proposals for WSOD training (resumable per image)."""
    from imaginarynet.exports import make_proposals
    from imaginarynet.outdir import OutputDir
    from imaginarynet.runstate import RunState

    settle(outputdir)
    with RunState(OutputDir(outputdir)).locked():
        path, images, boxes = make_proposals(outputdir, method, mode, fmt, split, workers, quiet)
    click.echo(f"{path}: {images} images, {boxes} boxes")


def _on_signal(signum, frame):
    """First SIGTERM/SIGINT: stop cleanly (finished work is committed). Second: exit at once."""
    if _on_signal.fired:
        os._exit(128 + signum)
    _on_signal.fired = True
    raise Interrupted(signum)


_on_signal.fired = False


def main(argv=None):
    # A killed worker leaves semaphores that multiprocessing's resource tracker cleans up, with a warning
    # at exit that would bury our one-line error; the tracker inherits this filter from sys.warnoptions.
    quiet_tracker = "ignore:resource_tracker:UserWarning"
    if quiet_tracker not in sys.warnoptions:
        sys.warnoptions.append(quiet_tracker)
    if argv is None:  # the console entry point (in-process callers keep their own handlers)
        _on_signal.fired = False
        for sig in (signal.SIGTERM, signal.SIGINT):  # what SLURM pre-emption and Ctrl-C send
            signal.signal(sig, _on_signal)
    try:
        rv = cli.main(args=argv, prog_name="imaginarynet", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see: imaginarynet {exc.ctx.info_name if exc.ctx else ''} --help)".replace("  ", " ")
        _fail(exc, f"imaginarynet: error: {exc.format_message()}{hint}", 2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        _fail(None, "aborted", 130)
    except Reported as exc:  # ours: each error knows its line and exit status (errors.py)
        _fail(exc, exc.line(), exc.exit_code)
    except KeyboardInterrupt as exc:
        _fail(exc, "interrupted; run the same command again to resume", 130)
    sys.exit(rv if isinstance(rv, int) else 0)


def _fail(exc: BaseException | None, line: str, status: int):
    """The one line a user sees; IMAGINARYNET_DEBUG=1 prints the traceback above it."""
    if exc is not None and os.environ.get("IMAGINARYNET_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    click.echo(line, err=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
