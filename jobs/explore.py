"""spark-submit entry point: `spark-submit jobs/explore.py --config conf/default.yaml ...`."""

import sys

from hermes_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["explore", *sys.argv[1:]]))
