#!/bin/sh
# Fetch the JVM jars pinned in a lock file into a folder and check their sha256.
#
#   scripts/fetch_jars.sh conf/jars.lock build/jars
#
# Each lock line is "group:artifact:version sha256 role" (role: delta | s3). Jars come
# from Maven's default repository (or the mirror in ~/.m2/settings.xml) through `mvn`;
# a jar already present with the right checksum is not fetched again. Any checksum
# mismatch deletes the file and fails, so a tampered or truncated jar is never used.
set -eu
LOCK=${1:-conf/jars.lock}
DEST=${2:-build/jars}
PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
MVN=${MVN:-mvn}
mkdir -p "$DEST"
status=0
grep -v '^[[:space:]]*#' "$LOCK" | grep -v '^[[:space:]]*$' | while read -r coord sha role; do
  artifact=$(echo "$coord" | cut -d: -f2)
  version=$(echo "$coord" | cut -d: -f3)
  jar="$DEST/$artifact-$version.jar"
  if [ -f "$jar" ] && echo "$sha  $jar" | sha256sum -c --status; then
    continue
  fi
  echo "fetching $coord ($role)"
  "$MVN" -q -B "$PLUGIN:copy" -Dartifact="$coord" -DoutputDirectory="$DEST" \
    -Dmdep.overWriteReleases=true >/dev/null
  if ! echo "$sha  $jar" | sha256sum -c --status; then
    echo "checksum mismatch for $jar (expected $sha): removed" >&2
    rm -f "$jar"
    exit 1
  fi
done
