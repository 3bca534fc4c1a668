"""Command line: parses and validates, then hands a RunConfig to the pipeline.

`imaginarynet [generate] OPTIONS` generates a dataset (generate is the default
command); other subcommands work on an existing output directory. Heavy
libraries are imported only inside the commands that need them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from imaginarynet.errors import UserError


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
    opts = [
        click.option("--num", type=int, help="Total images in the dataset, split evenly across classes "
                     "(earlier classes get the remainder). Default: 100 per class."),
        click.option("--per-class", type=int, help="Images per class (instead of --num)."),
        click.option("--classfile", default="voc", show_default=True,
                     help="Class file path, or a bundled name: voc, coco."),
        click.option("--outputdir", default="output", show_default=True, type=click.Path(path_type=Path),
                     help="Output directory (a VOCdevkit root)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Run seed."),
        click.option("--backend", default="stablediffusion", show_default=True,
                     help="Text-to-image backend: stablediffusion or dalle-mini."),
        click.option("--template", default="A photo of a {name}.", show_default=True,
                     help="Prompt template; {name} is the class display name."),
        click.option("--gpt", is_flag=True, help="Expand prompts with GPT-2."),
        click.option("--gpt-model", default="gpt2-large", show_default=True, help="GPT-2 hub id or local folder."),
        click.option("--gpt-max-tokens", type=int, default=15, show_default=True,
                     help="Length of an expanded prompt in GPT-2 tokens, template included."),
        click.option("--clip", is_flag=True, help="Keep only images CLIP assigns to their class."),
        click.option("--clip-model", default="ViT-B-32", show_default=True, help="open_clip architecture."),
        click.option("--clip-pretrained", default="openai", show_default=True,
                     help="open_clip weights: a tag, a local weights file or local-dir:FOLDER."),
        click.option("--threshold", type=float, default=0.6, show_default=True,
                     help="Minimum CLIP probability of the image's own class."),
        click.option("--max-attempts", type=int, help="Attempt cap per class when images are rejected (CLIP, safety checker) [default: 4x quota]."),
        click.option("--keep-rejected", is_flag=True, help="Also save CLIP-rejected images under OUT/rejected/."),
        click.option("--strict", is_flag=True, help="Exit 1 when a class cannot fill its quota."),
        click.option("--cpu", is_flag=True, help="Run the CLIP filter on the CPU (keeps GPU memory for the generator)."),
        click.option("--sd-model", default="stable-diffusion-v1-5/stable-diffusion-v1-5", show_default=True,
                     help="diffusers text-to-image pipeline: hub id or local folder."),
        click.option("--steps", type=int, default=50, show_default=True, help="Denoising steps."),
        click.option("--guidance", type=float, default=7.5, show_default=True, help="Classifier-free guidance scale."),
        click.option("--resolution", type=int, default=512, show_default=True, help="Image size in pixels (multiple of 8)."),
        click.option("--negative-prompt", help="Negative prompt for every image."),
        click.option("--scheduler", type=click.Choice(["pndm", "ddim", "dpm++", "euler", "euler-a"]),
                     help="Replace the model's scheduler [default: the model's own]."),
        click.option("--no-safety-checker", "no_safety_checker", is_flag=True,
                     help="Disable the model's safety checker (flagged images are otherwise dropped)."),
        click.option("--dalle-model", default="dalle-mini/dalle-mega", show_default=True,
                     help="DalleBart checkpoint: hub id or local folder."),
        click.option("--vqgan-model", default="dalle-mini/vqgan_imagenet_f16_16384", show_default=True,
                     help="VQGAN checkpoint: hub id or local folder."),
        click.option("--condition-scale", type=float, default=10.0, show_default=True,
                     help="DALL·E mini super-conditioning scale."),
        click.option("--top-k", type=int, help="DALL·E mini top-k sampling [default: the model config's]."),
        click.option("--top-p", type=float, help="DALL·E mini nucleus sampling."),
        click.option("--temperature", type=float, help="DALL·E mini sampling temperature."),
        click.option("--batch-size", type=int, default=4, show_default=True, help="Images per model call."),
        click.option("--dtype", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto",
                     show_default=True, help="auto: fp16 on CUDA, fp32 on CPU."),
        click.option("--device", help="torch/jax device for everything, e.g. cuda:0 or cpu [default: cuda if present]."),
        click.option("--overwrite", is_flag=True, help="Delete a previous run in --outputdir and start again."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary table."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def build_config(opts: dict):
    """Validated RunConfig from CLI options; raises UserError before any model loads."""
    from imaginarynet.classes import load_classes
    from imaginarynet.config import RunConfig, validate

    opts = dict(opts)
    opts["safety_checker"] = not opts.pop("no_safety_checker")
    classes = load_classes(opts["classfile"])
    return validate(RunConfig(classes=classes, **opts))


@cli.command()
@_generate_options
def generate(**opts):
    """Generate a dataset: prompts → text-to-image → (CLIP filter) → Pascal VOC."""
    from imaginarynet.pipeline import format_table, generate as run

    cfg = build_config(opts)
    say = (lambda *a: None) if cfg.quiet else (lambda msg: click.echo(msg, err=True))
    result = run(cfg, log=say)
    if not result.already_done:
        if not cfg.quiet:
            click.echo(format_table(result.table), err=True)
        click.echo(f"{result.kept}/{result.target} images in {cfg.outputdir / 'VOC2007'}", err=True)
    for s in result.shortfalls:
        click.echo(f"warning: class {s['class']} is short of its quota: {s['kept']}/{s['target']} kept "
                   f"after {s['attempts']} attempts", err=True)
    if result.shortfalls and cfg.strict:
        sys.exit(1)


@cli.command()
@click.option("--outputdir", default="imaginarynet-demo", show_default=True, type=click.Path(path_type=Path))
@click.option("--num", type=int, default=40, show_default=True)
@click.option("--overwrite", is_flag=True)
def demo(outputdir, num, overwrite):
    """Run the whole pipeline offline on tiny random models (images are noise)."""
    from imaginarynet.testing import build_tiny_models

    click.echo("Building tiny random models (once, cached)...", err=True)
    models = build_tiny_models()
    args = ["--num", str(num), "--classfile", "voc", "--outputdir", str(outputdir), "--sd-model", str(models["sd"]),
            "--steps", "2", "--resolution", "64", "--batch-size", "4"]
    if overwrite:
        args.append("--overwrite")
    ctx = generate.make_context("generate", args)
    with ctx:
        generate.invoke(ctx)
    click.echo("\nThe images are noise: these models have random weights. With real weights on a GPU, run:\n"
               "  imaginarynet --num 10000 --classfile voc --gpt --clip --backend stablediffusion "
               "--outputdir out", err=True)


def main(argv=None):
    try:
        rv = cli.main(args=argv, prog_name="imaginarynet", standalone_mode=False)
    except UserError as exc:
        click.echo(f"imaginarynet: error: {exc}", err=True)
        sys.exit(2)
    except click.UsageError as exc:
        hint = f" (see: imaginarynet {exc.ctx.info_name if exc.ctx else ''} --help)".replace("  ", " ")
        click.echo(f"imaginarynet: error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted; run the same command again to resume", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
