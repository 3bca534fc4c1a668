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

from imaginarynet.config import FOLDER_STAGES
from imaginarynet.errors import Interrupted, Reported, StorageError, UserError
from imaginarynet.exports import CHECKS, EXPORTS
from imaginarynet.flags import GENERATE, flags


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


def build_config(opts: dict, classes=None):
    """Validated RunConfig from CLI options (the class file's classes unless given); raises UserError before any
    model loads."""
    from imaginarynet.classes import load_classes
    from imaginarynet.config import RunConfig, validate

    opts = dict(opts)
    opts["safety_checker"] = not opts.pop("no_safety_checker", False)
    opts["report"] = not opts.pop("no_report")
    opts["backend_options"] = parse_backend_options(opts.pop("backend_option", ()))
    classes = classes if classes is not None else load_classes(opts["classfile"])
    return validate(RunConfig(classes=classes, **opts))


@cli.command()
@flags(*GENERATE)
def generate(**opts):
    """Generate a dataset: prompts → text-to-image → (CLIP filter) → Pascal VOC."""
    cfg = build_config(opts)
    if cfg.dry_run:
        from imaginarynet.dryrun import describe_plan

        click.echo(describe_plan(cfg))
        return
    _run_and_report(cfg)


def _run_and_report(cfg) -> None:
    """Run a validated config (generate or annotate) and print what the user looks at: the table, the count, the
    warnings; exit 1 if the written dataset fails its check (or a class falls short with --strict)."""
    from imaginarynet.monitor import format_pairs, format_table
    from imaginarynet.outdir import OutputDir
    from imaginarynet.pipeline import run

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
        for name in result.extra.get("unreadable", []):
            click.echo(f"warning: {Path(cfg.source) / name} could not be read; skipped", err=True)
        kept = "kept in" if cfg.source else "in"
        click.echo(f"{result.kept}/{result.target} images {kept} {OutputDir(cfg.outputdir).voc}", err=True)
    for s in result.shortfalls:
        click.echo(f"warning: class {s['class']} is short of its quota: {s['kept']}/{s['target']} kept "
                   f"after {s['attempts']} attempts", err=True)
    if result.problems:
        click.echo(f"error: the written dataset fails its check:\n{result.problems}", err=True)
        sys.exit(1)
    if result.shortfalls and cfg.strict:
        sys.exit(1)


@cli.command()
@flags(*GENERATE)
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
@flags("classfile", "split", split={"help": "Split to read; 'all' reads every XML."})
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
@flags("outputdir", "num", "overwrite", "quiet", outputdir={"default": "imaginarynet-demo"},
       num={"default": 40, "show_default": True, "help": "Total images."})
def demo(outputdir, num, overwrite, quiet):
    """Run the whole pipeline offline on tiny random models (images are noise)."""
    from imaginarynet.demo import build_demo_models
    from imaginarynet.outdir import OutputDir

    click.echo("Building tiny random models (once, cached)...", err=True)
    models = build_demo_models()
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
@flags("device", "quiet", device={"help": "Device, if attempts are still missing and models must run."})
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
@click.option("--format", "fmt", type=click.Choice(CHECKS), default="voc",
              show_default=True, help="voc checks the dataset; coco/detic/yolo check the files `export` wrote.")
@flags("split", split={"help": "Split of the export to check."})
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
@flags("classfile", "outputdir", *FOLDER_STAGES, "batch_size", "dtype", "device", "workers",
       "devices", "engine", "ray_address", "shard", "overwrite", "quiet", "log_json", "no_report",
       clip={"help": "Classify with CLIP: an image's class is CLIP's top-1, kept if its probability reaches "
                     "--threshold."})
def annotate(source, **opts):
    """Run the CLIP filter and/or the detector on existing images (JPEG, PNG, WebP) into the same OUT layout."""
    from imaginarynet.sources.folder import list_images

    list_images(source)  # a missing or empty folder: one line, before any model loads
    _run_and_report(build_config(dict(opts, source=str(Path(source).resolve()))))


@cli.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@flags("outputdir", "num", "per_class", "classfile", "seed", "compose", "scenes", "batch_size", "workers", "engine",
       "ray_address", "shard", "overwrite", "quiet", "log_json", "no_report",
       classfile={"default": None, "show_default": False,
                  "help": "Fix the class order (must hold every source class) [default: the sources' classes]."})
def compose(sources, **opts):
    """Paste the masked objects of finished datasets (made with --segmenter) onto --backgrounds: scenes whose boxes
    and masks are exact by construction, in the same OUT layout."""
    from imaginarynet.classes import load_classes
    from imaginarynet.sources.composed import source_classes

    given = load_classes(opts["classfile"]) if opts["classfile"] else None
    classes = source_classes([str(s) for s in sources], given)
    opts["classfile"] = opts["classfile"] or str(sources[0])
    _run_and_report(build_config(dict(opts, compose_sources=tuple(str(s) for s in sources)), classes))


@cli.command()
@click.argument("outputdir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(EXPORTS), required=True)
@flags("split", split={"help": "Which ImageSets/Main split to export."})
@click.option("--images-only", is_flag=True, help="COCO without annotations (SSOD unlabeled set).")
@click.option("--polygons", is_flag=True, help="COCO: masks as polygons (every external contour) instead of RLE.")
@click.option("--categories", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Detic: an LVIS-style categories JSON to map labels onto (ids and synonyms).")
@flags("clip_model", "clip_pretrained", "device", clip_model={"help": "Detic embeddings: open_clip model."},
       clip_pretrained={"help": "Detic embeddings: open_clip weights."},
       device={"default": "cpu", "show_default": True, "help": "Device for the Detic text embeddings."})
def export(outputdir, fmt, split, images_only, polygons, categories, clip_model, clip_pretrained, device):
    """Export a finished dataset as COCO JSON, Detic image-labeled data, YOLO or a HF imagefolder."""
    from imaginarynet.exports import ExportOptions
    from imaginarynet.exports import export as write_export
    from imaginarynet.outdir import OutputDir
    from imaginarynet.runstate import RunState

    settle(outputdir)
    opts = ExportOptions(split=split, images_only=images_only, polygons=polygons, categories=categories,
                         clip_model=clip_model, clip_pretrained=clip_pretrained, device=device)
    with RunState(OutputDir(outputdir)).locked():
        lines = write_export(outputdir, fmt, opts)
    for line in lines:
        click.echo(line, err=line.startswith("warning:"))


@cli.command()
@click.argument("outputdir", type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(["selective-search"]), default="selective-search", show_default=True)
@click.option("--mode", type=click.Choice(["fast", "quality"]), default="fast", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["oicr", "pcl"]), default="oicr", show_default=True,
              help="oicr: .mat, [y1 x1 y2 x2] 1-based; pcl: .pkl for PCL/wetectron, [x1 y1 x2 y2] 0-based.")
@flags("split", "workers", "quiet", workers={"default": None, "show_default": False,
                                           "help": "Processes [default: all cores]."})
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
