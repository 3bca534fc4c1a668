"""Image sources: where a run's candidate images come from, and what the run makes of the ledger.

Both kinds run through the same pipeline (executors, ledger, assembly, run.json, report):

- generated (sources/generated.py): per class, attempts k = 0, 1, ... of prompts + backend, until the class's
  quota of accepted images is met or its attempt cap is reached;
- folder (sources/folder.py, `annotate DIR`): one stream, attempt k = the k-th image of DIR in file-name order,
  every image looked at once; its class is decided by the filter or detector;
- composed (sources/composed.py, `compose SOURCE...`): generate's streams, scene (c, k) pasted from the masked
  objects of finished datasets onto backgrounds (paste.py).

A source tells the scheduler its streams (labels, quotas, caps, which stream a ledger record belongs to) and
turns the ledger into the dataset's entries and summary rows. What a worker does with a unit of attempts is
work.py's (`run_batch` per source kind).
"""
from __future__ import annotations

import importlib

SOURCES = {
    "generated": "imaginarynet.sources.generated:GeneratedSource",
    "folder": "imaginarynet.sources.folder:FolderSource",
    "composed": "imaginarynet.sources.composed:ComposedSource",
}


def rejection_columns(records: list[dict], segmenting: bool) -> dict:
    """A class's summary columns of the verifiers' rejections: "no box" (detector), "no mask" (segmenter)."""
    columns = {"no_box": sum(r.get("reason") == "no box" for r in records)}
    if segmenting:
        columns["no_mask"] = sum(r.get("reason") == "no mask" for r in records)
    return columns


def source_kind(cfg) -> str:
    return "folder" if cfg.source else "composed" if cfg.compose_sources else "generated"


def create_source(cfg):
    module, _, attr = SOURCES[source_kind(cfg)].partition(":")
    return getattr(importlib.import_module(module), attr)(cfg)
