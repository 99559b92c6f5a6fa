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


def _package_imports(package: str) -> dict[str, set[str]]:
    """Each module of ``package`` -> the modules of ``package`` it imports anywhere (at the top,
    inside functions, under ``TYPE_CHECKING``)."""
    graph: dict[str, set[str]] = {}
    for path in (ROOT / package).glob("*.py"):
        name = f"{package}.{path.stem}"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m.startswith(f"{package}.") and m != name}
    return {name: imports & set(graph) for name, imports in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every module that can reach itself, with one path back to it."""
    found = []
    for start in sorted(graph):
        paths = [[start, nxt] for nxt in sorted(graph[start])]
        seen: set[str] = set()
        while paths:
            path = paths.pop()
            if path[-1] == start:
                found.append(path)
                break
            if path[-1] in seen:
                continue
            seen.add(path[-1])
            paths.extend([*path, nxt] for nxt in sorted(graph[path[-1]]))
    return found


def test_no_import_cycle_in_the_packages() -> None:
    for package in ("pipeline", "s2s_model", "s2s_cli"):
        graph = _package_imports(package)
        assert len(graph) >= 5
        assert _cycles(graph) == [], package


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [cycle[0] for cycle in _cycles(graph)] == ["a", "b", "c"]


def test_the_model_packages_public_names_are_listed_alike() -> None:
    """s2s_model/__init__.py names its API three times (for type checkers, for lazy loading, in
    __all__): the three lists agree, and each name lives in the module it is said to."""
    tree = ast.parse((ROOT / "s2s_model" / "__init__.py").read_text(encoding="utf-8"))
    typed: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for item in node.body:
                assert isinstance(item, ast.ImportFrom) and item.module
                typed.update({alias.name: item.module for alias in item.names})
    import s2s_model

    exports: dict[str, str] = vars(s2s_model)["_EXPORTS"]
    assert typed == exports
    assert sorted(s2s_model.__all__) == sorted(exports)
    for name in s2s_model.__all__:
        assert getattr(s2s_model, name) is not None
