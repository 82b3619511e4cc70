#!/usr/bin/env bash
# Builds berth-test/busybox:latest, the image the demo and the tests run:
# a rootfs made from Debian's busybox-static, imported with `docker import`
# (no registry needed). Idempotent: skips when the image is up to date.
set -euo pipefail
. "$(dirname "$0")/env.sh"

IMAGE="${BERTH_TEST_IMAGE:-berth-test/busybox:latest}"
RECIPE=2   # bump when the rootfs layout below changes

if ! [ -x /bin/busybox ]; then
  log "installing busybox-static"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
fi
# busybox-static and busybox (dynamic) both ship /bin/busybox; make sure
# the one we copy is static so it runs in an empty rootfs.
if ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' && ! ldd /bin/busybox 2>&1 | grep -q 'not a dynamic'; then
  log "installing busybox-static (found a dynamic busybox)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
fi

want="$(sha256sum /bin/busybox | cut -c1-16)-r$RECIPE"
have="$(docker image inspect --format '{{ index .Config.Labels "berth.test.recipe" }}' "$IMAGE" 2>/dev/null || true)"
if [ "$have" = "$want" ]; then
  exit 0
fi

log "building $IMAGE from busybox-static"
root="$(mktemp -d /tmp/berth-test-rootfs-XXXXXX)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,var/www,root,proc,sys,dev}
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf /bin/busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
tar -C "$root" -c . | docker import \
  --change 'CMD ["sh"]' \
  --change 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' \
  --change "LABEL berth.test.recipe=$want" \
  - "$IMAGE" >/dev/null
docker run --rm --label berth.test=1 "$IMAGE" sh -c 'command -v httpd >/dev/null' || die "$IMAGE has no httpd applet"
log "built $IMAGE"
