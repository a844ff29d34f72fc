#!/bin/sh
# Run one hermes job with spark-submit from cron (conf/scheduling/crontab.example).
#
#   scripts/cron_submit.sh [--dry-run] JOB [HERMES ARGS...]
#
# cron starts commands with /bin/sh, PATH=/usr/bin:/bin and nothing else, so this sets what
# a job needs: PATH (the repository's .venv/bin first, where pip's pyspark puts
# spark-submit), JAVA_HOME (from `java` on PATH unless set), the offline and tokenizer
# variables, and a per-job flock so a run still going at the next tick makes the new one
# exit 1 instead of overlapping. HERMES_HOME is the repository (default: this script's
# parent folder) with `make dist` run; HERMES_MASTER (default yarn) is the master.
# --dry-run checks that spark-submit, java and jobs/JOB.py resolve and prints the
# spark-submit argv (one shell-quoted line) instead of running it.
set -eu

dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
if [ "$#" -lt 1 ] || [ "$1" = "--help" ] || [ "$1" = "-h" ]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    [ "$#" -ge 1 ] && exit 0 || exit 2
fi
job=$1; shift

HERMES_HOME=${HERMES_HOME:-$(cd "$(dirname "$0")/.." && pwd)}
PATH="$HERMES_HOME/.venv/bin:/usr/local/bin:/usr/bin:/bin"
export PATH HERMES_HOME
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -z "${JAVA_HOME:-}" ]; then
    java=$(command -v java) || { echo "cron_submit: no java on PATH=$PATH" >&2; exit 2; }
    JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$java")")")
fi
export JAVA_HOME

app="$HERMES_HOME/jobs/$job.py"
[ -f "$app" ] || { echo "cron_submit: no job $app" >&2; exit 2; }
submit=$(command -v spark-submit) || { echo "cron_submit: no spark-submit on PATH" >&2; exit 2; }
[ -x "$JAVA_HOME/bin/java" ] || { echo "cron_submit: no $JAVA_HOME/bin/java" >&2; exit 2; }
set -- "$submit" --master "${HERMES_MASTER:-yarn}" \
    --py-files "$HERMES_HOME/dist/hermes_spark.zip" "$app" "$@"

if [ "$dry" = 1 ]; then
    for a in "$@"; do printf "'%s' " "$(printf %s "$a" | sed "s/'/'\\\\''/g")"; done
    echo
    exit 0
fi
cd "$HERMES_HOME"
exec flock -n "${TMPDIR:-/tmp}/hermes-$job.lock" "$@"
