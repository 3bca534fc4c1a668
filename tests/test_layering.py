"""Imports point down the layers of ARCHITECTURE.md, never up, and there are no import cycles.

Every module is parsed with `ast`, imports inside functions included: Python itself would not
notice a cycle hidden in a function body until the day it bites.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "imaginarynet"

# ARCHITECTURE.md, "Import layers". A module may import its own layer or lower ones; the graph
# must stay acyclic. Keys are module names relative to the package; a trailing "." is a package prefix.
LAYERS = {
    1: ["__init__", "errors", "fsutil", "classes"],
    2: ["options", "config", "masks", "records", "plan", "scenes", "ledger", "dataset", "outdir", "runstate",
        "runtime", "reader", "backends.__init__", "backends.base", "backends.sd_families", "detectors.registry"],
    3: ["prompts.", "sources.", "paste", "filters.", "detectors.", "segmenters.", "writers.", "backends.", "check",
        "proposals", "dedup", "cooccurrence"],
    4: ["work"],
    5: ["executors."],
    6: ["monitor", "finalize", "exports", "report", "dryrun", "download", "demo"],
    7: ["pipeline"],
    8: ["cli", "flags", "__main__"],
}
MODEL_LIBRARIES = {"torch", "torchvision", "jax", "flax", "diffusers", "transformers", "open_clip", "tokenizers",
                   "accelerate", "ray", "cv2"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def layer_of(name: str) -> int:
    best = None  # the most specific rule wins: backends.base before backends.
    for layer, patterns in LAYERS.items():
        for pat in patterns:
            if name == pat or (pat.endswith(".") and name.startswith(pat)):
                if best is None or len(pat) > best[1]:
                    best = (layer, len(pat))
    assert best is not None, f"imaginarynet.{name} has no layer: add it to LAYERS and ARCHITECTURE.md"
    return best[0]


def resolve(name: str, path: Path) -> str:
    """A module path relative to the package ("pkg.mod"), for `from imaginarynet.x import y` imports."""
    if name in MODULES:
        return name
    if f"{name}.__init__" in MODULES:
        return f"{name}.__init__"
    raise AssertionError(f"{path}: imports imaginarynet.{name}, which does not exist")


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(imaginarynet modules, top-level external packages) that a module imports anywhere."""
    ours, external = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "imaginarynet":  # from imaginarynet import executors
                names = [f"imaginarynet.{a.name}" for a in node.names]
            else:  # from imaginarynet.writers import detic: detic may be a module
                names += [f"{node.module}.{a.name}" for a in node.names
                          if f"{node.module}.{a.name}".removeprefix("imaginarynet.") in MODULES]
        else:
            continue
        for name in names:
            if name == "imaginarynet" or name.startswith("imaginarynet."):
                rel = name.removeprefix("imaginarynet").lstrip(".") or "__init__"
                ours.add(resolve(rel, path))
            else:
                external.add(name.split(".")[0])
    if PACKAGE in path.parents:
        ours.discard(module_name(path))
    return ours, external


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
    for name in MODULES:
        layer_of(name)


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_point_down(name):
    ours, _ = GRAPH[name]
    up = sorted(t for t in ours if layer_of(t) > layer_of(name))
    assert not up, f"imaginarynet.{name} (layer {layer_of(name)}) imports a higher layer: {up}"


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(GRAPH[node][0]):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def test_the_rules_the_architecture_names():
    def under(prefix):
        return [n for n in GRAPH if n == prefix or n.startswith(prefix + ".")]

    for name in under("executors") + ["work"]:
        assert not {"pipeline", "cli"} & GRAPH[name][0], name
    for name in ["config", "plan", "scenes", "ledger", "dataset"]:
        ours, external = GRAPH[name]
        assert not [t for t in ours if t.startswith("executors")], name
        assert not [t for t in ours if t.startswith("backends") and t not in ("backends.base", "backends.sd_families")]
        assert not [t for t in ours if t.startswith("detectors") and t != "detectors.registry"]
        assert not external & MODEL_LIBRARIES, (name, external & MODEL_LIBRARIES)
    for name in under("prompts") + under("filters") + under("detectors"):
        assert not [t for t in GRAPH[name][0] if t.startswith("backends")], name
    for name in under("writers"):
        ours, external = GRAPH[name]
        assert not external & MODEL_LIBRARIES, (name, external & MODEL_LIBRARIES)
        assert not [t for t in ours if t.split(".")[0] in ("backends", "filters", "prompts")], name


def test_the_guard_sees_imports_inside_functions(tmp_path):
    """The checker itself: an import hidden in a function body is found, and placed above work."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from imaginarynet.pipeline import run\n    import torch\n")
    ours, external = imports_of(bad)
    assert ours == {"pipeline"} and external == {"torch"}
    assert layer_of("pipeline") > layer_of("work")



# the model stages (an image source, sources/, is the run's: it plans quotas from the whole config)
STAGE_PACKAGES = ("prompts.", "backends.", "filters.", "detectors.", "segmenters.")


def whole_config_inits(source: str) -> list[str]:
    """The constructors in a module's source that take a run's whole config."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            params = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
            if {"cfg", "config", "run_config"} & set(params):
                found.append(f"line {node.lineno}: __init__({', '.join(params)})")
    return found


def test_stages_are_built_from_their_own_options():
    """ARCHITECTURE.md: a stage's constructor takes its own options, the classes, the scene draw and the
    runtime, never the run's whole config (then it could read another stage's options)."""
    offenders = {name: found for name in sorted(MODULES) if name.startswith(STAGE_PACKAGES)
                 for found in [whole_config_inits((PACKAGE / (name.replace(".", "/") + ".py")).read_text())] if found}
    assert not offenders, offenders
    # the guard itself sees a planted whole-config constructor, and lets a stage's own options through
    planted = "class S:\n    def __init__(self, cfg):\n        pass\n"
    assert whole_config_inits(planted) == ["line 2: __init__(self, cfg)"]
    assert whole_config_inits("class S:\n    def __init__(self, opts, runtime):\n        pass\n") == []
