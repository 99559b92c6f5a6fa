"""Each package is one kind of thing: the model package is pure PyTorch (no Beam, click or
pyarrow), every module of the Beam job uses Beam and the job loads no click, and reading a run's
output back (``s2s show``) loads no torch."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = ("apache_beam", "click", "pyarrow")


def test_import_s2s_model_loads_no_pipeline_libraries() -> None:
    code = (
        "import sys, s2s_model\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_the_check_would_catch_a_forbidden_import() -> None:
    code = (
        "import sys, s2s_model, click\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "click" in result.stdout


def _loaded(imports: str, prefixes: tuple[str, ...]) -> list[str]:
    code = (
        f"import sys\n{imports}\n"
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & {set(prefixes)!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return [name for name in result.stdout.strip().split(",") if name]


def test_the_beam_job_loads_no_click() -> None:
    assert _loaded("import pipeline.run, pipeline.__main__", ("click", "apache_beam")) == [
        "apache_beam"
    ]


def test_reading_a_runs_output_loads_no_torch() -> None:
    assert _loaded("import pipeline.show, s2s_cli.main", ("torch", "pyarrow")) == ["pyarrow"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_pipeline_module_uses_beam() -> None:
    modules = [p for p in (ROOT / "pipeline").glob("*.py") if p.name not in {"__init__.py",
               "__main__.py"}]  # fmt: skip
    assert len(modules) >= 10
    without = [p.name for p in modules if "apache_beam" not in _imports(p)]
    assert without == []
    assert [p.name for p in modules if "click" in _imports(p)] == []
