#!/usr/bin/env bash
# Builds gVisor's runsc from its Go module (no cgo) and installs it as
# /usr/local/bin/runsc. The build is cached by version under
# ~/.cache/berth, so later runs only copy it.
set -euo pipefail
. "$(dirname "$0")/env.sh"

RUNSC_VERSION="${RUNSC_VERSION:-v0.0.0-20260905035102-160fafc42237}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/berth/runsc-$RUNSC_VERSION"
dest=/usr/local/bin/runsc

if [ -x "$dest" ] && [ "$(cat "$dest.version" 2>/dev/null)" = "$RUNSC_VERSION" ]; then
  exit 0
fi
if [ ! -x "$cache/runsc" ]; then
  log "building runsc $RUNSC_VERSION from gvisor.dev/gvisor (about a minute)"
  mkdir -p "$cache"
  CGO_ENABLED=0 GOBIN="$cache" go install "gvisor.dev/gvisor/runsc@$RUNSC_VERSION" ||
    die "building runsc failed (is the Go module proxy reachable?)"
fi
install -m 0755 "$cache/runsc" "$dest"
echo "$RUNSC_VERSION" >"$dest.version"
log "installed runsc $RUNSC_VERSION as $dest"
