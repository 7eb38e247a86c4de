"""Layers import downwards only: file storage knows nothing of models or training, and no
module inside a sub-package imports the package root (which imports every layer)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vaelab

PACKAGE = Path(vaelab.__file__).parent


def _imports(path: Path) -> set[str]:
    """Absolute names of the vaelab modules ``path`` imports, lazily or not."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("vaelab"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.startswith("vaelab"):
                names.add(module)
                names.update(f"{module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("low", ["files", "version", "errors", "config"])
def test_low_modules_import_nothing_above_them(low):
    above = ("vaelab.models", "vaelab.training", "vaelab.io", "vaelab.evaluation", "vaelab.cli")
    bad = sorted(n for n in _imports(PACKAGE / f"{low}.py") if n.startswith(above))
    assert not bad, f"vaelab/{low}.py imports {bad}"


def test_no_sub_package_imports_the_package_root():
    bad = []
    for path in PACKAGE.glob("*/**/*.py"):
        names = _imports(path)
        if "vaelab" in names or any(n.count(".") == 1 and n.split(".")[1] in vaelab.__all__ + ["__version__"]
                                    for n in names):
            bad.append(str(path.relative_to(PACKAGE)))
    assert not bad, f"these import from the vaelab package root: {bad}"


def test_the_version_has_one_home():
    from vaelab.version import __version__

    assert vaelab.__version__ is __version__
