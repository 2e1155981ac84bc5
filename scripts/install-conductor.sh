#!/usr/bin/env bash
# Installs a Conductor OSS server for the e2e: the conductor-server boot jar from Maven Central
# (cached; it embeds SQLite, so no other service is needed), and finds a JDK it runs on (21+: the
# jar is built for Java 21). Prints two lines for `eval`: CONDUCTOR_JAR=... and CONDUCTOR_JAVA=...
# (conductor-server-lite:3.21.22:standalone is not on Maven Central, so the full server it is.)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
version="${CONDUCTOR_VERSION:-3.32.3}"
jar="$KEYBRAKE_CACHE_DIR/conductor/conductor-server-$version-boot.jar"
if [ ! -s "$jar" ]; then
  command -v mvn >/dev/null || { echo "the Conductor server download needs Maven (mvn)" >&2; exit 1; }
  echo "downloading conductor-server $version (boot jar, ~450 MB) from Maven Central (once)" >&2
  mkdir -p "$(dirname "$jar")"
  tmp="$(mktemp -d)"
  mvn -q -B dependency:copy "-Dartifact=org.conductoross:conductor-server:$version:jar:boot" "-DoutputDirectory=$tmp" >&2
  mv "$tmp/conductor-server-$version-boot.jar" "$jar"
  rm -rf "$tmp"
fi

java_major() { "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p'; }
java=""
for candidate in "${CONDUCTOR_JAVA:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && [ "$(java_major "$candidate")" -ge 21 ] 2>/dev/null; then
    java="$candidate"
    break
  fi
done
if [ -z "$java" ]; then
  echo "Conductor $version needs Java 21 or later: install one (e.g. Temurin 21) or set CONDUCTOR_JAVA" >&2
  exit 1
fi
echo "CONDUCTOR_JAR=$jar"
echo "CONDUCTOR_JAVA=$java"
