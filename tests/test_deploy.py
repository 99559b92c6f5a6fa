"""Everything in deploy/ checked without Docker, a cloud or Airflow: the image's pins and files,
the hash locks, every flag named anywhere against the pipeline's options, every manifest, the
Flex Template metadata, the DAG (imported with a stub for Airflow, for every runner; a real
Airflow runs it in tests/test_airflow.py) and the CronJob (against the Kubernetes schema, and its
command run with bash up to the pipeline)."""

from __future__ import annotations

import argparse
import ast
import copy
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from pipeline.options import OptionsError, SummarizeOptions, _all_flags_parser, parse_options

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "s2s-summarize"
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
LOCK = DEPLOY / "requirements.lock"
CUDA_LOCK = DEPLOY / "requirements-cuda.lock"
REQUIREMENTS_IN = DEPLOY / "requirements.in"
DAG_FILE = DEPLOY / "airflow" / "s2s_summarize_dag.py"
CRONJOB = DEPLOY / "kubernetes" / "cronjob.yaml"
FLINK_MANIFEST = DEPLOY / "flink" / "flink-session.yaml"
OPTIONS_FILES = sorted(DEPLOY.rglob("*.options"))
TEXT_SUFFIXES = {".sh", ".yaml", ".yml", ".json", ".md", ".py", ".options", ".in", ""}
# Flags in deploy/ that belong to other programs than the pipeline, with the program.
NOT_PIPELINE_FLAGS = {"--worker_pool": "the Beam SDK container's boot (worker pool sidecar)"}
# --flag words written with underscores: only Beam pipeline flags look like that here (gcloud,
# docker, pip and the Java job servers spell theirs with hyphens).
UNDERSCORE_FLAG = re.compile(r"--[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
ANY_FLAG = re.compile(r"--[a-z][a-z0-9_]*\b")
PIPELINE_COMMAND = re.compile(r"-m pipeline\b|\bs2s summarize\b")
GCLOUD_PARAMETER = re.compile(r"(?:\^~\^|~)([a-z][a-z0-9_]*)=")
SCHEDULED_DATE = "2025-06-01"
PREVIOUS_DATE = "2025-05-31"  # across a month boundary
# The CronJob's timeZone is GA from Kubernetes 1.27; the newest schema kubernetes-validate bundles.
KUBERNETES_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]
PLACEHOLDERS = {"PROJECT": "p", "REGION": "us-central1", "BUCKET": "b", "IMAGE": "img:tag"}


def _dependencies() -> list[str]:
    # pyproject.toml's [project] dependencies, as installed (make test reinstalls on a change).
    return [
        line for line in importlib.metadata.requires(DISTRIBUTION) or [] if "extra ==" not in line
    ]


def _pinned(name: str) -> str:
    for line in _dependencies():
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == canonicalize_name(name):
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"pyproject.toml does not pin {name}"
            return spec.version
    raise AssertionError(f"{name} is not a dependency in pyproject.toml")


def _deploy_files() -> Iterator[Path]:
    for path in sorted(DEPLOY.rglob("*")):
        text = path.suffix in TEXT_SUFFIXES and not path.name.endswith(".lock")
        if path.is_file() and text and "__pycache__" not in path.parts:
            yield path


def _known_flags() -> set[str]:
    # Every flag of every Beam options class, ours included: what the pipeline's parser knows.
    return set(_all_flags_parser()._option_string_actions)


# -- the image ---------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_base_image_is_the_pinned_beam_sdk_for_our_python() -> None:
    beam = _pinned("apache-beam")
    images = [args.split()[0] for op, args in _dockerfile_instructions() if op == "FROM"]
    sdk = [image for image in images if image.startswith("apache/beam_python")]
    assert len(sdk) == 1, images
    match = re.fullmatch(r"apache/beam_python(\d+)\.(\d+)_sdk:(\S+)", sdk[0])
    assert match, sdk[0]
    assert match.group(3) == beam, f"base image {sdk[0]} but pyproject.toml pins beam {beam}"
    python = f"{match.group(1)}.{match.group(2)}"
    requires_python = importlib.metadata.metadata(DISTRIBUTION)["Requires-Python"]
    assert SpecifierSet(requires_python).contains(python), (python, requires_python)
    args = dict(
        args.split("=", 1) for op, args in _dockerfile_instructions() if op == "ARG" and "=" in args
    )
    assert args["TORCH_VERSION"] == _pinned("torch")


