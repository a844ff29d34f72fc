"""spark-submit entry point: `spark-submit jobs/vacuum.py --config conf/web-scale.yaml ...`."""

import sys

from hermes_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["vacuum", *sys.argv[1:]]))
