"""The import graph of converter/ and device_runtime/, read with `ast` (imports inside functions too):
no cycles, no upward imports across the converter's layers, and a device side that never reaches the host."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("converter", "device_runtime")

# Layer of each converter group: imports between groups go strictly down. Groups of one rank that
# are subpackages (modeling / data, compress / export) never import each other; the single-file
# groups of one rank (config / errors / files, cli / __main__) may, and the cycle check covers them.
LAYERS = {"converter": 0, "converter.config": 0, "converter.errors": 0, "converter.files": 0,
          "converter.modeling": 1, "converter.data": 1, "converter.train": 2,
          "converter.compress": 3, "converter.export": 3, "converter.jobs": 4,
          "converter.cli": 5, "converter.__main__": 5}
HOST_ONLY = ("converter", "tensorflow", "tf_keras", "transformers", "torch")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _imported(node: ast.AST, module: str, is_package: bool, modules) -> list[str]:
    """Dotted names an Import / ImportFrom node brings in; `from a import b` is a.b when that is a module."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: resolve against this module's package
        package = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join(package + ([base] if base else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


def import_edges() -> dict[tuple[str, str], str]:
    """{(importer, imported name): "file:line"} for every import in every module, at any depth."""
    modules, edges = _modules(), {}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name in _imported(node, module, path.name == "__init__.py", modules):
                edges.setdefault((module, name), f"{path.relative_to(ROOT)}:{node.lineno}")
    return edges


def internal_edges() -> dict[tuple[str, str], str]:
    """The edges between our own modules."""
    modules = _modules()
    return {(source, name): where for (source, name), where in import_edges().items()
            if name in modules and name != source}


def _group(module: str) -> str | None:
    return max((key for key in LAYERS if module == key or module.startswith(key + ".")), key=len, default=None)


def find_cycle(edges) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    graph: dict[str, list[str]] = {}
    for source, target in sorted(edges):
        graph.setdefault(source, []).append(target)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer_violations(edges: dict) -> list[str]:
    """Every converter import that goes up or sideways across the layers, as "file:line a -> b"."""
    bad = []
    for (source, target), where in sorted(edges.items()):
        if not (source.startswith("converter") and target.startswith("converter")):
            continue
        low, high = _group(target), _group(source)
        if low is None or high is None:
            bad.append(f"{where} {source} -> {target}: module outside LAYERS")
        elif low == high or LAYERS[low] < LAYERS[high]:
            continue
        elif LAYERS[low] == LAYERS[high] and not (ROOT / Path(*low.split("."))).is_dir() \
                and not (ROOT / Path(*high.split("."))).is_dir():
            continue
        else:
            bad.append(f"{where} {source} (layer {LAYERS[high]}) -> {target} (layer {LAYERS[low]})")
    return bad


def test_the_graph_sees_imports_inside_functions():
    edges = internal_edges()
    assert ("converter.cli", "converter.jobs.convert") in edges  # imported inside a command body
    assert ("converter.__main__", "converter.cli") in edges
    assert ("converter.compress.structured", "converter.modeling.names") in edges  # from a import module
    assert ("converter.compress.structured", "converter.modeling") not in edges


def test_no_import_cycles():
    edges = internal_edges()
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle) + "\n" + "\n".join(
        f"  {edges[(a, b)]} {a} -> {b}" for a, b in zip(cycle, cycle[1:]))


def test_converter_imports_only_downward():
    bad = layer_violations(internal_edges())
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_device_runtime_never_imports_the_host_side():
    bad = [f"{where} {source} -> {name}" for (source, name), where in sorted(import_edges().items())
           if source.startswith("device_runtime") and name.split(".")[0] in HOST_ONLY]
    assert not bad, "device_runtime imports host-only modules:\n" + "\n".join(bad)


def test_the_checks_catch_a_cycle_and_upward_and_sideways_imports():
    assert find_cycle({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == ["a", "b", "c", "a"]
    assert find_cycle({("a", "b"), ("a", "c"), ("b", "c")}) is None
    edges = {("converter.modeling.bert", "converter.jobs.convert"): "m.py:1",
             ("converter.data.splits", "converter.modeling.names"): "d.py:2",
             ("converter.export.stats", "converter.compress.prune"): "e.py:3",
             ("converter.jobs.slim", "converter.compress.structured"): "j.py:4",
             ("converter.config", "converter.errors"): "c.py:5",
             ("converter.compress.qat", "converter.compress.quant.registry"): "q.py:6"}
    assert layer_violations(edges) == [
        "d.py:2 converter.data.splits (layer 1) -> converter.modeling.names (layer 1)",
        "e.py:3 converter.export.stats (layer 3) -> converter.compress.prune (layer 3)",
        "m.py:1 converter.modeling.bert (layer 1) -> converter.jobs.convert (layer 4)"]
