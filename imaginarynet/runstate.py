"""The state of an output folder's run: one run at a time (the lock), run.json, --overwrite's set-aside
and restore, and the decision to resume, refuse or start. OutputDir (outdir.py) says where things are."""
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
from imaginarynet.outdir import OWNED, OutputDir


class RunState:
    """run.json and its neighbours, for one OutputDir."""

    def __init__(self, out: OutputDir):
        self.out = out

    @contextmanager
    def locked(self, shared: bool = False):
        """One run at a time per OUT (flock: released by the OS when the holder dies). --shard slices of
        one run share the lock with each other; everything else that writes takes it alone."""
        if not self.out.root.is_dir():
            raise UserError(f"{self.out.root} does not exist")
        fd = try_lock(self.out.lock_file, shared, note=f"pid {os.getpid()} on {socket.gethostname()}")
        if fd is None:
            holder = lock_note(self.out.lock_file) or "unknown process"
            raise UserError(f"{self.out.root} is in use by another imaginarynet run ({holder})")
        try:
            yield
        finally:
            os.close(fd)

    def read(self) -> dict | None:
        if not self.out.run_json.exists():
            return None
        try:
            run = json.loads(self.out.run_json.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{self.out.run_json} is corrupt ({exc}); use --overwrite to start again") from exc
        if not isinstance(run, dict) or not isinstance(run.get("options"), dict):
            raise UserError(f"{self.out.run_json} is corrupt (no options); use --overwrite to start again")
        return run

    def has_attempts(self) -> bool:
        """Whether any attempt was ever committed here (main or shard ledgers)."""
        ledgers = [self.out.ledger, *self.out.shard_ledgers()] if self.out.shards.exists() else [self.out.ledger]
        return any(p.exists() and p.stat().st_size > 0 for p in ledgers)

    def write(self, info: dict) -> None:
        atomic_write_text(self.out.run_json, json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")

    # --- --overwrite: the previous run waits in a hidden folder until the new run commits its first batch
    SET_ASIDE_DONE = "set-aside-complete"  # written in the folder once every owned path is in it

    def set_aside(self) -> Path | None:
        """Move the previous run into a hidden folder; returns it, or None if OUT held nothing of ours.
        The marker written last tells a later start whether what is left in OUT is old or new."""
        present = [name for name in OWNED if (self.out.root / name).exists()]
        if not present:
            return None
        aside = self.out.root / f".imaginarynet-previous-{int(time.time())}-{os.getpid()}"
        aside.mkdir()
        for name in present:
            os.replace(self.out.root / name, aside / name)
        atomic_write_text(aside / self.SET_ASIDE_DONE, "")
        fsync_dir(self.out.root)
        return aside

    def restore(self, aside: Path) -> None:
        """Put a set-aside run back. If the set-aside had finished, whatever is in OUT now is the new run's;
        if it had not (a kill while moving), OUT holds the rest of the old run and only the moved part returns."""
        if (aside / self.SET_ASIDE_DONE).exists():
            for name in OWNED:
                _remove(self.out.root / name)
        for name in OWNED:
            if (aside / name).exists():
                _remove(self.out.root / name)
                os.replace(aside / name, self.out.root / name)
        fsync_dir(self.out.root)
        shutil.rmtree(aside, ignore_errors=True)

    def leftovers(self) -> list[Path]:
        """Previous runs an --overwrite set aside and a crash left behind."""
        return sorted(self.out.root.glob(".imaginarynet-previous-*"))

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
        previous = self.read()
        if previous is None:
            if self.out.voc.exists() or self.out.ledger.exists():
                raise UserError(f"{self.out.root} holds a dataset without run.json; use --overwrite to replace it")
            return None
        if previous.get("status") != "complete" and not self.has_attempts():
            return None  # a run that failed before its first batch (e.g. loading models) binds nothing
        if previous.get("fingerprint") != cfg.fingerprint():
            old = previous.get("data_options", {})
            new = json.loads(json.dumps(cfg.data_options(), default=str))
            differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise UserError(
                f"{self.out.root} was generated with other options ({', '.join(differ) or 'version'} differ); "
                "use another --outputdir or --overwrite"
            )
        return previous


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
