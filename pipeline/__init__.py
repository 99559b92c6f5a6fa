"""The Beam pipeline and the ``s2s`` command line around the ``s2s_model`` summarizer.

This package depends on ``s2s_model``'s public API only (``from s2s_model import ...``); the model
package never imports it. Launch with ``python -m pipeline`` on any runner, or ``s2s summarize``.
"""
