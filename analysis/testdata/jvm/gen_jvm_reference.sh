#!/bin/sh
# Regenerates analysis/testdata/jvm_reference.json from the JVM: commons-math3 3.6.1 (Debian package
# libcommons-math3-java) and Kayenta's BrentSolver.java from a spinnaker/kayenta checkout at a69573be.
#
#   KAYENTA=/path/to/kayenta sh analysis/testdata/jvm/gen_jvm_reference.sh > analysis/testdata/jvm_reference.json
set -eu
: "${KAYENTA:?set KAYENTA to a spinnaker/kayenta checkout (commit a69573be)}"
JAR=${COMMONS_MATH3_JAR:-/usr/share/java/commons-math3.jar}
here=$(dirname "$0")
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
javac -nowarn -d "$build" -cp "$JAR" \
  "$KAYENTA/kayenta-mannwhitney/src/main/java/com/netflix/kayenta/mannwhitney/BrentSolver.java" \
  "$here/KayentaOracle.java"
java -cp "$build:$JAR" com.netflix.kayenta.mannwhitney.KayentaOracle
