"""The output directory: its layout, run.json, and the resume / refuse / overwrite decision."""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from imaginarynet.errors import UserError
from imaginarynet.fsutil import atomic_write_text, fsync_dir, lock_note, try_lock

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
        self.tmp = self.state / "tmp"  # temporary names of files bound for VOC2007/
        self.lock_file = self.root / ".imaginarynet.lock"  # not in OWNED: --overwrite keeps it

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

    def staged_intact(self, rel: str) -> bool:
        """A staged JPEG exists and is whole (starts with SOI, ends with EOI): cheap enough for every
        image on every resume, and it catches the empty or truncated file a power loss leaves."""
        try:
            with open(self.staged(rel), "rb") as f:
                head = f.read(2)
                f.seek(-2, os.SEEK_END)
                return head == b"\xff\xd8" and f.read(2) == b"\xff\xd9"
        except OSError:
            return False

    def embedding(self, label: str, k: int) -> Path:
        """--dedup: the CLIP image embedding of an attempt that passed the other stages."""
        return self.state / "embeddings" / label / f"{k:06d}.npy"

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

    def yolo_export(self) -> Path:
        return self.exports / "yolo"

    def imagefolder_export(self, split: str) -> Path:
        return self.exports / "imagefolder" / split

    def proposal_cache(self, method: str, mode: str) -> Path:
        return self.state / "proposals" / f"{method}-{mode}"

    def proposal_file(self, method: str, split: str, ext: str) -> Path:
        return self.proposals / f"{method.replace('-', '_')}_{split}.{ext}"

    @contextmanager
    def locked(self, shared: bool = False):
        """One run at a time per OUT (flock: released by the OS when the holder dies). --shard slices of
        one run share the lock with each other; everything else that writes takes it alone."""
        if not self.root.is_dir():
            raise UserError(f"{self.root} does not exist")
        fd = try_lock(self.lock_file, shared, note=f"pid {os.getpid()} on {socket.gethostname()}")
        if fd is None:
            holder = lock_note(self.lock_file) or "unknown process"
            raise UserError(f"{self.root} is in use by another imaginarynet run ({holder})")
        try:
            yield
        finally:
            os.close(fd)

    def read_run(self) -> dict | None:
        if not self.run_json.exists():
            return None
        try:
            run = json.loads(self.run_json.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{self.run_json} is corrupt ({exc}); use --overwrite to start again") from exc
        if not isinstance(run, dict) or not isinstance(run.get("options"), dict):
            raise UserError(f"{self.run_json} is corrupt (no options); use --overwrite to start again")
        return run

    def has_attempts(self) -> bool:
        """Whether any attempt was ever committed here (main or shard ledgers)."""
        ledgers = [self.ledger, *self.shard_ledgers()] if self.shards.exists() else [self.ledger]
        return any(p.exists() and p.stat().st_size > 0 for p in ledgers)

    def write_run(self, info: dict) -> None:
        atomic_write_text(self.run_json, json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")

    # --- --overwrite: the previous run waits in a hidden folder until the new run commits its first batch
    SET_ASIDE_DONE = "set-aside-complete"  # written in the folder once every owned path is in it

    def set_aside(self) -> Path | None:
        """Move the previous run into a hidden folder; returns it, or None if OUT held nothing of ours.
        The marker written last tells a later start whether what is left in OUT is old or new."""
        present = [name for name in OWNED if (self.root / name).exists()]
        if not present:
            return None
        aside = self.root / f".imaginarynet-previous-{int(time.time())}-{os.getpid()}"
        aside.mkdir()
        for name in present:
            os.replace(self.root / name, aside / name)
        atomic_write_text(aside / self.SET_ASIDE_DONE, "")
        fsync_dir(self.root)
        return aside

    def restore(self, aside: Path) -> None:
        """Put a set-aside run back. If the set-aside had finished, whatever is in OUT now is the new run's;
        if it had not (a kill while moving), OUT holds the rest of the old run and only the moved part returns."""
        if (aside / self.SET_ASIDE_DONE).exists():
            for name in OWNED:
                _remove(self.root / name)
        for name in OWNED:
            if (aside / name).exists():
                _remove(self.root / name)
                os.replace(aside / name, self.root / name)
        fsync_dir(self.root)
        shutil.rmtree(aside, ignore_errors=True)

    def leftovers(self) -> list[Path]:
        """Previous runs an --overwrite set aside and a crash left behind."""
        return sorted(self.root.glob(".imaginarynet-previous-*"))

    def settle(self, carry_on: bool = False) -> str | None:
        """Call holding the lock, before reading run.json: decide what an --overwrite that was killed left.
        Its new run committed a batch: the previous dataset is superseded and goes. It did not: the previous
        dataset comes back (and with carry_on, a new --overwrite sets it aside again). Returns the one line
        that says which, or None if there was nothing to settle."""
        note = None
        for aside in self.leftovers():
            if (aside / self.SET_ASIDE_DONE).exists() and self.has_attempts():
                shutil.rmtree(aside, ignore_errors=True)
                note = ("an interrupted --overwrite had committed work of its new run: removed the previous "
                        "dataset it had set aside")
            else:
                self.restore(aside)
                note = ("an interrupted --overwrite had not committed any work: carrying on the new run (the "
                        "previous dataset stays set aside until its first batch)" if carry_on else
                        "an interrupted --overwrite had not committed any work: restored the previous dataset")
        return note

    def open_for(self, cfg) -> dict | None:
        """Previous run.json if it belongs to the same data options; refuse otherwise."""
        previous = self.read_run()
        if previous is None:
            if self.voc.exists() or self.ledger.exists():
                raise UserError(f"{self.root} holds a dataset without run.json; use --overwrite to replace it")
            return None
        if previous.get("status") != "complete" and not self.has_attempts():
            return None  # a run that failed before its first batch (e.g. loading models) binds nothing
        if previous.get("fingerprint") != cfg.fingerprint():
            old = previous.get("data_options", {})
            new = json.loads(json.dumps(cfg.data_options(), default=str))
            differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise UserError(
                f"{self.root} was generated with other options ({', '.join(differ) or 'version'} differ); "
                "use another --outputdir or --overwrite"
            )
        return previous


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
