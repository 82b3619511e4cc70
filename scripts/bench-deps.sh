#!/usr/bin/env bash
# Installs what `berth bench router` compares against: Debian's nginx (the
# reference reverse proxy) and wrk (the load generator). Only benchmarks
# need them; tests do not. Idempotent: installs only what is missing, and
# keeps the nginx package's own service from holding port 80.
set -euo pipefail
. "$(dirname "$0")/env.sh"

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "installing ${need[*]} needs root (run: sudo $0)"
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d 101: do not start nginx's system service on install; the
  # benchmark runs its own nginx with a private config on a loopback port.
  installed_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    installed_policy=1
  fi
  apt-get install -y -qq "${need[@]}" >/dev/null || { [ -z "$installed_policy" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ -z "$installed_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
log "benchmark dependencies ready ($(/usr/sbin/nginx -v 2>&1), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2))"
