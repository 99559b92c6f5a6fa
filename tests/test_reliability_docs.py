"""docs/RELIABILITY.md names, for every guarantee, a test that exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "RELIABILITY.md"
REFERENCE = re.compile(r"`(test_\w+\.py)::(test_\w+)`")


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def _test_file(module: str) -> Path:
    """tests/<package>/<module> (tests mirror the packages), or tests/<module>."""
    found = sorted((ROOT / "tests").glob(f"**/{module}"))
    assert len(found) == 1, f"{module}: {found}"
    return found[0]


def test_every_test_named_in_reliability_md_exists() -> None:
    references = REFERENCE.findall(DOC.read_text(encoding="utf-8"))
    assert len(references) >= 25
    missing = [
        f"{module}::{name}"
        for module, name in references
        if name not in _test_functions(_test_file(module))
    ]
    assert missing == []


def test_every_guarantee_names_a_test() -> None:
    # The guarantees are the bullets before the prose sections that start at "## How".
    guarantees = DOC.read_text(encoding="utf-8").split("## How")[0]
    bullets = [b for b in re.split(r"\n(?=- )", guarantees) if b.startswith("- ")]
    assert len(bullets) >= 25
    assert [b.splitlines()[0] for b in bullets if not REFERENCE.search(b)] == []
