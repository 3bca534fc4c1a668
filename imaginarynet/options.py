"""How a stage declares its options: one frozen dataclass per stage, one field per option.

A field carries its command-line flag, help text and default (the CLI is generated from them, flags.py) and
whether it changes the dataset (`data`: part of the run fingerprint). The class adds the stage's one-line
bad-input rules (`check`), the models a run must have (`models`: for --dry-run and `download`) and, where the
fingerprint of older datasets needs it, which of its data fields count (`data_options`).

Model: diffusers' components carry their own config; datatrove's steps take their own arguments.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import ClassVar

from imaginarynet.errors import UserError

# One line per stage: where its options are declared ("module:Class"); read by name so that the core
# (config.py) imports no stage. A new stage adds its line here.
STAGE_OPTIONS = (
    "imaginarynet.scenes:SceneOptions",
    "imaginarynet.backends.options:BackendOptions",
    "imaginarynet.backends.options:DiffusionOptions",
    "imaginarynet.backends.options:DalleOptions",
    "imaginarynet.prompts.options:PromptOptions",
    "imaginarynet.filters.options:FilterOptions",
    "imaginarynet.detectors.options:DetectorOptions",
    "imaginarynet.segmenters.options:SegmenterOptions",
    "imaginarynet.dedup:DedupOptions",
    "imaginarynet.sources.composed:ComposeOptions",
)


def option(default=MISSING, *decls: str, help: str | None = None, data: bool = True, group: str | None = None,
           factory=MISSING, cli_default=MISSING, **click) -> dataclasses.Field:
    """A field of an options class. `decls`: the click declarations (none: no flag of its own); `click`: the
    flag's other click keywords (type, is_flag, metavar, choices, ...); `group`: the CLI group, if not the
    class's; `cli_default`: the flag's default where it differs from the field's (resolved by check())."""
    meta = {"decls": decls, "help": help, "data": data, "group": group, "click": click, "cli_default": cli_default}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class StageOptions:
    """Base of every options class."""

    group: ClassVar[str] = ""  # the CLI group its flags appear in (flags.py)
    generate: ClassVar[bool] = True  # whether `generate` takes its flags

    def active(self, cfg) -> bool:
        """Whether the stage runs with these options (an inactive stage adds nothing to the fingerprint)."""
        return True

    def data_options(self, cfg) -> dict:
        """This stage's part of the fingerprint; `cfg` is the whole run's config, for stages that depend on
        another's choice."""
        if not self.active(cfg):
            return {}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("data", True)}

    def check(self, cfg) -> dict:
        """Raise UserError (one line) on bad input; returns the fields it resolves (defaults a model implies)."""
        return {}

    def defaults(self, cfg) -> dict:
        """Defaults read from the model's own files, once every check has passed (so a bad option is reported
        before a model is looked up)."""
        return {}

    def models(self, cfg) -> list[tuple[str, str, str]]:
        """(role, reference, kind) of every model this stage loads; kind tells `download` how to fetch it."""
        return []

    @classmethod
    def of(cls, cfg):
        """This stage's options out of a run's config."""
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


def check_model_ref(flag: str, spec: str) -> None:
    """A hub id ('org/name', 'gpt2-large') or a local path; a path-looking spec must exist."""
    path = spec[len("local-dir:"):] if spec.startswith("local-dir:") else spec
    looks_local = (spec.startswith("local-dir:") or path.startswith((".", "/", "~"))
                   or path.count("/") > 1 or "\\" in path)
    if looks_local and not Path(path).expanduser().exists():
        raise UserError(f"{flag}: model path does not exist: {path}")


def cli_default(f: dataclasses.Field):
    """The default a flag shows: the field's, unless the option declares another (resolved by check())."""
    cli = f.metadata.get("cli_default", MISSING)
    return f.default if cli is MISSING else cli


def resolve(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def stage_classes() -> list[type[StageOptions]]:
    return [resolve(t) for t in STAGE_OPTIONS]


def compose(name: str, *classes: type, namespace: dict | None = None) -> type:
    """One mutable dataclass holding the fields of every class, in order (the run's config: validation
    resolves defaults in place); each field keeps its metadata, so flags and fingerprint read it."""
    specs, seen = [], {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.name in seen:
                raise TypeError(f"option {f.name} declared by both {seen[f.name].__name__} and {cls.__name__}")
            seen[f.name] = cls
            kw = {"metadata": {**f.metadata, "owner": cls}}
            if f.default is not MISSING:
                kw["default"] = f.default
            elif f.default_factory is not MISSING:
                kw["default_factory"] = f.default_factory
            specs.append((f.name, f.type, dataclasses.field(**kw)))
    required = [s for s in specs if s[2].default is MISSING and s[2].default_factory is MISSING]
    return dataclasses.make_dataclass(name, required + [s for s in specs if s not in required],
                                      namespace=namespace)
