"""What a run shows while and after it works: the progress bar, the --log-json event log and the
per-class summary table. Reads the scheduler's counts; never decides anything."""
from __future__ import annotations

import json
import time


def kept_total(sched) -> int:
    """Images kept so far toward the quotas (attempts past a quota do not count)."""
    return sum(min(k, q) for k, q in zip(sched.kept, sched.quotas))


class Progress:
    """count="kept": images kept toward the quotas (generate); "attempted": images looked at (annotate)."""

    def __init__(self, sched, quiet: bool, count: str = "kept"):
        from tqdm import tqdm

        self.sched, self.count = sched, count
        self.bar = tqdm(total=sum(sched.quotas), initial=self._done(), unit="img",
                        desc="kept" if count == "kept" else "annotated", disable=quiet, dynamic_ncols=True)

    def _done(self) -> int:
        return kept_total(self.sched) if self.count == "kept" else sum(self.sched.attempted)

    def update(self) -> None:
        self.bar.update(self._done() - self.bar.n)
        attempted = sum(self.sched.attempted)
        if attempted:
            self.bar.set_postfix(accept=f"{sum(self.sched.kept) / attempted:.0%}", refresh=False)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EventLog:
    """--log-json: one JSON object per line and event (start, every batch, end), flushed at once.
    A context manager, so the file is closed when a run raises."""

    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8") if path else None

    def write(self, event: str, **fields) -> None:
        if self.file:
            self.file.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}) + "\n")
            self.file.flush()

    def batch(self, records: list[dict], seconds: float, **extra) -> None:
        per_class: dict[str, dict] = {}
        for r in records:
            c = per_class.setdefault(r["class"], {"attempts": 0, "kept": 0})
            c["attempts"] += 1
            c["kept"] += r["status"] == "kept"
        self.write("batch", attempts=len(records), kept=sum(c["kept"] for c in per_class.values()),
                   classes=per_class, seconds=round(seconds, 3), **extra)

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def format_table(rows: list[dict]) -> str:
    width = max([len("class")] + [len(r["class"]) for r in rows])
    extra = [(key, title) for key, title in (("labeled", "labeled"), ("no_box", "no box"), ("no_mask", "no mask"),
                                                        ("duplicates", "dups"))
             if any(key in r for r in rows)]  # columns of the stages that ran
    lines = [f"{'class':<{width}}  {'kept':>6} / {'target':<6} {'attempts':>8}  {'accept':>6}"
             + "".join(f"  {title:>6}" for _, title in extra)]
    for r in rows:
        acc = "-" if r["acceptance"] is None else f"{r['acceptance']:.0%}"
        mark = "  SHORT" if r["kept"] < r["target"] else ""
        cells = "".join(f"  {r.get(key, 0):>6}" for key, _ in extra)
        lines.append(f"{r['class']:<{width}}  {r['kept']:>6} / {r['target']:<6} {r['attempts']:>8}  {acc:>6}"
                     f"{cells}{mark}")
    return "\n".join(lines)


def format_pairs(pairs: dict, top: int = 10) -> str:
    """The most frequent class pairs of a scenes dataset, one line (the full matrix: run.json, report)."""
    counts = sorted(((n, a, b) for a, row in pairs.items() for b, n in row.items() if a < b and n),
                    key=lambda t: (-t[0], t[1], t[2]))
    if not counts:
        return "co-occurrence: no image holds two labels"
    shown = ", ".join(f"{a}+{b} {n}" for n, a, b in counts[:top])
    more = f" (+{len(counts) - top} more pairs in run.json)" if len(counts) > top else ""
    return f"co-occurrence: {shown}{more}"
