"""``hermes evaluate``: clustering quality of each code level vs KMeans-family baselines.

:func:`evaluate` (Spark sampling, numpy scoring on the driver) returns the report;
:func:`write_report` writes it as JSON and Markdown. The numbers themselves come from
:mod:`hermes_spark.quantize.metrics` and :mod:`hermes_spark.quantize.scoring`, usable
without Spark.
"""

from hermes_spark.evaluate.report import summary_lines, to_markdown
from hermes_spark.evaluate.run import REPORT_JSON, REPORT_MD, evaluate, write_report

__all__ = ["REPORT_JSON", "REPORT_MD", "evaluate", "summary_lines", "to_markdown", "write_report"]
