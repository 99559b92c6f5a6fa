"""The Beam job: options, readers, the model handler, transforms, Parquet sinks, the output
commit protocol and ``--reuse``, around ``s2s_model``'s ``Summarizer`` (the model package never
imports this one). Launch it with ``python -m pipeline`` on any runner, or with ``s2s summarize``
(``s2s_cli``).
"""

import logging

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
# What Beam warns on every local run about parts this job does not use.
HARMLESS_BEAM_WARNINGS = (
    "apitools not found, and bigquery client libraries are not available",  # GCP extras
    "Resource module is not available for current platform",  # RunInference's memory metric
    "No semi_persistent_directory found",  # a local worker process has no staging folder
)


class HarmlessBeamWarnings(logging.Filter):
    """Drops ``HARMLESS_BEAM_WARNINGS``, also as a local job service relays them from a worker
    process. The entry points (``python -m pipeline``, ``s2s``) put it on their log handler
    before Beam is imported (it warns as it loads); a program that imports this package keeps
    its own logging untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in HARMLESS_BEAM_WARNINGS)
