"""The output directory: its layout, run.json, and the resume / refuse / overwrite decision."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from imaginarynet.errors import UserError
from imaginarynet.fsutil import atomic_write_text

# Everything ImaginaryNet writes at the top of OUT; --overwrite removes exactly these.
OWNED = ("VOC2007", "prompts", "metadata.jsonl", "run.json", ".state", "rejected", "report", "exports", "proposals")


class OutputDir:
    """Every path of OUT is spelled here and nowhere else."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.state = self.root / ".state"
        self.voc = self.root / "VOC2007"
        self.images = self.voc / "JPEGImages"
        self.annotations = self.voc / "Annotations"
        self.imagesets = self.voc / "ImageSets" / "Main"
        self.run_json = self.root / "run.json"
        self.metadata = self.root / "metadata.jsonl"
        self.prompts = self.root / "prompts"
        self.rejected = self.root / "rejected"
        self.report = self.root / "report"
        self.exports = self.root / "exports"
        self.proposals = self.root / "proposals"
        self.ledger = self.state / "ledger.jsonl"
        self.staging = self.state / "images"
        self.shards = self.state / "shards"

    # --- the images and annotations of the dataset (ids like "000001")
    def image(self, image_id: str) -> Path:
        return self.images / f"{image_id}.jpg"

    def image_name(self, image_id: str) -> str:
        """An image's path relative to OUT, as metadata.jsonl stores it."""
        return self.image(image_id).relative_to(self.root).as_posix()

    def annotation(self, image_id: str) -> Path:
        return self.annotations / f"{image_id}.xml"

    def imageset(self, name: str) -> Path:
        return self.imagesets / f"{name}.txt"

    def prompt_list(self, label: str) -> Path:
        return self.prompts / f"{label}.txt"

    # --- staging: attempts, named by (class, k)
    @staticmethod
    def staged_rel(label: str, k: int) -> str:
        """A kept attempt's staged JPEG, relative to .state: the ledger's "file" value (unchanged format)."""
        return f"images/{label}/{k:06d}.jpg"

    def staged(self, rel: str) -> Path:
        return self.state / rel

    def rejected_path(self, label: str, k: int) -> Path:
        return self.rejected / label / f"{k:06d}.jpg"

    # --- --shard slices: a ledger and a completion marker each, one finalize lock
    def shard_ledger(self, i: int, n: int) -> Path:
        return self.shards / f"ledger-{i}-of-{n}.jsonl"

    def shard_ledgers(self) -> list[Path]:
        return sorted(self.shards.glob("ledger-*-of-*.jsonl"))

    def shard_marker(self, i: int, n: int) -> Path:
        return self.shards / f"done-{i}-of-{n}"

    @property
    def finalize_lock(self) -> Path:
        return self.shards / "finalize.lock"

    # --- commands that read a finished OUT
    def coco_export(self, split: str, images_only: bool = False) -> Path:
        return self.exports / f"coco_{split}{'_unlabeled' if images_only else ''}.json"

    def detic_export(self) -> Path:
        return self.exports / "detic"

    def imagefolder_export(self, split: str) -> Path:
        return self.exports / "imagefolder" / split

    def proposal_cache(self, method: str, mode: str) -> Path:
        return self.state / "proposals" / f"{method}-{mode}"

    def proposal_file(self, method: str, split: str, ext: str) -> Path:
        return self.proposals / f"{method.replace('-', '_')}_{split}.{ext}"

    def read_run(self) -> dict | None:
        if not self.run_json.exists():
            return None
        try:
            return json.loads(self.run_json.read_text())
        except ValueError as exc:
            raise UserError(f"{self.run_json} is corrupt ({exc}); use --overwrite to start again") from exc

    def write_run(self, info: dict) -> None:
        atomic_write_text(self.run_json, json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")

    def clear(self) -> None:
        for name in OWNED:
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def open_for(self, cfg) -> dict | None:
        """Previous run.json if it belongs to the same data options; refuse otherwise."""
        if cfg.overwrite:
            self.clear()
            return None
        previous = self.read_run()
        if previous is None:
            if self.voc.exists() or self.ledger.exists():
                raise UserError(f"{self.root} holds a dataset without run.json; use --overwrite to replace it")
            return None
        if previous.get("fingerprint") != cfg.fingerprint():
            old = previous.get("data_options", {})
            new = json.loads(json.dumps(cfg.data_options(), default=str))
            differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise UserError(
                f"{self.root} was generated with other options ({', '.join(differ) or 'version'} differ); "
                "use another --outputdir or --overwrite"
            )
        return previous
