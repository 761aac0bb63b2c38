#!/bin/sh
# Stands in for a Go cross-compile: writes a per-platform "binary" for service $1 into $OUT.
set -eu
name=$1
{
  echo "#!/bin/sh"
  echo "# $name built for $TARGETOS/$TARGETARCH${TARGETVARIANT:+/$TARGETVARIANT}"
  cat src/*.go | sed 's/^/# /'
  echo "echo $name running on $TARGETARCH"
} > "$OUT/$name"
chmod 755 "$OUT/$name"
