"""Data flows one way (STYLE): phrases <- guards <- assist <- adapters; adapters never import guards."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Which of our packages each package may import.
ALLOWED = {
    "phrases": {"phrases"},
    "guards": {"guards", "phrases"},
    "assist": {"assist", "guards", "phrases", "adapters"},
    "adapters": {"adapters"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_backward_imports(package):
    bad = []
    for path in (ROOT / package).rglob("*.py"):
        for name in _imports(path) - ALLOWED[package]:
            bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, bad
