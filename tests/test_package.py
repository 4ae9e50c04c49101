"""Package hygiene: exports, laziness, typing marker, one-way imports."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys

from conftest import ROOT

import vtp_lab

# design.md: events (contract) <- io, collect, store <- sessions <- stats, metrics <- reports, plot
# <- widgets <- lab <- cli
LAYERS = {
    "errors": 0,
    "tables": 0,
    "duck": 0,
    "events": 1,
    "canonical": 1,
    "validation": 2,
    "metadata": 2,
    "synth": 2,
    "sources": 2,
    "io": 3,
    "recordings": 3,
    "collect": 3,
    "store": 3,
    "postgres": 3,
    "load": 4,
    "export": 4,
    "sessions": 4,
    "stats": 5,
    "metrics": 5,
    "spark": 6,
    "reports": 6,
    "plot": 6,
    "refresh": 7,
    "widgets": 7,
    "lab": 8,
    "serve": 9,
    "cli": 10,
}


def modules() -> list[tuple[str, str, object]]:
    """Every module of the package (packages' too): (dotted name under vtp_lab, its layer in LAYERS, path)."""
    found = []
    for path in sorted((ROOT / "vtp_lab").rglob("*.py")):
        parts = path.relative_to(ROOT / "vtp_lab").with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if parts:
            found.append((".".join(parts), parts[0], path))
    return found


def isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_matches_exports():
    assert vtp_lab.__all__ == sorted(vtp_lab.__all__)
    for name in vtp_lab.__all__:
        assert getattr(vtp_lab, name) is not None
    assert sorted(dir(vtp_lab)) == vtp_lab.__all__


def test_no_exported_name_is_shadowed_by_a_submodule():
    """Importing a submodule sets it as an attribute of the package: none may hide an exported name."""
    import importlib

    expected = {name: getattr(vtp_lab, name) for name in vtp_lab.__all__}
    for name, _, _ in modules():
        importlib.import_module(f"vtp_lab.{name}")
    for _ in range(2):
        for name, obj in expected.items():
            assert getattr(vtp_lab, name) is obj, name
    assert callable(vtp_lab.validate) and vtp_lab.validate.__module__ == "vtp_lab.validation"


def test_every_module_has_a_sorted_all_of_existing_names():
    import importlib

    for dotted, _, _ in modules():
        module = importlib.import_module(f"vtp_lab.{dotted}")
        assert module.__all__ == sorted(module.__all__, key=isort_key), dotted
        for name in module.__all__:
            assert hasattr(module, name), f"{dotted}.{name}"
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                assert obj.__doc__ and ">>>" in obj.__doc__, f"{dotted}.{name} needs a docstring with an example"


def test_imports_flow_one_way():
    for dotted, layer, path in modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vtp_lab."):
                target = node.module.split(".")[1]
                assert LAYERS[target] <= LAYERS[layer], f"{dotted} imports upward from {target}"


def test_import_is_light():
    heavy = "('polars', 'duckdb', 'pandera', 'altair', 'ipywidgets', 'vtp_lab.cli')"
    code = f"import sys, vtp_lab; print(','.join(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_typed_marker_ships():
    assert (ROOT / "vtp_lab" / "py.typed").exists()