def test_dockerfile_copies_files_that_exist_and_reach_the_build_context() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = [line[1:].removesuffix("/**") for line in ignore if line.startswith("!")]
    copies = [args for op, args in _dockerfile_instructions() if op == "COPY"]
    sources = [source for args in copies if "--from=" not in args for source in args.split()[:-1]]
    assert sources, "the Dockerfile copies nothing from the repository"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert source in allowed, f"COPY {source}: excluded by Dockerfile.dockerignore"
    # The Flex Template's entry file is one the image holds.
    (entry,) = re.findall(r"FLEX_TEMPLATE_PYTHON_PY_FILE=/opt/s2s/(\S+)", DOCKERFILE.read_text())
    assert any(entry in args.split() for args in copies), entry
    assert ("ENTRYPOINT", '["/opt/apache/beam/boot"]') in _dockerfile_instructions()


def _locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile --generate-hashes file."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        assert match, f"{path.name}: not a pinned, hashed requirement: {line[:80]}"
        hashes = re.findall(r"sha256:([0-9a-f]{64})", match.group(3))
        pins[canonicalize_name(match.group(1))] = (match.group(2), hashes)
    return pins


def test_locks_pin_every_package_by_hash_and_agree_with_pyproject() -> None:
    locked = _locked(LOCK)
    assert locked["apache-beam"][0] == _pinned("apache-beam")
    assert "torch" not in locked, "torch comes from PyTorch's CPU index or the CUDA lock"
    wanted = [Requirement(line) for line in _requirement_lines(REQUIREMENTS_IN)]
    in_file = {canonicalize_name(r.name): r for r in wanted}
    for line in _dependencies():
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name == "torch":
            continue
        assert name in in_file, f"{name} is in pyproject.toml but not in requirements.in"
        assert in_file[name].specifier == requirement.specifier, name
        assert requirement.specifier.contains(locked[name][0]), (name, locked[name][0])
    for requirement in wanted:
        assert canonicalize_name(requirement.name) in locked, f"{requirement} is not locked"

    cuda = _locked(CUDA_LOCK)
    assert cuda["torch"][0] == _pinned("torch")
    assert any(name.startswith("nvidia-") for name in cuda), "the CUDA lock has no CUDA libraries"
    for package, (version, _) in cuda.items():
        if package in locked:
            assert locked[package][0] == version, f"{package}: {version} in the CUDA lock"


def _requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_requirements_hold_what_the_cpu_torch_wheel_requires() -> None:
    # torch is installed with --no-deps, so its own requirements must be in the lock.
    listed = {canonicalize_name(Requirement(x).name) for x in _requirement_lines(REQUIREMENTS_IN)}
    needed = set()
    for line in importlib.metadata.requires("torch") or []:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if requirement.marker and "extra" in str(requirement.marker):
            continue
        if name.startswith(("nvidia-", "cuda-")) or name == "triton":  # the CUDA build's
            continue
        needed.add(name)
    assert needed, "installed torch lists no requirements"
    assert needed <= listed, f"missing from requirements.in: {sorted(needed - listed)}"


# -- flags -------------------------------------------------------------------------------------


def _logical_lines(text: str) -> list[str]:
    return re.sub(r"\\\n", " ", text).splitlines()


def flags_named(path: Path, text: str) -> set[str]:
    """Pipeline flags a deploy/ file names: any --flag_with_underscores anywhere, plus every
    --flag of an options file, of a `python -m pipeline` command, and template parameters."""
    found = set(UNDERSCORE_FLAG.findall(text))
    if path.suffix == ".options":
        found |= {line.split("=", 1)[0] for line in text.splitlines() if line.startswith("--")}
    for line in _logical_lines(text):
        command = PIPELINE_COMMAND.search(line)
        if command:
            found |= set(ANY_FLAG.findall(line[command.end() :]))
        found |= {f"--{name}" for name in GCLOUD_PARAMETER.findall(line)}
    if path.name == "metadata.json":
        found |= {f"--{p['name']}" for p in json.loads(text)["parameters"]}
    return found - set(NOT_PIPELINE_FLAGS)


def test_flag_extraction_catches_an_unknown_flag() -> None:
    text = "python -m pipeline --input x --outptu y --max_batch_tokenz 3 \\\n  --device cpu\n"
    flags = flags_named(Path("x.sh"), text)
    assert {"--outptu", "--max_batch_tokenz", "--device"} <= flags
    assert not {"--outptu", "--max_batch_tokenz"} <= _known_flags()
    assert flags_named(Path("a.options"), "--runnr=Flink\n# --x\n") == {"--runnr"}
    assert flags_named(Path("l.sh"), 'params="^~^input=$1~beam_sise=3"') == {
        "--input",
        "--beam_sise",
    }


