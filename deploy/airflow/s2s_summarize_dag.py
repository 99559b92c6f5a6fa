"""Airflow: summarize each day's shards with ``python -m pipeline`` on Dataflow, once per date.

Put this file in the DAGs folder of an Airflow with ``apache-airflow-providers-apache-beam`` and
``apache-airflow-providers-google``, on workers where ``python3 -m pipeline`` runs (the project
installed, e.g. ``pip install --require-hashes -r deploy/requirements.lock`` plus torch and the
project). Set the constants below. The Airflow worker only launches the job and waits for it.

Idempotent: the output directory is the run date (``{{ ds }}``) and ``--if_finished skip``
turns a re-run of a finished date into a no-op that exits 0; a failed run leaves no
``_SUCCESS.json`` and its retry clears stale shards before writing. ``max_active_runs=1``:
never two runs at once. The previous date's output is passed as ``--reuse``: documents it
summarized with the same model and settings are carried over, not decoded again; where that date
holds no finished run of this output version (the first date, a failed day, an upgrade),
``--if_reuse_unusable skip`` runs without it, with a warning. Another runner: set ``runner`` and
replace the Dataflow options with the flags of deploy/flink/flink.options or
deploy/spark/spark.options (same names, no dashes).
"""

from __future__ import annotations

import datetime as dt

from airflow import DAG
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

PROJECT = "PROJECT"
REGION = "us-central1"
BUCKET = "gs://BUCKET"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/REPOSITORY/s2s-summarize:cpu"

# Every key is a pipeline flag (tests/test_deploy.py checks them against SummarizeOptions);
# the Beam provider passes them as --key=value, and True as a bare --key.
PIPELINE_OPTIONS = {
    "input": BUCKET + "/incoming/{{ ds }}/",
    "output": BUCKET + "/summaries/{{ ds }}",
    "if_finished": "skip",
    "reuse": BUCKET + "/summaries/{{ macros.ds_add(ds, -1) }}",
    "if_reuse_unusable": "skip",
    "id_field": "id",
    # Dataflow: the worker image, and one torch thread per SDK process with one process per
    # vCPU (Dataflow's default for Python) running one bundle at a time.
    "temp_location": BUCKET + "/tmp",
    "sdk_container_image": IMAGE,
    "machine_type": "n2-standard-4",
    "max_num_workers": 50,
    "number_of_worker_harness_threads": 1,
    "torch_threads": 1,
}

with DAG(
    dag_id="s2s_summarize_daily",
    schedule="@daily",
    start_date=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=10)},
    tags=["s2s-summarize"],
) as dag:
    BeamRunPythonPipelineOperator(
        task_id="summarize",
        runner="DataflowRunner",
        py_interpreter="python3",
        py_options=["-m"],
        py_file="pipeline",
        pipeline_options=PIPELINE_OPTIONS,
        dataflow_config={
            "job_name": "s2s-summarize-{{ ds_nodash }}",
            "project_id": PROJECT,
            "location": REGION,
            "wait_until_finished": True,
        },
    )
