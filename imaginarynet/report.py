"""`imaginarynet report OUT`: a self-contained HTML page to look at a dataset before training on it.

OUT/report/index.html (no external URL, works from file://) with the run's
options, a per-class table, CLIP score histograms (matplotlib PNG, threshold
marked), a contact sheet per class (prompt and score on hover and in the
caption, rejected samples when --keep-rejected kept them), prompt diversity
(unique prompts, distinct-1/2), for scenes the labels per image and a co-occurrence
matrix, and time per stage. Reads only files on disk.
"""
from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

from imaginarynet.dataset import label_counts, read_metadata, row_labels
from imaginarynet.fsutil import atomic_write_text
from imaginarynet.ledger import Ledger
from imaginarynet.outdir import OutputDir
from imaginarynet.reader import read_run

THUMB = 128
MAX_THUMBS = 48
MAX_REJECTED = 12

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}.short{color:#b00;font-weight:bold}
.sheet{display:flex;flex-wrap:wrap;gap:6px}figure{margin:0;width:128px;font-size:11px}
figure img{width:128px;height:128px;object-fit:cover;display:block}figure.rejected img{outline:3px solid #b00}
code{white-space:pre-wrap}figcaption .prompt{display:block;color:#555;overflow-wrap:anywhere}
"""


def distinct_n(prompts: list[str], n: int) -> float | None:
    """Distinct n-grams over all n-grams of the prompts (1.0: no n-gram repeats)."""
    grams = [tuple(words[i:i + n]) for p in prompts for words in [p.lower().split()]
             for i in range(len(words) - n + 1)]
    return round(len(set(grams)) / len(grams), 4) if grams else None


def class_stats(run: dict, ledger_by_class: dict, meta: list[dict], prompt_lists: dict) -> list[dict]:
    """Per-class rows. The ledger gives every attempt; once .state/ is deleted after a finished run,
    run.json's per-class counts and prompts/<label>.txt (every prompt used) say the same."""
    kept_by_class = defaultdict(int)
    for m in meta:
        kept_by_class[m["class"]] += 1
    rows = []
    for row in run.get("per_class", []):
        label = row["class"]
        recs = ledger_by_class.get(label, [])
        if recs:
            attempts, prompts = len(recs), [r["prompt"] for r in recs if r.get("prompt") is not None]
            acceptance = round(sum(r["status"] == "kept" for r in recs) / len(recs), 4)
        else:
            attempts, acceptance, prompts = row["attempts"], row["acceptance"], prompt_lists.get(label, [])
        rows.append({
            "class": label, "target": row["target"], "kept": kept_by_class[label], "attempts": attempts,
            "acceptance": acceptance, "short": max(0, row["target"] - kept_by_class[label]),
            # `annotate` images have no prompt: "-" rather than a count of nothing
            "unique_prompts": len(set(prompts)) if prompts else None, "distinct_1": distinct_n(prompts, 1),
            "distinct_2": distinct_n(prompts, 2),
        })
    return rows


def _histogram(path: Path, label: str, recs: list[dict], threshold: float | None) -> bool:
    scores = [(r["score"]["prob"], r["status"] == "kept") for r in recs if r.get("score")]
    if not scores:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(4, 2.4), dpi=80)
    bins = [i / 20 for i in range(21)]
    ax.hist([s for s, k in scores if k], bins=bins, color="#2a7", label="kept")
    ax.hist([s for s, k in scores if not k], bins=bins, color="#c44", alpha=0.7, label="rejected")
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:g}")
    scenes = any("classes" in r["score"] for r in recs if r.get("score"))
    ax.set(title=label, xlim=(0, 1), xlabel="CLIP probability of the deciding class of each scene" if scenes
           else "CLIP probability of own class")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return True


def _overlay_masks(im, boxes: list[dict]):
    """The masks, half-transparent in a colour per object, under the boxes."""
    import numpy as np
    from PIL import Image

    from imaginarynet import masks

    colours = [(255, 64, 64), (64, 160, 255), (64, 220, 96), (255, 200, 0), (200, 96, 255), (0, 220, 220)]
    pixels = np.asarray(im, dtype=np.float32).copy()
    for j, b in enumerate(boxes):
        if "mask" in b:
            mask = Image.fromarray(masks.decode(b["mask"]).astype(np.uint8) * 255).resize(im.size)
            where = np.asarray(mask) > 127
            pixels[where] = 0.5 * pixels[where] + 0.5 * np.array(colours[j % len(colours)], np.float32)
    return Image.fromarray(pixels.astype(np.uint8))


def _thumb(src: Path, dst: Path, boxes: list[dict] | None = None) -> bool:
    """A thumbnail; with detector boxes, each drawn with its class and score (over its mask, with masks)."""
    from PIL import Image, ImageDraw

    if dst.exists():
        return True
    try:
        with Image.open(src) as im:
            im = im.convert("RGB")
            scale = min(THUMB / im.width, THUMB / im.height, 1.0)
            im.thumbnail((THUMB, THUMB))
            if any("mask" in b for b in boxes or []):
                im = _overlay_masks(im, boxes)
            draw = ImageDraw.Draw(im)
            for b in boxes or []:
                x1, y1, x2, y2 = (v * scale for v in b["box"])
                draw.rectangle([x1, y1, max(x2 - 1, x1), max(y2 - 1, y1)], outline=(255, 40, 40), width=2)
                draw.text((x1 + 2, y1 + 1), f"{b['label']} {b['score']:.2f}", fill=(255, 255, 0))
            dst.parent.mkdir(parents=True, exist_ok=True)
            im.save(dst, format="JPEG", quality=85)
        return True
    except OSError:
        return False


def embedding_stats(paths: OutputDir, meta: list[dict], label: str) -> tuple[float | None, float | None]:
    """(mean, 5th percentile) pairwise cosine of a class's kept images, from --dedup's stored embeddings."""
    import numpy as np

    files = [paths.embedding(label, m["attempt"]) for m in meta if m["class"] == label]
    if len(files) < 2 or not all(f.exists() for f in files):
        return None, None
    vectors = np.stack([np.load(f) for f in files])
    sims = (vectors @ vectors.T)[np.triu_indices(len(files), 1)]
    return round(float(sims.mean()), 4), round(float(np.percentile(sims, 5)), 4)


def _diversity_section(rows: list[dict], run: dict, paths: OutputDir, meta: list[dict]) -> str:
    """Per class: unique prompts (share), distinct-1/2, duplicates removed, pairwise image similarity."""
    dups = {r["class"]: r.get("duplicates") for r in run.get("per_class", [])}
    head = ["class", "unique prompts", "distinct-1", "distinct-2", "duplicates removed",
            "mean image cosine", "5th pct image cosine"]
    out = ["<h2>Diversity</h2><table id='diversity'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        n = r["unique_prompts"]
        unique = "-" if n is None else f"{n} ({n / r['attempts']:.0%})"
        mean, p5 = embedding_stats(paths, meta, r["class"])
        cells = [r["class"], unique, _dash(r["distinct_1"]), _dash(r["distinct_2"]),
                 "-" if dups.get(r["class"]) is None else dups[r["class"]], "-" if mean is None else mean,
                 "-" if p5 is None else p5]
        out.append(f"<tr data-diversity='{html.escape(r['class'])}'>"
                   + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return "".join(out) + "</table>"


def applicable_options(run: dict) -> dict:
    """The options that made this dataset (run.json's data options, which leave out what does not apply:
    no DALL·E model for an SD run, no CLIP settings without --clip), minus unset ones, plus the class file."""
    opts = run.get("options", {})
    shown = {"classfile": opts.get("classfile")}
    for k, v in sorted(run.get("data_options", opts).items()):
        if k != "classes" and v not in (None, {}, []):
            shown[k] = v
    return shown


def box_stats(meta: list[dict], labels: list[str]) -> list[dict]:
    """Per class: images, boxes per image, mean box score (written boxes), when the run had a detector."""
    rows = []
    for label in labels:
        mine = [m for m in meta if m["class"] == label and "boxes" in m]
        scores = [b["score"] for m in mine for b in m["boxes"]]
        rows.append({"class": label, "images": len(mine),
                     "boxes_per_image": round(len(scores) / len(mine), 2) if mine else None,
                     "mean_score": round(sum(scores) / len(scores), 3) if scores else None})
    return rows


def mask_stats(meta: list[dict], run: dict) -> list[dict]:
    """Per class (with --segmenter): masks written, their mean fill of the detector box and mean predicted IoU,
    and the attempts rejected for want of a mask."""
    rows = []
    for row in run.get("per_class") or []:
        label = row["class"]
        found = [b for m in meta for b in m.get("boxes") or [] if b["label"] == label and "mask" in b]
        judged = [b for b in found if "mask_iou" in b]  # a segmenter's (a composed mask is exact)
        rows.append({"class": label, "masks": len(found),
                     "mean_fill": round(sum(b["mask_fill"] for b in judged) / len(judged), 3) if judged else None,
                     "mean_iou": round(sum(b["mask_iou"] for b in judged) / len(judged), 3) if judged else None,
                     "no_mask": row.get("no_mask", 0)})
    return rows


SIZES = (("small", 0, 32 ** 2), ("medium", 32 ** 2, 96 ** 2), ("large", 96 ** 2, float("inf")))  # COCO's areas


def composition_stats(meta: list[dict], labels: list[str]) -> tuple[list[dict], dict]:
    """`compose`: per class the pasted instances and their visible sizes by COCO's small / medium / large
    (mask area); and how often each source instance was used ({uses: instances used that often})."""
    from imaginarynet import masks

    rows, uses = [], {}
    pasted = [p for m in meta for p in (m.get("composition") or {}).get("instances", [])]
    for label in labels:
        mine = [p for p in pasted if p["class"] == label]
        areas = [masks.area(p["visible_mask"]) for p in mine]
        rows.append({"class": label, "instances": len(mine),
                     **{name: sum(lo <= a < hi for a in areas) for name, lo, hi in SIZES}})
    for p in pasted:
        key = (p["source"], p["image_id"], p["index"])
        uses[key] = uses.get(key, 0) + 1
    histogram: dict[int, int] = {}
    for n in uses.values():
        histogram[n] = histogram.get(n, 0) + 1
    return rows, dict(sorted(histogram.items()))


def _composition_section(meta: list[dict], labels: list[str]) -> str:
    rows, histogram = composition_stats(meta, labels)
    parts = ["<h2>Composition</h2><table id='composition'><tr><th>class</th><th>instances pasted</th>"
             + "".join(f"<th>{name}</th>" for name, _, _ in SIZES) + "</tr>"]
    for r in rows:
        cells = [r["class"], r["instances"], *(r[name] for name, _, _ in SIZES)]
        parts.append(f"<tr data-composition='{html.escape(r['class'])}'>"
                     + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    parts.append("</table><p>Source instances by times used: "
                 + ", ".join(f"{n}x: {count}" for n, count in histogram.items()) + "</p>")
    return "".join(parts)


def _scenes_section(meta: list[dict], labels: list[str]) -> str:
    """Scenes: images carrying each label (primary or extra) and a matrix of images carrying both of a pair."""
    counts, pairs = label_counts([row_labels(m) for m in meta], labels)
    sizes = [len(row_labels(m)) for m in meta]
    per_size = {n: sizes.count(n) for n in sorted(set(sizes))}
    sizes_text = ", ".join(f"{c} image{'s' * (c != 1)} with {n} label{'s' * (n != 1)}" for n, c in per_size.items())
    out = ["<h2>Scenes</h2><p>" + sizes_text
           + "</p><table id='cooccurrence'><tr><th>class</th><th>images labeled</th>"
           + "".join(f"<th>{html.escape(b)}</th>" for b in labels) + "</tr>"]
    for a in labels:
        cells = [str(counts[a])] + ["·" if a == b else str(pairs[a][b]) for b in labels]
        out.append(f"<tr data-cooccurrence='{html.escape(a)}'><td>{html.escape(a)}</td>"
                   + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(out) + "</table>"


def _dash(value) -> str:
    return "-" if value is None else str(value)


def _figure(img: str, caption: str, title: str, rejected: bool = False, prompt: str | None = None) -> str:
    cls = ' class="rejected"' if rejected else ""
    shown = f"<span class='prompt'>{html.escape(prompt)}</span>" if prompt else ""
    return (f'<figure{cls}><img src="{html.escape(img)}" title="{html.escape(title)}" alt="">'
            f"<figcaption>{html.escape(caption)}{shown}</figcaption></figure>")


def report_missing(root: Path) -> bool:
    """No finished report: index.html is written last (atomically), so a crash or a full disk while the report
    was written leaves none."""
    return not (OutputDir(root).report / "index.html").exists()


def finish_report(wanted: bool, root: Path, done: str, log) -> None:
    """A complete run starting again: write its report if it should have one and a crash or a full disk left
    it unwritten; say so, or that there is nothing to do."""
    if wanted and report_missing(root):
        log(f"{root}: {done}; writing its report, which was never finished")
        write_report(root)
    else:
        log(f"{root}: {done}; nothing to do")


def write_report(root: Path) -> Path:
    root = Path(root)
    paths = OutputDir(root)
    out = paths.report
    run = read_run(root)
    meta = read_metadata(paths.metadata)
    by_class = Ledger(paths.ledger, read_only=True).by_class() if paths.ledger.exists() else {}
    opts = run["options"]
    threshold = opts.get("threshold") if opts.get("clip") else None
    prompt_lists = {r["class"]: paths.prompt_list(r["class"]).read_text().splitlines()
                    for r in run.get("per_class", []) if paths.prompt_list(r["class"]).exists()}
    rows = class_stats(run, by_class, meta, prompt_lists)

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>ImaginaryNet report: {html.escape(root.name)}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>ImaginaryNet report</h1><p>{html.escape(str(root))}: {len(meta)} images kept of "
             f"{run['counts']['target']} targeted, {run['counts']['attempts']} attempts.</p>"]
    parts.append(_diversity_section(rows, run, paths, meta))
    parts.append("<h2>Options</h2><table id='options'>" + "".join(
        f"<tr><td>{k}</td><td>{html.escape(str(v))}</td></tr>" for k, v in applicable_options(run).items())
        + "</table>")
    head = ["class", "target", "kept", "attempts", "acceptance", "short", "unique prompts", "distinct-1", "distinct-2"]
    parts.append("<h2>Classes</h2><table id='classes'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
    for r in rows:
        acc = "-" if r["acceptance"] is None else f"{r['acceptance']:.0%}"
        cells = [r["class"], r["target"], r["kept"], r["attempts"], acc, r["short"] or "", _dash(r["unique_prompts"]),
                 _dash(r["distinct_1"]), _dash(r["distinct_2"])]
        cls = " class='short'" if r["short"] else ""
        parts.append(f"<tr{cls} data-class='{html.escape(r['class'])}'>" +
                     "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    if any("boxes" in m for m in meta):
        parts.append("<h2>Boxes</h2><table id='boxes'><tr><th>class</th><th>images</th><th>boxes per image</th>"
                     "<th>mean score</th></tr>")
        for r in box_stats(meta, [row["class"] for row in rows]):
            cells = [r["class"], r["images"], r["boxes_per_image"], r["mean_score"]]
            parts.append(f"<tr data-boxes='{html.escape(r['class'])}'>"
                         + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    if any("mask" in b for m in meta for b in m.get("boxes") or []):
        parts.append("<h2>Masks</h2><table id='masks'><tr><th>class</th><th>masks</th><th>mean fill</th>"
                     "<th>mean predicted IoU</th><th>no mask</th></tr>")
        for r in mask_stats(meta, run):
            cells = [r["class"], r["masks"], _dash(r["mean_fill"]), _dash(r["mean_iou"]), r["no_mask"]]
            parts.append(f"<tr data-masks='{html.escape(r['class'])}'>"
                         + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    if any("composition" in m for m in meta):
        parts.append(_composition_section(meta, [row["class"] for row in rows]))
    if any("labels" in m for m in meta):
        parts.append(_scenes_section(meta, [row["class"] for row in rows]))
    timings = run.get("timings") or {}
    if timings:
        parts.append("<h2>Time per stage</h2><table>" + "".join(
            f"<tr><td>{k}</td><td>{v:.1f} s</td></tr>" for k, v in timings.items()) + "</table>")

    meta_by_class = defaultdict(list)
    for m in meta:
        meta_by_class[m["class"]].append(m)
    for r in rows:
        label = r["class"]
        parts.append(f"<h2 id='class-{html.escape(label)}'>{html.escape(label)}</h2>")
        hist = out / f"hist_{label}.png"
        if _histogram(hist, label, by_class.get(label, []), threshold):
            parts.append(f"<img src='{hist.name}' alt='CLIP scores of {html.escape(label)}'>")
        figures = []
        for m in meta_by_class[label][:MAX_THUMBS]:
            thumb = f"thumbs/{m['id']}.jpg"
            if _thumb(root / m["file_name"], out / thumb, m.get("boxes")):
                score = f" · p={m['clip']['prob']:.2f}" if m.get("clip") else ""
                if "labels" in m:
                    score += " · " + "+".join(row_labels(m))
                said = m.get("prompt") or m.get("source") or ""  # `annotate`: the file the image came from
                figures.append(_figure(thumb, f"{m['id']}{score}", f"{said}{score}", prompt=said))
        rejected_dir = paths.rejected / label
        ledger_by_k = {rec["k"]: rec for rec in by_class.get(label, [])}
        ours = [p for p in sorted(rejected_dir.glob("*.jpg")) if p.stem.isdigit()]  # a foreign file is ignored
        for path in ours[:MAX_REJECTED]:
            thumb = f"thumbs/rejected_{label}_{path.stem}.jpg"
            rec = ledger_by_k.get(int(path.stem), {})
            score = f" · p={rec['score']['prob']:.2f} (top-1 {rec['score']['top1']})" if rec.get("score") else ""
            if rec.get("reason"):
                score += f" · {rec['reason']}"
            if _thumb(path, out / thumb, rec.get("boxes")):
                figures.append(_figure(thumb, f"rejected #{int(path.stem)}{score}", f"{rec.get('prompt', '')}{score}",
                                       rejected=True, prompt=rec.get("prompt")))
        parts.append("<div class='sheet'>" + "".join(figures) + "</div>")
    parts.append("</body></html>\n")
    atomic_write_text(out / "index.html", "\n".join(parts))
    return out / "index.html"
