"""spark-submit entry point: `spark-submit jobs/optimize.py --config conf/default.yaml ...`."""

import sys

from hermes_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["optimize", *sys.argv[1:]]))
