#!/usr/bin/env bash
# README command 1: builds berth, prepares the demo image and runs
# `berth up` in the foreground on the embedded store with the demo app.
# In another terminal: berth apps; berth ps hello; curl the host port.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/deps.sh"
"$REPO_ROOT/scripts/test-image.sh"
log "building bin/berth"
go build -ldflags "-X main.version=$(git describe --always --dirty 2>/dev/null || echo dev)" -o bin/berth ./cmd/berth
install -m 0755 bin/berth /usr/local/bin/berth 2>/dev/null || true

cat >&2 <<MSG
==> starting berth up with examples/hello.yaml (Ctrl-C stops berth; the app keeps running)
    in another terminal:
      berth apps
      berth ps hello
      curl http://127.0.0.1:<host port from 'berth ps'>/
      berth scale hello 5 --wait
      berth logs hello -f
      berth rm hello --wait
MSG
exec bin/berth up --apply examples/hello.yaml "$@"