def test_every_flag_named_in_deploy_exists_in_the_pipeline_options() -> None:
    known = _known_flags()
    unknown = {}
    seen = set()
    for path in _deploy_files():
        flags = flags_named(path, path.read_text(encoding="utf-8"))
        seen |= flags
        if flags - known:
            unknown[str(path.relative_to(ROOT))] = sorted(flags - known)
    assert not unknown, f"flags that no pipeline options class defines: {unknown}"
    # The scan really read the recipes.
    assert {"--input", "--output", "--if_finished", "--runner", "--job_endpoint"} <= seen
    assert {"--environment_type", "--number_of_worker_harness_threads", "--torch_threads"} <= seen


@pytest.mark.parametrize("path", OPTIONS_FILES, ids=lambda p: p.parent.name + "/" + p.name)
def test_options_files_parse_as_pipeline_flags(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for name, value in PLACEHOLDERS.items():
        text = text.replace("${" + name + "}", value)
    flags = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert flags and all(flag.startswith("--") for flag in flags), path
    options = parse_options(["--input", "in/*", "--output", "out", *flags])
    assert options.view_as(SummarizeOptions).torch_threads >= 1
    assert options.get_all_options()["runner"]


# -- manifests ---------------------------------------------------------------------------------


def _manifests() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))


