"""Class files: parse them, resolve bundled names (voc, coco), give label + display name.

Format: one class per line, `label` or `label: display name`; `#` comments and
blank lines are ignored. The label goes into annotation files, the display name
into prompts and CLIP text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from imaginarynet.errors import UserError

_LABEL_RE = re.compile(r"^[^\s/\\:]+$")


@dataclass(frozen=True)
class ImageClass:
    label: str
    name: str


def bundled_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent
    # Installed wheels carry the files inside the package; a source checkout keeps them at the top.
    return [here / "classfiles", here.parent / "classfiles"]


def bundled_names() -> list[str]:
    names = set()
    for d in bundled_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.txt"))
    return sorted(names)


def resolve_classfile(spec: str) -> Path:
    """A path, or the name of a bundled class file ('voc', 'voc.txt', 'coco')."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    stem = Path(spec).name
    stem = stem[:-4] if stem.endswith(".txt") else stem
    if path.parent == Path("."):
        for d in bundled_dirs():
            candidate = d / f"{stem}.txt"
            if candidate.is_file():
                return candidate
    raise UserError(
        f"class file not found: {spec} (bundled: {', '.join(bundled_names()) or 'none'})"
    )


def parse_classes(text: str, source: str = "<classfile>") -> list[ImageClass]:
    classes: list[ImageClass] = []
    seen: dict[str, int] = {}
    folded: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        label, _, name = line.partition(":")
        label, name = label.strip(), " ".join(name.split()) or label.strip()
        if not _LABEL_RE.match(label):
            raise UserError(
                f"{source}:{lineno}: bad label {label!r} (labels may not contain spaces, '/' or ':'; "
                "write 'label: display name')"
            )
        if label in (".", ".."):  # labels name folders (staging, rejected/, prompts/)
            raise UserError(f"{source}:{lineno}: bad label {label!r} (it names a folder)")
        if label in seen:
            raise UserError(f"{source}:{lineno}: duplicate class {label!r} (first on line {seen[label]})")
        if label.casefold() in folded:  # one folder on case-insensitive filesystems
            raise UserError(f"{source}:{lineno}: class {label!r} differs only in case from "
                            f"{folded[label.casefold()]!r}")
        seen[label] = lineno
        folded[label.casefold()] = label
        classes.append(ImageClass(label, name))
    if not classes:
        raise UserError(f"{source}: class file has no classes")
    return classes


def load_classes(spec: str) -> list[ImageClass]:
    path = resolve_classfile(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read class file {path}: {exc}") from exc
    return parse_classes(text, str(path))
