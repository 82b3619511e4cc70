#!/usr/bin/env bash
# Installs what berth's demo and tests need on a fresh Debian machine:
# Go (must already be there; the Go module proxy provides modules) and
# Debian's busybox-static for the test image. Checks that Docker answers.
set -euo pipefail
. "$(dirname "$0")/env.sh"

command -v go >/dev/null || die "Go is not installed (expected /usr/local/go/bin/go)"

need=()
command -v busybox >/dev/null || [ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

command -v docker >/dev/null || die "the docker CLI is missing; berth needs a running Docker Engine"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "the Docker Engine does not answer (is dockerd running?)"
log "dependencies ready (go $(go env GOVERSION), docker $(docker version --format '{{.Server.Version}}'))"
