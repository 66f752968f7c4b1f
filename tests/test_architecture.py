"""The package's layering (docs/ARCHITECTURE.md): no import cycles, and every module imports only from its
own layer or the layers below. Imports inside functions count too (they are edges all the same)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import medusa_mtl

ROOT = Path(medusa_mtl.__file__).parent

# lowest first; a module belongs to the first layer whose prefix matches
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("medusa_mtl", "medusa_mtl.atomic", "medusa_mtl.errors", "medusa_mtl.options", "medusa_mtl.provenance",
              "medusa_mtl.resize", "medusa_mtl.losses")),
    ("tasks", ("medusa_mtl.metrics", "medusa_mtl.tasks")),
    ("data", ("medusa_mtl.data",)),
    ("models", ("medusa_mtl.models",)),
    ("engine", ("medusa_mtl.engine",)),
    ("reports", ("medusa_mtl.reports",)),
    ("cli", ("medusa_mtl.cli", "medusa_mtl.__main__")),
]


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _layer(module: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "medusa_mtl"):
            return i
        if module == "medusa_mtl" and "medusa_mtl" in prefixes:
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py: add it to LAYERS")


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in MODULES and m != module}


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS])
def test_layers_import_only_downward(layer: str) -> None:
    level = [name for name, _ in LAYERS].index(layer)
    upward = [
        f"{m} -> {d} ({LAYERS[_layer(d)][0]})"
        for m in sorted(GRAPH) if _layer(m) == level
        for d in sorted(GRAPH[m]) if _layer(d) > level
    ]
    assert not upward, f"layer {layer!r} imports from a higher layer: {upward}"


def test_walker_sees_function_level_imports() -> None:
    """The check is only as good as its parser: a lazy import inside a function is an edge too."""
    assert "medusa_mtl.engine.training" in GRAPH["medusa_mtl.engine.evaluation"]
    assert "medusa_mtl.models.registry" in GRAPH["medusa_mtl.models.medusa"]


def test_short_form_create_model() -> None:
    model = medusa_mtl.create_model("mt_baseline", tasks=["semseg", "depth"], dataset="nyud")
    assert sorted(model.tasks) == ["depth", "semseg"]
    assert medusa_mtl.list_models() == medusa_mtl.models.list_models()
    assert medusa_mtl.list_models("m*") == ["medusa", "mt_baseline", "mtan", "mtinet"]
    assert medusa_mtl.list_models(["pad*", "single_*"]) == ["padnet", "single_task"]
    assert medusa_mtl.list_models("nothing*") == []
    assert medusa_mtl.is_model("mtinet") and not medusa_mtl.is_model("mti-net")
    with pytest.raises(AttributeError):
        medusa_mtl.no_such_thing  # noqa: B018
