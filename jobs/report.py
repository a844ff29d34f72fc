"""spark-submit entry point: `spark-submit jobs/report.py --config conf/default.yaml ...`."""

import sys

from hermes_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
