"""The engine layer never imports the framework above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ACTORS = Path(__file__).resolve().parent.parent / "actors"


def imported_modules(path: Path) -> list[str]:
    """Every module named by an import statement in ``path``, including those under TYPE_CHECKING."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_actors_package_is_found() -> None:
    """The layering check below looks at real files, not an empty directory."""
    assert (ACTORS / "__init__.py").is_file()
    assert len(list(ACTORS.rglob("*.py"))) > 1


@pytest.mark.parametrize(
    "path", sorted(ACTORS.rglob("*.py")), ids=lambda p: str(p.relative_to(ACTORS.parent))
)
def test_actors_never_imports_dataflow(path: Path) -> None:
    """No module under actors/ imports dataflow, with `import` or `from ... import`."""
    offending = [
        name for name in imported_modules(path) if name == "dataflow" or name.startswith("dataflow.")
    ]
    assert offending == [], f"{path.name} imports {offending}"


def test_the_check_sees_both_import_forms(tmp_path: Path) -> None:
    """The import scanner catches `import dataflow.x` and `from dataflow import y`."""
    probe = tmp_path / "probe.py"
    probe.write_text("import dataflow.errors\nfrom dataflow import DataFlow\nfrom . import sibling\n")
    assert imported_modules(probe) == ["dataflow.errors", "dataflow"]
