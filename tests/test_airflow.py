"""The shipped DAG under a real Airflow (issue 27): ``airflow dags test`` with DirectRunner.

Airflow lives in its own virtualenv, .venv-airflow (``make airflow-venv``, which ``make test``
runs; every package pinned in deploy/airflow/requirements-test.txt); the pipeline runs with this
interpreter, the project's. A temporary AIRFLOW_HOME holds a SQLite metadata database (``airflow
db migrate``), the DAG file as shipped and the Variable ``s2s_summarize``, set with ``airflow
variables set`` as a user would. Four dates, in order, over the sample shards of examples/debian
and a copy of the bundled model:

1. the first date summarizes every document;
2. the next date's shards are the first date's plus 10% new documents: only those are decoded,
   the rest carried over from the first date's output (``--reuse``);
3. the first date again: already finished (``--if_finished skip``), the task succeeds and
   nothing is decoded or rewritten;
4. a date whose model is corrupt: the task fails, its log holds the pipeline's one-line error,
   and the date has no ``_SUCCESS.json``.

Two settings keep the run short and hermetic, neither of them in the DAG: a cluster policy in the
test's AIRFLOW_HOME sets retries to 0 (``dags test`` would otherwise wait out the DAG's two
10-minute retry delays on day 4), and the Variable passes ``--prism_location`` a file that does
not exist (Beam 2.77's DirectRunner otherwise tries to download Prism from GitHub on every run
before it falls back to its local runner; with it, that fallback is certain and nothing is
fetched).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_VENV = ROOT / ".venv-airflow"
AIRFLOW = AIRFLOW_VENV / "bin" / "airflow"
DAG_FILE = ROOT / "deploy" / "airflow" / "s2s_summarize_dag.py"
REQUIREMENTS = ROOT / "deploy" / "airflow" / "requirements-test.txt"
DAG_ID = "s2s_summarize_daily"
MODEL = ROOT / "s2s_model" / "pretrained" / "debian-synopsis"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.model")
SAMPLE = ROOT / "examples" / "debian"
DAY_1, DAY_2, DAY_3 = "2025-06-01", "2025-06-02", "2025-06-03"
NEW_DOCUMENTS = 10  # on day 2: 10% of day 1's 100
# One `airflow` command: its own start (a few seconds) plus, for `dags test`, the pipeline's
# (about 10 s in all on a 2-core machine).
COMMAND_TIMEOUT_S = 300
# Airflow's cluster policy (airflow_local_settings.py in $AIRFLOW_HOME/config): no retries.
NO_RETRIES = "def task_policy(task):\n    task.retries = 0\n"


def test_the_airflow_venv_is_pinned_whole() -> None:
    lines = [line.split("#", 1)[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    pins: dict[str, str] = {
        canonicalize_name(name): version
        for name, version in (line.split("==", 1) for line in lines if line)
    }
    assert all(re.fullmatch(r"[\w.!+-]+", version) for version in pins.values()), pins
    assert pins["apache-airflow"].startswith("3.3."), pins["apache-airflow"]
    assert {"apache-airflow-core", "apache-airflow-providers-standard", "sqlalchemy"} <= set(pins)


@dataclass(frozen=True)
class Airflow:
    """A migrated Airflow home and the environment its commands run in."""

    home: Path
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AIRFLOW), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )

    def check(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, _tail(result)
        return result.stdout


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{(result.stdout + result.stderr)[-6000:]}"


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    if not AIRFLOW.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{AIRFLOW} is missing: make test makes it (make airflow-venv)")
        pytest.skip(f"{AIRFLOW} is missing: make airflow-venv")
    home = tmp_path_factory.mktemp("airflow-home")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags)
    (home / "config").mkdir()
    (home / "config" / "airflow_local_settings.py").write_text(NO_RETRIES)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__USAGE_DATA_COLLECTION__ENABLED="False",
        SCARF_ANALYTICS="false",
        DO_NOT_TRACK="1",
    )
    result = Airflow(home, env)
    result.check("db", "migrate")
    return result


def _write_day(root: Path, day: str, shards: dict[str, list[str]]) -> None:
    directory = root / "incoming" / day
    directory.mkdir(parents=True)
    for name, lines in shards.items():
        (directory / name).write_text("".join(lines), encoding="utf-8")


def _dag_run_state(result: subprocess.CompletedProcess[str]) -> str:
    """The state `airflow dags test` reports the run finished in."""
    states = re.findall(r"DagRun Finished: .*?\bstate=(\w+)", result.stdout + result.stderr)
    assert len(states) == 1, _tail(result)
    return str(states[0])


def _manifest(root: Path, day: str) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((root / "summaries" / day / "_SUCCESS.json").read_text())
    return manifest


@pytest.mark.slow
def test_scheduled_dates_under_a_real_airflow(airflow: Airflow, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for name in MODEL_FILES:
        shutil.copy(MODEL / name, model)
    first = (SAMPLE / "part-00000.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    other = (SAMPLE / "part-00002.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(first) == 100
    _write_day(tmp_path, DAY_1, {"part-00000.jsonl": first})
    grown = {"part-00000.jsonl": first, "part-00001.jsonl": other[:NEW_DOCUMENTS]}
    _write_day(tmp_path, DAY_2, grown)
    _write_day(tmp_path, DAY_3, grown)
    variable = {
        "runner": "DirectRunner",
        "input": f"{tmp_path}/incoming/{{{{ ds }}}}/*.jsonl",
        "output": f"{tmp_path}/summaries/{{{{ ds }}}}",
        "python": sys.executable,
        "options": {"model": str(model), "prism_location": str(tmp_path / "no-prism")},
    }
    airflow.check("variables", "set", "s2s_summarize", json.dumps(variable))

    # 1. The first date: every document summarized.
    day_1 = airflow.run("dags", "test", DAG_ID, DAY_1)
    assert day_1.returncode == 0 and _dag_run_state(day_1) == "success", _tail(day_1)
    assert "not reusing" in day_1.stdout + day_1.stderr, _tail(day_1)  # no earlier date
    counts = _manifest(tmp_path, DAY_1)["counts"]
    assert (counts["read"], counts["reused"], counts["decoded"]) == (100, 0, 100), counts
    assert counts["dead_lettered"] == 0

    # 2. The next date, 10% more documents: only the new ones decoded.
    day_2 = airflow.run("dags", "test", DAG_ID, DAY_2)
    assert day_2.returncode == 0 and _dag_run_state(day_2) == "success", _tail(day_2)
    manifest = _manifest(tmp_path, DAY_2)
    counts = manifest["counts"]
    assert (counts["read"], counts["reused"], counts["decoded"]) == (110, 100, 10), counts
    assert manifest["reuse"] == [f"{tmp_path}/summaries/{DAY_1}"]

    # 3. The first date again: already finished, nothing decoded or rewritten.
    finished = (tmp_path / "summaries" / DAY_1 / "_SUCCESS.json").read_bytes()
    files = sorted((tmp_path / "summaries" / DAY_1).rglob("*"))
    stamps = [path.stat().st_mtime_ns for path in files]
    again = airflow.run("dags", "test", DAG_ID, DAY_1)
    assert again.returncode == 0 and _dag_run_state(again) == "success", _tail(again)
    assert "already finished" in again.stdout + again.stderr, _tail(again)
    assert (tmp_path / "summaries" / DAY_1 / "_SUCCESS.json").read_bytes() == finished
    assert sorted((tmp_path / "summaries" / DAY_1).rglob("*")) == files
    assert [path.stat().st_mtime_ns for path in files] == stamps

    # 4. A corrupt model: the task fails with the pipeline's one-line error, and no marker.
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    broken = airflow.run("dags", "test", DAG_ID, DAY_3)
    assert broken.returncode != 0 and _dag_run_state(broken) == "failed", _tail(broken)
    log = broken.stdout + broken.stderr
    errors = [line for line in log.splitlines() if re.search(r"\bError: ", line)]
    assert any(str(weights) in line and "corrupt" in line for line in errors), _tail(broken)
    assert "non-zero exit code 2" in log, _tail(broken)  # a problem found before any work
    assert not (tmp_path / "summaries" / DAY_3 / "_SUCCESS.json").exists()
