"""Scenes: which classes attempt (c, k) prompts, and how they are named in the prompt.

With `--objects-per-image N` or `MIN-MAX`, attempt k of class c keeps c as its primary class and adds
extra classes drawn by a pure function of (run seed, c, k), like the attempt seed (plan.attempt_seed),
so a composition never depends on batch size, workers, shards or resume:

    u(what) = (first 8 bytes, little-endian, of sha256("scene\\0{seed}\\0{label}\\0{k}\\0{what}") >> 11) / 2**53
    objects = MIN + floor(u("count") * (MAX - MIN + 1))
    extra j = 1 .. objects-1: among the classes not yet drawn, in class-file order, with weight
              w(x) = product over the drawn classes y of pair_weight(y, x),
              the first x whose running weight sum exceeds u(j) * (sum of all weights)

pair_weight comes from `--cooccurrence FILE` ({label: {label: weight}}, symmetric, missing pairs 1,
0 forbids a pair). If the file forbids every remaining class the scene stops there, with fewer objects.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from imaginarynet.errors import UserError
from imaginarynet.options import StageOptions, option

SCENE_TEMPLATE = "A photo of {names}."
SINGLE_TEMPLATE = "A photo of a {name}."


def parse_objects(spec: str) -> tuple[int, int]:
    """--objects-per-image "N" or "MIN-MAX" as (MIN, MAX)."""
    text = str(spec).strip()
    lo_text, sep, hi_text = text.partition("-")
    try:
        lo = int(lo_text)
        hi = int(hi_text) if sep else lo
    except ValueError:
        raise UserError(f"--objects-per-image wants N or MIN-MAX, e.g. 2 or 1-3 (got {spec!r})") from None
    if lo < 1:
        raise UserError(f"--objects-per-image must be at least 1 (got {spec})")
    if lo > hi:
        raise UserError(f"--objects-per-image {spec}: MIN is above MAX")
    return lo, hi


def objects_spec(lo: int, hi: int) -> str:
    """The one spelling of a range ("2", "1-3"), so equal ranges give equal fingerprints."""
    return str(lo) if lo == hi else f"{lo}-{hi}"


def load_cooccurrence(path: str | Path, labels: list[str]) -> dict[str, dict[str, float]]:
    """A --cooccurrence file as a symmetric {label: {label: weight}} of the pairs it names."""
    where = f"--cooccurrence {path}"
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{where}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UserError(f"{where}: want a JSON object {{label: {{label: weight}}}}")
    known = set(labels)
    weights: dict[str, dict[str, float]] = {}
    for a, row in data.items():
        for b, w in row.items():
            for label in (a, b):
                if label not in known:
                    raise UserError(f"{where}: unknown label {label!r} (not in the class file)")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise UserError(f"{where}: weight of {a} + {b} must be a number >= 0 (got {w!r})")
            if a == b:
                raise UserError(f"{where}: {a} is paired with itself (a scene never repeats a class)")
            previous = weights.get(a, {}).get(b)
            if previous is not None and previous != w:
                raise UserError(f"{where}: {a} + {b} is given twice, as {previous:g} and {w:g}")
            weights.setdefault(a, {})[b] = float(w)
            weights.setdefault(b, {})[a] = float(w)
    return weights


@dataclass(frozen=True)
class SceneOptions(StageOptions):
    """Several classes per image."""

    group = "scenes"
    objects_per_image: str = option("1", "--objects-per-image", metavar="N|MIN-MAX", help=(
        "Classes prompted per image: the image's own (primary) class plus extra classes drawn per attempt from "
        "the seed; every prompted class must pass --clip / --detector and becomes a label."))
    cooccurrence_file: str | None = option(None, "--cooccurrence", "cooccurrence_file", metavar="FILE", data=False,
                                           help="JSON {label: {label: weight}} biasing which classes share an "
                                           "image: missing pairs weigh 1, 0 forbids a pair.")
    cooccurrence: dict | None = option(None)  # the file's pair weights, read by check()

    def data_options(self, cfg) -> dict:
        opts = {}
        if parse_objects(self.objects_per_image) != (1, 1):  # one object per image: the fingerprint of before
            opts["objects_per_image"] = self.objects_per_image
        if self.cooccurrence is not None:
            opts["cooccurrence"] = self.cooccurrence
        return opts

    def check(self, cfg) -> dict:
        lo, hi = parse_objects(self.objects_per_image)
        spec = objects_spec(lo, hi)
        labels = [c.label for c in cfg.classes]
        if hi > len(labels):
            raise UserError(f"--objects-per-image {spec} is more objects than the {len(labels)} classes in the "
                            "class file (a scene never repeats a class)")
        weights = self.cooccurrence
        if self.cooccurrence_file is not None:
            if hi < 2:
                raise UserError("--cooccurrence needs --objects-per-image above 1 (it weighs the extra classes)")
            weights = load_cooccurrence(self.cooccurrence_file, labels)
        check_partners(labels, weights, lo, hi)
        return {"objects_per_image": spec, "cooccurrence": weights}


def pair_weight(weights: dict | None, a: str, b: str) -> float:
    return (weights or {}).get(a, {}).get(b, 1.0)


def check_partners(labels: list[str], weights: dict | None, lo: int, hi: int) -> None:
    """Every class must be able to have company: at least MIN-1 partners the file does not forbid."""
    if hi < 2:
        return
    need = max(lo - 1, 1)
    for a in labels:
        partners = sum(pair_weight(weights, a, b) > 0 for b in labels if b != a)
        if partners == 0:
            raise UserError(f"--cooccurrence forbids every partner of {a!r}: no scene can hold it")
        if partners < need:
            raise UserError(f"--cooccurrence leaves {a!r} {partners} partner(s); --objects-per-image "
                            f"needs {need}")


def _unit(seed: int, label: str, k: int, what: str) -> float:
    digest = hashlib.sha256(f"scene\x00{seed}\x00{label}\x00{k}\x00{what}".encode()).digest()
    return (int.from_bytes(digest[:8], "little") >> 11) / 2 ** 53


def draw_scene(seed: int, labels: list[str], primary: int, k: int, lo: int, hi: int,
               weights: dict | None = None) -> list[int]:
    """Class indices of attempt (primary, k): the primary first, then the extras in drawn order."""
    label = labels[primary]
    if hi == 1:
        return [primary]
    count = lo + int(_unit(seed, label, k, "count") * (hi - lo + 1))
    chosen = [primary]
    for j in range(1, count):
        options = [(x, math.prod(pair_weight(weights, labels[y], labels[x]) for y in chosen))
                   for x in range(len(labels)) if x not in chosen]
        total = sum(w for _, w in options)
        if total <= 0:
            break  # the file forbids every class left
        target, running = _unit(seed, label, k, str(j)) * total, 0.0
        pick = None
        for x, w in options:
            if w > 0:
                pick, running = x, running + w  # the last allowed class if rounding leaves target on top
                if running > target:
                    break
        chosen.append(pick)
    return chosen


def article(name: str) -> str:
    """English indefinite article by spelling: 'an' before a vowel letter, else 'a'."""
    return "an" if name[:1].lower() in "aeiou" else "a"


def english_names(names: list[str]) -> str:
    """"a dog", "a dog and a cat", "a dog, a cat and an apple"."""
    items = [f"{article(n)} {n}" for n in names]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def render(template: str, names: list[str]) -> str:
    """The template with {name} (the primary class) and {names} (every prompted class) filled in."""
    return template.format(name=names[0], names=english_names(names))


@dataclass(frozen=True)
class Scenes:
    """Which classes each attempt of a run prompts: what prompt sources and the composer are built with."""

    classes: tuple  # the run's ImageClass list, in class-file order
    seed: int  # the run seed
    lo: int = 1
    hi: int = 1
    weights: dict | None = None  # --cooccurrence pair weights

    @classmethod
    def of(cls, cfg) -> Scenes:
        lo, hi = parse_objects(cfg.objects_per_image)
        return cls(tuple(cfg.classes), cfg.seed, lo, hi, cfg.cooccurrence)

    @property
    def multi(self) -> bool:
        """Whether attempts may prompt several classes."""
        return self.hi > 1

    def classes_of(self, class_index: int, k: int) -> list[int]:
        """The class indices attempt (class_index, k) prompts, the primary first."""
        return draw_scene(self.seed, [c.label for c in self.classes], class_index, k, self.lo, self.hi,
                          self.weights)

    def names(self, cls, k: int) -> list[str]:
        """Display names of the classes attempt (cls, k) prompts, the primary first."""
        if not self.multi:
            return [cls.name]
        index = next(i for i, c in enumerate(self.classes) if c.label == cls.label)
        return [self.classes[j].name for j in self.classes_of(index, k)]


def scene_names(cfg, cls, k: int) -> list[str]:
    """Display names of the classes attempt (cls, k) of this run prompts, the primary first."""
    return Scenes.of(cfg).names(cls, k)
