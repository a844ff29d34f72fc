"""spark-submit entry point: `spark-submit jobs/export.py --config conf/web-scale.yaml ...`."""

import sys

from hermes_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
