"""Resumable table writers built on the library API (``hermes fit``/``annotate``).

Driver orchestration: they read the corpus, call :mod:`hermes_spark.api`, and commit to
Delta through :mod:`hermes_spark.delta_store`. The CLI and ``jobs/`` call these.
"""
