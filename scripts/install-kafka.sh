#!/usr/bin/env bash
# Installs Apache Kafka 4.4.0 (broker, KRaft storage tool and the perf-test tools, with all
# their runtime dependencies) from Maven Central into ~/.cache/strata/tools/kafka-4.4.0/libs,
# the side-by-side peer of benches/kafka.py. Idempotent: does nothing when the libs
# directory is already there. Prints the libs directory.
#
#   java -cp "$(scripts/install-kafka.sh)/*" kafka.Kafka server.properties
set -euo pipefail

version=4.4.0
home="$HOME/.cache/strata/tools/kafka-$version"
libs="$home/libs"

if [ ! -f "$libs/kafka_2.13-$version.jar" ] || [ ! -f "$libs/kafka-tools-$version.jar" ]; then
  command -v mvn >/dev/null 2>&1 || { echo "install-kafka: mvn not found (apt-get install maven)" >&2; exit 1; }
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>strata.bench</groupId>
  <artifactId>kafka-peer</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-clients</artifactId><version>$version</version></dependency>
    <!-- logging backend for the broker and tools (SLF4J 1.7 binding, as the binary distribution ships) -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.25.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.25.3</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$libs.tmp"
  if ! mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs.tmp" >"$work/mvn.log" 2>&1; then
    cat "$work/mvn.log" >&2
    echo "install-kafka: maven failed" >&2
    exit 1
  fi
  mkdir -p "$home"
  rm -rf "$libs"
  mv "$libs.tmp" "$libs"
fi

echo "$libs"