@pytest.mark.parametrize("path", _manifests(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_manifest_parses(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    documents = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
    assert documents and all(isinstance(d, dict) for d in documents)
    for document in documents:
        if "apiVersion" in document:
            assert document.get("kind") and document.get("metadata", {}).get("name"), path


def _containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = document.get("spec", {})
    if document["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template = spec.get("template", {}).get("spec", {})
    return list(template.get("containers", []))


def test_kubernetes_workloads_set_requests_and_limits_and_pin_beam() -> None:
    beam = _pinned("apache-beam")
    workloads = [
        d
        for path in (CRONJOB, FLINK_MANIFEST)
        for d in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if d["kind"] in ("Deployment", "CronJob")
    ]
    assert len(workloads) >= 4
    images = []
    for workload in workloads:
        for container in _containers(workload):
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), container["name"]
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), container["name"]
            images.append(container["image"])
    job_servers = [i for i in images if "_job_server:" in i]
    assert job_servers and all(i.endswith(f":{beam}") for i in job_servers), job_servers


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_cronjob_is_valid_against_the_kubernetes_schema(version: str) -> None:
    (cronjob,) = yaml.safe_load_all(CRONJOB.read_text(encoding="utf-8"))
    # strict: a field the schema does not know (a typo) is an error, not ignored.
    kubernetes_validate.validate(cronjob, version, strict=True)
    # The validator reads its bundled schemas and sees what our own checks would miss.
    typo = copy.deepcopy(cronjob)
    typo["spec"]["concurencyPolicy"] = typo["spec"].pop("concurrencyPolicy")
    wrong_type = copy.deepcopy(cronjob)
    wrong_type["spec"]["jobTemplate"]["spec"]["backoffLimit"] = "two"
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, version, strict=True)


def test_cronjob_forbids_overlap_and_writes_one_directory_per_scheduled_date(
    tmp_path: Path,
) -> None:
    (cronjob,) = yaml.safe_load_all(CRONJOB.read_text(encoding="utf-8"))
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = _containers(cronjob)
    assert container["command"] == ["/bin/bash", "-c"]
    script = container["args"][0]
    assert "exec python -m pipeline" in script
    # Run the script with bash up to the pipeline: print its argv instead of running it.
    argv_file = tmp_path / "argv"
    stub = script.replace("exec python -m pipeline", f"printf '%s\\n' > {argv_file}")
    minutes = int(subprocess.check_output(["date", "-u", "-d", SCHEDULED_DATE, "+%s"])) // 60
    for job_name in (f"s2s-summarize-{minutes}", f"s2s-summarize-{minutes + 60 * 23}"):
        env = {**os.environ, "JOB_NAME": job_name}
        subprocess.run(["bash", "-c", stub], env=env, check=True, timeout=30)
        argv = argv_file.read_text().splitlines()
        options = parse_options(argv).view_as(SummarizeOptions)
        assert options.output == f"/data/summaries/{SCHEDULED_DATE}"
        assert options.input == [f"/data/incoming/{SCHEDULED_DATE}/"]
        assert options.if_finished == "skip"
        # The previous date's output is reused; where it holds no finished run, it is skipped.
        assert options.reuse == [f"/data/summaries/{PREVIOUS_DATE}"]
        assert options.if_reuse_unusable == "skip"
    manual = subprocess.run(
        ["bash", "-c", stub], env={**os.environ, "JOB_NAME": "s2s-summarize-manual"}, timeout=30
    )
    assert manual.returncode == 2


# -- Dataflow Flex Template --------------------------------------------------------------------


def _load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def flex_template() -> types.ModuleType:
    return _load(DEPLOY / "dataflow" / "flex_template.py", "flex_template")


def test_metadata_json_is_generated_from_the_options(flex_template: types.ModuleType) -> None:
    committed = (DEPLOY / "dataflow" / "metadata.json").read_text(encoding="utf-8")
    assert committed == flex_template.render(), (
        "deploy/dataflow/metadata.json is stale: run python deploy/dataflow/flex_template.py"
    )
    names = {p["name"] for p in json.loads(committed)["parameters"]}
    ours = argparse.ArgumentParser(add_help=False)
    SummarizeOptions._add_argparse_args(ours)
    public = {
        action.option_strings[0][2:]
        for action in ours._actions
        if action.option_strings and action.help != argparse.SUPPRESS
    }
    switches = [a for a in ours._actions if isinstance(a, argparse._StoreConstAction)]
    on = {a.dest for a in switches if a.const is True}
    negations = {a.option_strings[0][2:] for a in switches if a.const is False and a.dest in on}
    assert "allow_repeat_words" in negations and "no_ban_unk" in negations
    assert names == public - negations
    required = {p["name"] for p in json.loads(committed)["parameters"] if not p["isOptional"]}
    assert required == {"input", "output"}


def test_template_switches_become_flags(flex_template: types.ModuleType) -> None:
    argv = flex_template.launcher_argv(
        ["--input=gs://b/in/*", "--output=gs://b/out", "--overwrite=true", "--ban_unk=false",
         "--no_refill=False", "--no_repeat_words=false", "--beam_size=3", "--if_finished=skip",
         "--runner=DataflowRunner"]
    )  # fmt: skip
    assert argv == [
        "--input=gs://b/in/*",
        "--output=gs://b/out",
        "--overwrite",
        "--no_ban_unk",
        "--allow_repeat_words",
        "--beam_size=3",
        "--if_finished=skip",
        "--runner=DataflowRunner",
    ]
    options = parse_options(argv).view_as(SummarizeOptions)
    assert options.overwrite and options.refill and options.decode_overrides()["ban_unk"] is False
    assert options.decode_overrides()["no_repeat_words"] is False
    with pytest.raises(SystemExit, match="true or false"):
        flex_template.launcher_argv(["--overwrite=maybe"])
    with pytest.raises(OptionsError):  # what the launcher would hit without the rewrite
        parse_options(["--overwrite=true"])


def test_flex_entry_file_is_python_m_pipeline(tmp_path: Path) -> None:
    entry = DEPLOY / "dataflow" / "flex_main.py"
    result = subprocess.run(
        [sys.executable, str(entry), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "python -m pipeline" in result.stdout and "--if_finished" in result.stdout


# -- Airflow -----------------------------------------------------------------------------------
# The DAG under a real Airflow with DirectRunner: tests/test_airflow.py. Here, with Airflow
# stubbed, the command it makes of the Variable for every runner, Dataflow included.

FLINK_VARIABLE = {
    "runner": "PortableRunner",
    "input": "/data/incoming/{{ ds }}/",
    "output": "/data/summaries/{{ ds }}",
    "python": "/opt/s2s/bin/python",
    "options": {"job_endpoint": "beam-job-server:8099", "environment_type": "EXTERNAL",
                "environment_config": "localhost:50000", "parallelism": 8, "torch_threads": 1},
}  # fmt: skip
DIRECT_VARIABLE = {
    **FLINK_VARIABLE,
    "runner": "DirectRunner",
    # Each value reaches the pipeline as one argument, whatever bash would make of it.
    "options": {"direct_num_workers": 2, "job_name": '"it\'s" $HOME `x` {{ ds }}'},
}
DATAFLOW_VARIABLE = {
    "input": ["gs://b/incoming/{{ ds }}/*.jsonl", "gs://b/late/{{ ds_nodash }}/*"],
    "output": "gs://b/summaries/{{ ds_nodash }}",
    "options": {"project": "p", "region": "europe-west4", "temp_location": "gs://b/tmp",
                "sdk_container_image": "img:tag", "max_num_workers": 8, "id_field": None},
}  # fmt: skip


class _StubDAG:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.tasks: list[_StubBashOperator] = []

    def __enter__(self) -> _StubDAG:
        _StubDAG.current = self
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    current: _StubDAG | None = None


class _StubBashOperator:
    """Airflow's BashOperator as far as the DAG uses it: its templated fields (bash_command,
    env) rendered as Airflow renders them, by render_template_fields."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.bash_command: str = kwargs["bash_command"]
        self.env: dict[str, str] | None = kwargs.get("env")
        assert _StubDAG.current is not None, "operator created outside the DAG"
        _StubDAG.current.tasks.append(self)

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        self.bash_command = _render(self.bash_command)
        self.env = _render(self.env)


def _render(value: Any) -> Any:
    """Airflow's templates (Jinja, with the context Airflow gives them) for SCHEDULED_DATE, in
    strings, lists and dicts."""
    if isinstance(value, list):
        return [_render(item) for item in value]
    if isinstance(value, dict):
        return {key: _render(item) for key, item in value.items()}
    if not isinstance(value, str):
        return value

    def ds_add(ds: str, days: int) -> str:
        return str(dt.date.fromisoformat(ds) + dt.timedelta(days=days))

    macros = types.SimpleNamespace(ds_add=ds_add)
    context = {"ds": SCHEDULED_DATE, "ds_nodash": SCHEDULED_DATE.replace("-", ""), "macros": macros}
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(value).render(context)


def _load_dag(monkeypatch: pytest.MonkeyPatch, variable: Any) -> tuple[_StubDAG, list[str]]:
    """Import the DAG with Airflow stubbed and ``variable`` as the Variable's JSON; returns the
    DAG and the list the Variable's reads are recorded in."""
    imported = {
        node.module
        for node in ast.walk(ast.parse(DAG_FILE.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    stubs = {name for name in imported if name.split(".")[0] == "airflow"}
    assert stubs == {"airflow.sdk", "airflow.providers.standard.operators.bash"}, stubs
    for name in stubs:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(name))
    reads: list[str] = []

    def get(key: str, default: Any = None, deserialize_json: bool = False) -> Any:
        assert deserialize_json
        reads.append(key)
        return default if variable is None else variable

    sdk = sys.modules["airflow.sdk"]
    monkeypatch.setattr(sdk, "DAG", _StubDAG, raising=False)
    monkeypatch.setattr(sdk, "Variable", types.SimpleNamespace(get=get), raising=False)
    bash = sys.modules["airflow.providers.standard.operators.bash"]
    monkeypatch.setattr(bash, "BashOperator", _StubBashOperator, raising=False)
    _StubDAG.current = None
    _load(DAG_FILE, "s2s_summarize_dag")
    dag = _StubDAG.current
    assert dag is not None and dag.kwargs["max_active_runs"] == 1
    assert dag.kwargs["catchup"] is False and dag.kwargs["default_args"]["retries"] == 2
    assert not reads, "the DAG reads the Variable while its file is parsed"
    return dag, reads


def _run_task(task: _StubBashOperator, tmp_path: Path) -> list[str]:
    """The task's command for SCHEDULED_DATE, run with bash as the BashOperator runs it, up to
    the pipeline: the argv it would start."""
    task.render_template_fields({})
    assert task.kwargs["append_env"] is True and task.kwargs["skip_on_exit_code"] is None
    assert task.env is not None
    argv_file = tmp_path / "argv"
    assert "exec " in task.bash_command and "{{" not in task.bash_command
    stub = task.bash_command.replace("exec ", f"printf '%s\\n' > {argv_file} ")
    env = {**os.environ, **task.env}
    subprocess.run(["bash", "-c", stub], env=env, check=True, timeout=30, capture_output=True)
    return argv_file.read_text().splitlines()


def _parsed(argv: list[str]) -> SummarizeOptions:
    unknown = {a.split("=", 1)[0] for a in argv} - _known_flags()
    assert not unknown, f"DAG flags that no pipeline options class defines: {unknown}"
    parsed = parse_options(argv).view_as(SummarizeOptions)
    assert parsed.if_finished == "skip"
    # The previous date's output is reused; where it holds no finished run, it is skipped.
    previous = parsed.output.replace(SCHEDULED_DATE, PREVIOUS_DATE).replace(
        SCHEDULED_DATE.replace("-", ""), PREVIOUS_DATE.replace("-", "")
    )
    assert previous != parsed.output and parsed.reuse == [previous]
    assert parsed.if_reuse_unusable == "skip"
    return parsed


@pytest.mark.parametrize("variable", [None, DATAFLOW_VARIABLE], ids=["unset", "set"])
def test_airflow_dag_on_dataflow(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: dict[str, Any] | None
) -> None:
    (dag, reads) = _load_dag(monkeypatch, variable)
    (task,) = dag.tasks
    argv = _run_task(task, tmp_path)
    assert reads == ["s2s_summarize"], "the Variable is read as the task starts"
    assert argv[:3] == ["python3", "-m", "pipeline"]
    parsed = _parsed(argv[3:])
    flags = parsed.get_all_options()
    assert parsed.runner_name() == "DataflowRunner"
    assert flags["job_name"] == "s2s-summarize-20250601"
    assert flags["number_of_worker_harness_threads"] == 1 and parsed.torch_threads == 1
    if variable is None:  # today's bucket layout
        assert parsed.output == f"gs://BUCKET/summaries/{SCHEDULED_DATE}"
        assert parsed.input == [f"gs://BUCKET/incoming/{SCHEDULED_DATE}/"]
        assert parsed.id_field == "id" and flags["max_num_workers"] == 50
    else:
        assert parsed.output == "gs://b/summaries/20250601"
        assert parsed.input == [
            f"gs://b/incoming/{SCHEDULED_DATE}/*.jsonl",
            "gs://b/late/20250601/*",
        ]
        assert (flags["project"], flags["region"]) == ("p", "europe-west4")
        assert flags["sdk_container_image"] == "img:tag" and flags["max_num_workers"] == 8
        assert parsed.id_field is None  # null drops a flag the DAG sets


@pytest.mark.parametrize("variable", [FLINK_VARIABLE, DIRECT_VARIABLE], ids=["flink", "direct"])
def test_airflow_dag_on_other_runners(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: dict[str, Any]
) -> None:
    (dag, _) = _load_dag(monkeypatch, variable)
    (task,) = dag.tasks
    argv = _run_task(task, tmp_path)
    assert argv[:3] == ["/opt/s2s/bin/python", "-m", "pipeline"]
    parsed = _parsed(argv[3:])
    assert parsed.runner_name() == variable["runner"]
    assert parsed.output == f"/data/summaries/{SCHEDULED_DATE}"
    assert parsed.input == [f"/data/incoming/{SCHEDULED_DATE}/"]
    assert parsed.id_field == "id"
    assert not any("worker_harness" in word for word in argv), "a Dataflow flag"
    for key, value in variable["options"].items():  # each one word, as given, rendered
        assert f"--{key}={_render(value)}" in argv


@pytest.mark.parametrize(
    ("variable", "words"),
    [
        ([], "must hold a JSON object"),
        ({"runer": "DirectRunner"}, "unknown key(s) ['runer']"),
        ({"options": {"output": "/x/{{ ds }}"}}, "set 'output' as its own key"),
        ({"output": "/data/summaries"}, "must name the date"),
        ({"options": ["--id_field=id"]}, "'options' must be an object"),
    ],
)
def test_airflow_dag_fails_the_task_on_a_variable_it_cannot_run(
    monkeypatch: pytest.MonkeyPatch, variable: Any, words: str
) -> None:
    (dag, _) = _load_dag(monkeypatch, variable)  # the file still parses
    (task,) = dag.tasks
    with pytest.raises(ValueError, match=re.escape(words)):
        task.render_template_fields({})


# -- scripts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", sorted(DEPLOY.rglob("*.sh")), ids=lambda p: str(p.relative_to(DEPLOY))
)
def test_shell_scripts_parse(path: Path) -> None:
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert os.access(path, os.X_OK), f"{path} is not executable"


def test_readme_commands_name_real_files() -> None:
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    paths = set(re.findall(r"\bdeploy/[\w./-]+\w", text))
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"deploy/README.md names files that do not exist: {missing}"
    for line in _logical_lines(text):
        if line.lstrip().startswith("python -m pipeline"):
            shlex.split(line)  # every documented command is well quoted
