"""The Beam job: options, readers, the model handler, transforms, Parquet sinks, the output
commit protocol and ``--reuse``, around ``s2s_model``'s ``Summarizer`` (the model package never
imports this one). Launch it with ``python -m pipeline`` on any runner, or with ``s2s summarize``
(``s2s_cli``).
"""
