#!/usr/bin/env bash
# Installs what berth's demo and tests need on a fresh Debian machine:
# Go (must already be there; the Go module proxy provides modules),
# Debian's busybox-static (test images), runc and crun (OCI runtimes),
# containernetworking-plugins and iptables (node network), docker-registry
# (a real registry for pull tests) and skopeo (the pull benchmark's
# reference); gVisor's runsc is built from its Go module and cached.
# Checks that Docker answers. Idempotent: installs only what is missing.
set -euo pipefail
. "$(dirname "$0")/env.sh"

command -v go >/dev/null || die "Go is not installed (expected /usr/local/go/bin/go)"

need=()
want() { # want PACKAGE PATH: install PACKAGE unless PATH exists
  [ -e "$2" ] || need+=("$1")
}
[ -x /bin/busybox ] && { file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || ldd /bin/busybox 2>&1 | grep -q 'not a dynamic'; } ||
  need+=(busybox-static)
want runc /usr/sbin/runc
want crun /usr/bin/crun
want containernetworking-plugins /usr/lib/cni/bridge
want iptables /usr/sbin/iptables
want docker-registry /usr/bin/docker-registry
want skopeo /usr/bin/skopeo
want file /usr/bin/file
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# docker-registry's package starts a system service on :5000; berth's tests
# run their own registries on random loopback ports and need none of it.
if command -v systemctl >/dev/null && systemctl is-active -q docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

"$REPO_ROOT/scripts/runsc.sh"

# crun on a cgroup v1 host expects every controller it knows, hugetlb too.
if [ ! -e /sys/fs/cgroup/cgroup.controllers ] && [ -d /sys/fs/cgroup ] && [ ! -d /sys/fs/cgroup/hugetlb ] &&
  grep -qw hugetlb /proc/cgroups; then
  log "mounting the hugetlb cgroup controller (crun needs it on cgroup v1)"
  mkdir -p /sys/fs/cgroup/hugetlb
  mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb || log "could not mount hugetlb; crun may fail on this host"
fi

command -v docker >/dev/null || die "the docker CLI is missing; berth needs a running Docker Engine"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "the Docker Engine does not answer (is dockerd running?)"
log "dependencies ready (go $(go env GOVERSION), docker $(docker version --format '{{.Server.Version}}'), runc, crun, runsc, CNI plugins)"
