"""The ``hermes report`` page: plots and one self-contained HTML file from report data.

Pure driver-side code: it takes the small STATS rows (pandas) and the JSON reports that
``stats``, ``sample``, ``evaluate`` and ``fit`` write, and runs no Spark job of its own
(the tables are read in :mod:`hermes_spark.tasks.report`).
"""

from hermes_spark.report.page import Report, build_page

__all__ = ["Report", "build_page"]
