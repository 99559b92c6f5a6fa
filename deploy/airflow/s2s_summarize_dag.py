"""Airflow: summarize each day's shards with ``python -m pipeline``, once per date, on any runner.

Copy this file into the DAGs folder and configure it with the Airflow Variable ``s2s_summarize``
(JSON, every key optional), never by editing the file::

    airflow variables set s2s_summarize '{"runner": "FnApiRunner",
        "input": "/data/incoming/{{ ds }}/*", "output": "/data/summaries/{{ ds }}",
        "python": "/opt/s2s/.venv/bin/python",
        "options": {"direct_running_mode": "multi_processing", "direct_num_workers": 4}}'

- ``runner``: Beam's ``--runner``; default ``DataflowRunner``.
- ``input``: ``--input``, a Jinja template (or a list of them); default
  ``gs://BUCKET/incoming/{{ ds }}/``.
- ``output``: ``--output``, a Jinja template that names the date with ``{{ ds }}`` or
  ``{{ ds_nodash }}`` (a directory per date); default ``gs://BUCKET/summaries/{{ ds }}``.
- ``python``: the interpreter that has the project installed; default ``python3``.
- ``options``: further pipeline flags, ``{"flag": value}``, by the rule of Beam's Airflow
  operators: ``true`` is a bare ``--flag``, a list repeats the flag, an object is passed as
  JSON, and ``null`` drops a flag this DAG sets; default ``{}``.

Every runner gets ``--if_finished skip``, ``--id_field id`` and, as ``--reuse``, the ``output``
template rendered for the previous date, with ``--if_reuse_unusable skip``. DataflowRunner also
gets a job name per date (Dataflow refuses a second active job of one name, so a retry never
runs beside its predecessor's job) and the worker settings of deploy/dataflow/cpu.options. Each
can be overridden in ``options``.

The task is a ``BashOperator`` that runs ``python -m pipeline`` and waits for it, whatever the
runner: the launcher waits for the job, then commits its output (accounting, the move into place,
``_SUCCESS.json`` last), so the task has to wait for the launcher. Beam's
``BeamRunPythonPipelineOperator`` does not: on Dataflow it stops reading the launcher once the
job id is printed and waits on the job instead, so its task can end before the launcher has
committed; and without the Google provider it cannot even be created, whatever the runner.

What each runner needs:

- Airflow, for every runner: ``apache-airflow`` 3 only (its ``BashOperator`` comes with it, in
  ``apache-airflow-providers-standard``); neither the Beam nor the Google provider.
- ``python``'s environment, for every runner: the project with torch (the worker image of
  deploy/Dockerfile, or deploy/requirements.lock, which holds ``apache-beam[gcp,aws]``, plus torch
  and the project).
- ``DataflowRunner``: ``apache-beam[gcp]`` in ``python``'s environment; ``options`` holds
  ``project``, ``region``, ``temp_location`` and ``sdk_container_image`` (as in
  deploy/dataflow/cpu.options). The Airflow worker runs only the launcher.
- Flink or Spark: ``runner`` ``PortableRunner``, ``options`` the flags of
  deploy/flink/flink.options or deploy/spark/spark.options (names without dashes); the job server
  must be reachable from the Airflow worker, which runs only the launcher.
- ``FnApiRunner`` (what the pipeline runs on without ``--runner``) or ``DirectRunner``: nothing
  more; the job runs on the Airflow worker. Beam 2.77's DirectRunner first tries to download
  and start Prism from GitHub, and runs on FnApiRunner where that fails.

The Variable is read when the task runs, never when the file is parsed: a change applies from the
next run on, and ``airflow dags test`` runs with it as the scheduler does. A Variable this DAG
cannot run fails the task with a message that says what to change.

Idempotent: the output directory is the run date and ``--if_finished skip`` turns a re-run of a
finished date into a no-op that exits 0; a failed run leaves no ``_SUCCESS.json`` and its retry
clears stale shards before writing. ``max_active_runs=1``: never two runs at once. The previous
date's output is reused: documents it summarized with the same model and settings are carried
over, not decoded again; where that date holds no finished run of this output version (the
first date, a failed day, an upgrade), ``--if_reuse_unusable skip`` runs without it, with a
warning. Killing the task kills the launcher (and a local runner's workers); a Dataflow job it
started runs on until it ends or is cancelled, and nothing it writes is moved into place: only
a launcher commits.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Variable

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

VARIABLE = "s2s_summarize"
DAG_ID = "s2s_summarize_daily"
DATAFLOW = "DataflowRunner"
DEFAULTS: dict[str, Any] = {
    "runner": DATAFLOW,
    "input": "gs://BUCKET/incoming/{{ ds }}/",
    "output": "gs://BUCKET/summaries/{{ ds }}",
    "python": "python3",
    "options": {},
}
# Keys of the Variable that are flags of their own, never in `options`.
OWN_FLAGS = ("runner", "input", "output")
# The `output` template for the previous date: Jinja's `with` rebinds the names it may use.
PREVIOUS_DATE = (
    "{% with ds = macros.ds_add(ds, -1) %}{% with ds_nodash = ds | replace('-', '') %}"
    "{template}{% endwith %}{% endwith %}"
)
# What the task shows before it runs: its command is made from the Variable as it starts.
UNRENDERED = f"echo 'python -m pipeline with the flags of Variable {VARIABLE}' >&2; exit 1"
NAMES_THE_DATE = re.compile(r"\{\{[^}]*\bds(?:_nodash)?\b[^}]*\}\}")
# Flags every runner gets (`options` may override them).
SCHEDULED_FLAGS: dict[str, Any] = {
    "if_finished": "skip",
    "if_reuse_unusable": "skip",
    "id_field": "id",
}
# Dataflow starts one SDK process per vCPU; one harness thread each runs one bundle at a time
# with one torch thread: one core per process (deploy/dataflow/cpu.options).
DATAFLOW_FLAGS: dict[str, Any] = {
    "job_name": "s2s-summarize-{{ ds_nodash }}",
    "machine_type": "n2-standard-4",
    "max_num_workers": 50,
    "number_of_worker_harness_threads": 1,
    "torch_threads": 1,
}


class SettingsError(ValueError):
    """The Variable holds something this DAG cannot run; the message says what to change."""


def settings(value: Any) -> dict[str, Any]:
    """The Variable's JSON (None where it is not set) over DEFAULTS, checked."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise SettingsError(f"Variable {VARIABLE} must hold a JSON object, not {value!r}")
    unknown = sorted(set(value) - set(DEFAULTS))
    if unknown:
        raise SettingsError(
            f"Variable {VARIABLE}: unknown key(s) {unknown}; the keys are {sorted(DEFAULTS)}"
            " (pipeline flags go in 'options')"
        )
    merged = {**DEFAULTS, **value}
    if not isinstance(merged["options"], dict):
        raise SettingsError(f"Variable {VARIABLE}: 'options' must be an object of flags")
    for flag in OWN_FLAGS:
        if flag in merged["options"]:
            raise SettingsError(
                f"Variable {VARIABLE}: set {flag!r} as its own key, not in 'options'"
            )
    if not NAMES_THE_DATE.search(merged["output"]):
        raise SettingsError(
            f"Variable {VARIABLE}: 'output' {merged['output']!r} must name the date with"
            " {{ ds }} or {{ ds_nodash }}: one directory per date"
        )
    return merged


