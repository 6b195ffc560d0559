"""`domain/` holds pure rules: it imports the standard library and other `domain/` modules,
nothing else of vmta and no third-party package (docs/architecture.md, "Packages")."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "src" / "vmta" / "domain"


def imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_domain_imports_only_the_standard_library_and_itself() -> None:
    modules = sorted(DOMAIN.rglob("*.py"))
    assert len(modules) > 40
    outside = {
        f"{path.relative_to(DOMAIN)}: {name}"
        for path in modules
        for name in imported_modules(path)
        if not name.startswith("vmta.domain.")
        and name.split(".")[0] not in sys.stdlib_module_names
        and name != "__future__"
    }
    assert outside == set()
