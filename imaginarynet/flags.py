"""The command-line flags, generated from the options the run and the stages declare (options.option).

One group per stage (its class's `group`, or a field's own): commands take whole groups or single flags
(`flags("quiet")`), overriding a default or the help text where a command gives the flag a narrower meaning;
so `--clip-pretrained` means the same in generate, annotate, export and download, and its help is written once.
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

import click

from imaginarynet.config import RunConfig
from imaginarynet.options import cli_default, stage_classes

# generate's groups: what to make, then the stages in registry order, then the run's own
GENERATE = ("dataset", *dict.fromkeys(cls.group for cls in stage_classes() if cls.generate), "quotas", "compute",
            "run")


def _click_option(f) -> tuple[tuple, dict]:
    meta = f.metadata
    kw = dict(meta["click"])
    if "choices" in kw:
        kw["type"] = click.Choice(kw.pop("choices"))
    if kw.get("type") is Path:
        kw["type"] = click.Path(path_type=Path, dir_okay=kw.pop("dir_okay", True))
    default = cli_default(f)
    if not kw.get("is_flag") and not kw.get("multiple") and default not in (MISSING, None):
        kw.update(default=default, show_default=True)
    return meta["decls"], {**kw, "help": meta["help"]}


def _groups() -> dict[str, dict[str, tuple]]:
    groups: dict[str, dict[str, tuple]] = {name: {} for name in GENERATE}  # in GENERATE's order, then the others
    for f in fields(RunConfig):
        if f.metadata.get("decls"):
            decls, kw = _click_option(f)
            dest = decls[1] if len(decls) > 1 and not decls[1].startswith("-") else f.name
            groups.setdefault(f.metadata["group"] or f.metadata["owner"].group, {})[dest] = (decls, kw)
    return groups


GROUPS = _groups()
# The options of other commands (the flags above keep their one declaration).
OTHER = {"split": (("--split",), {"default": "trainval", "show_default": True,
                                  "help": "ImageSets/Main split to read."})}
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