def flag_words(flags: dict[str, Any]) -> list[str]:
    """``{flag: value}`` as arguments, by the rule of Beam's Airflow operators: ``--flag=value``,
    True a bare ``--flag``, a list the flag repeated, a dict as JSON, False and None nothing."""
    words = []
    for flag, value in flags.items():
        if value is True:
            words.append(f"--{flag}")
        elif isinstance(value, list):
            words += [f"--{flag}={item}" for item in value]
        elif isinstance(value, dict):
            words.append(f"--{flag}={json.dumps(value)}")
        elif value is not False and value is not None:
            words.append(f"--{flag}={value}")
    return words


def command(config: dict[str, Any]) -> list[str]:
    """The launch command of ``config`` (settings()'), its Jinja templates not yet rendered."""
    flags: dict[str, Any] = {
        "runner": config["runner"],
        "input": config["input"],
        "output": config["output"],
        "reuse": PREVIOUS_DATE.replace("{template}", config["output"]),
        **SCHEDULED_FLAGS,
    }
    if config["runner"] == DATAFLOW:
        flags.update(DATAFLOW_FLAGS)
    flags.update(config["options"])
    return [config["python"], "-m", "pipeline", *flag_words(flags)]


class SummarizeOperator(BashOperator):
    """``python -m pipeline`` with the flags the Variable says, read as the task starts.

    Each word of the command travels in an environment variable of its own: Airflow renders its
    template once (shown under Rendered Template), and bash passes it on as one argument whatever
    it holds: no quoting, no second rendering."""

    def __init__(self, **kwargs: Any) -> None:
        # Any failure fails the task (BashOperator would skip it on exit code 99).
        super().__init__(bash_command=UNRENDERED, skip_on_exit_code=None, append_env=True, **kwargs)

    def render_template_fields(
        self, context: Context, jinja_env: jinja2.Environment | None = None
    ) -> None:
        words = command(settings(Variable.get(VARIABLE, default=None, deserialize_json=True)))
        self.env = {f"S2S_ARG_{i}": word for i, word in enumerate(words)}
        # set -x: the command, as run, goes to the task's log.
        self.bash_command = "set -x; exec " + " ".join(f'"${name}"' for name in self.env)
        super().render_template_fields(context, jinja_env)


with DAG(
    dag_id=DAG_ID,
    schedule="@daily",
    start_date=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=10)},
    tags=["s2s-summarize"],
) as dag:
    SummarizeOperator(task_id="summarize")
