"""Append-only record of every attempt, the single source of truth of a run.

One JSON line per attempt; the lines of one batch are written with a single
write and fsync'd. On reload a torn last line, and any batch with missing lines,
is cut off, so the ledger always equals a prefix of an uninterrupted run's.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Literal, TypedDict

# One attempt as the ledger stores it ("class" is a keyword, hence the functional form). The ledger
# adds "b" (batch number) and "n" (records in that batch) so a torn batch can be cut off on reload.
_Attempt = TypedDict("_Attempt", {
    "class": str, "k": int, "prompt": str, "seed": int,
    "status": Literal["kept", "rejected", "flagged"],
    "score": "dict | None",  # the filter's verdict, None without a filter
    "file": "str | None",  # staged JPEG relative to OUT/.state, for kept attempts
    "width": "int | None", "height": "int | None",
})


class Attempt(_Attempt, total=False):
    boxes: list[dict]  # with --detector: every box found, all classes (detectors/__init__.py)
    reason: str  # why a rejected attempt was rejected, when a stage says ("no box")
    labels: list[str]  # with --objects-per-image above 1: every prompted class, the primary ("class") first


def new_attempt(label: str, k: int, prompt: str, seed: int, status: str, score: dict | None = None,
                file: str | None = None, size: tuple[int, int] | None = None, boxes: list[dict] | None = None,
                reason: str | None = None, labels: list[str] | None = None) -> Attempt:
    width, height = size if size else (None, None)
    rec: Attempt = {"class": label, "k": k, "prompt": prompt, "seed": seed, "score": score, "file": file,
                    "width": width, "height": height, "status": status}
    if boxes is not None:  # without a detector the record is exactly what earlier versions wrote
        rec["boxes"] = boxes
    if reason:
        rec["reason"] = reason
    if labels is not None:
        rec["labels"] = labels
    return rec


class Ledger:
    def __init__(self, path: Path, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only  # another process may be appending: never cut its tail
        self.records: list[Attempt] = []
        self.batches = 0
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end, offset = 0, 0
        pending: list[dict] = []
        for line in data.splitlines(keepends=True):
            offset += len(line)
            if not line.endswith(b"\n"):
                break  # torn write
            try:
                rec = json.loads(line)
            except ValueError:
                break
            if not isinstance(rec, dict) or not isinstance(rec.get("n"), int):
                break
            pending.append(rec)
            if len(pending) == rec["n"]:
                self.records.extend(pending)
                self.batches += 1
                pending, good_end = [], offset
        if good_end != len(data) and not self.read_only:
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def append_batch(self, records: list[Attempt]) -> None:
        lines = []
        for rec in records:
            rec = dict(rec, b=self.batches, n=len(records))
            lines.append(json.dumps(rec, sort_keys=True) + "\n")
            self.records.append(rec)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
        self.batches += 1

    def by_class(self) -> dict[str, list[Attempt]]:
        """Records per class label, in attempt order; of a repeated (class, k) the first record wins."""
        out: dict[str, list[Attempt]] = defaultdict(list)
        seen: set[tuple[str, int]] = set()
        for rec in self.records:
            if (rec["class"], rec["k"]) not in seen:
                seen.add((rec["class"], rec["k"]))
                out[rec["class"]].append(rec)
        for recs in out.values():
            recs.sort(key=lambda r: r["k"])
        return out

    def drop(self, keys: set[tuple[str, int]]) -> None:
        """Rewrite the ledger without these (class, k) attempts, so they run again (their staged images
        were lost in a crash). Write-fsync-rename: a crash here leaves the old ledger or the new one."""
        from imaginarynet.fsutil import atomic_write_text

        keep = [r for r in self.records if (r["class"], r["k"]) not in keys]
        batches: dict[int, list[dict]] = defaultdict(list)
        for rec in keep:
            batches[rec["b"]].append(rec)
        self.records, lines = [], []
        for b, recs in enumerate(batches.values()):
            for rec in recs:
                rec = dict(rec, b=b, n=len(recs))
                self.records.append(rec)
                lines.append(json.dumps(rec, sort_keys=True) + "\n")
        self.batches = len(batches)
        atomic_write_text(self.path, "".join(lines))
