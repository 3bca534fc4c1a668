"""`imaginarynet cooccurrence VOC`: pair weights for --cooccurrence from the label statistics of a real
(or any) Pascal VOC dataset, so synthetic scenes pair classes the way real photos do.

The weight of a pair is its lift, n(a, b) * N / (n(a) * n(b)): how much more often the two classes share
an image than they would if they were independent (1 = independent). Pairs that never share an image get
`unseen` (0 forbids them). Image-level labels are the object names of each XML (difficult objects count:
the class is in the photo); names not in the class file are ignored.
"""
from __future__ import annotations

from pathlib import Path

from imaginarynet.errors import UserError
from imaginarynet.writers.voc import read_annotation


def voc_folder(path: Path) -> Path:
    """The VOC2007-style folder (with Annotations/ and ImageSets/Main/): the path itself or its VOC2007/."""
    path = Path(path)
    for candidate in (path, path / "VOC2007"):
        if (candidate / "Annotations").is_dir():
            return candidate
    raise UserError(f"{path} has no Annotations/ folder (want a VOC2007 folder or the VOCdevkit above it)")


def read_label_sets(path: Path, split: str | None) -> list[set[str]]:
    """The set of object names of every image in the split (every XML when split is None)."""
    folder = voc_folder(path)
    if split is None:
        files = sorted((folder / "Annotations").glob("*.xml"))
    else:
        listing = folder / "ImageSets" / "Main" / f"{split}.txt"
        if not listing.is_file():
            raise UserError(f"no split {split!r}: {listing} does not exist (--split all reads every XML)")
        files = [folder / "Annotations" / f"{line.split()[0]}.xml" for line in listing.read_text().splitlines()
                 if line.strip()]
    sets = []
    for xml in files:
        try:
            sets.append({o.name for o in read_annotation(xml).objects})
        except (OSError, ValueError) as exc:
            raise UserError(f"{xml}: unreadable annotation ({exc})") from None
    if not sets:
        raise UserError(f"{folder}: no annotations to read")
    return sets


def pair_weights(label_sets: list[set[str]], labels: list[str], unseen: float) -> tuple[dict, dict, int]:
    """({a: {b: lift}} for every pair of the class file, symmetric; {label: images holding it}; how many
    pairs share at least one image)."""
    n = len(label_sets)
    present = [s & set(labels) for s in label_sets]
    count = {a: sum(a in s for s in present) for a in labels}
    weights: dict[str, dict[str, float]] = {a: {} for a in labels}
    seen = 0
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            both = sum(a in s and b in s for s in present)
            seen += both > 0
            weights[a][b] = weights[b][a] = round(both * n / (count[a] * count[b]), 4) if both else unseen
    return weights, count, seen
