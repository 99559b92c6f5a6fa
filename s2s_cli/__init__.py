"""The ``s2s`` command line (click): summarize, show, train, evaluate, corpus, import-opennmt.

Thin commands over library functions, heavy imports inside each command. The training-data
builders it needs (the Debian corpus, reading pairs) live here too: they are neither the model
(``s2s_model``) nor the Beam job (``pipeline``).
"""
