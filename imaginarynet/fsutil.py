"""Crash-safe file writes: written to a temporary name, fsync'd, then renamed into place.

Temporary names start with TMP_PREFIX so that a write killed half-way leaves a file the next
start recognises and removes (`remove_temporaries`).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

TMP_PREFIX = ".imaginarynet-tmp-"


def _tmp_for(path: Path, tmp_dir: Path | None) -> Path:
    folder = Path(tmp_dir) if tmp_dir else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{TMP_PREFIX}{os.getpid()}-{path.name}"


def atomic_write_bytes(path: Path, data: bytes, tmp_dir: Path | None = None) -> None:
    """Write, fsync, rename: after a crash `path` holds the old bytes or the new ones, never a torn file.
    tmp_dir (same filesystem) keeps the temporary name out of folders that loaders list."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path, tmp_dir)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, tmp_dir: Path | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), tmp_dir)


def fsync_dir(folder: Path) -> None:
    """Make the names created in `folder` durable (the renames above), before anything refers to them."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def place_file(src: Path, dst: Path, tmp_dir: Path | None = None) -> None:
    """Hard-link (free) or copy a staged image into place, atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(dst, tmp_dir)
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dst)


def remove_temporaries(root: Path) -> int:
    """Delete what killed writes left behind under root; returns how many."""
    removed = 0
    for folder, _, files in os.walk(root):
        for name in files:
            if name.startswith(TMP_PREFIX):
                (Path(folder) / name).unlink(missing_ok=True)
                removed += 1
    return removed


def try_lock(path: Path, shared: bool = False, note: str = ""):
    """A non-blocking flock on `path`: an open fd (close it to release), or None if another process
    holds it. The OS releases it when the holder dies, so a killed run never leaves a stale lock.
    The holder writes `note` into the file for the error message of the next one."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if note:
        os.ftruncate(fd, 0)
        os.pwrite(fd, note.encode(), 0)
    return fd


def lock_note(path: Path) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""
