#!/usr/bin/env bash
# README command 2: installs what a fresh machine lacks, then runs every
# test: vet, unit tests with the race detector, conformance suites on real
# Docker and the native runtimes (runc, crun, runsc, processes), the
# end-to-end tests of the built binary, and short fuzz runs.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/deps.sh"
"$REPO_ROOT/scripts/test-image.sh"

log "gofmt and go vet"
unformatted=$(gofmt -l cmd internal test)
[ -z "$unformatted" ] || die "gofmt would change: $unformatted"
go vet ./...

log "unit and conformance tests (race detector)"
go test -race -count=1 -timeout 20m ./internal/... ./cmd/...

log "end-to-end tests of the built binary on Docker"
go test -count=1 -timeout 20m ./test/...

FUZZTIME="${FUZZTIME:-10s}"
for dir in $(grep -rl --include='*_test.go' '^func Fuzz' internal | xargs -n1 dirname | sort -u); do
  for target in $(grep -h '^func Fuzz' "$dir"/*_test.go | sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/'); do
    log "fuzzing $target in $dir ($FUZZTIME)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "./$dir"
  done
done

left=$(docker ps -aq --filter label=berth.test=1 | wc -l)
[ "$left" -eq 0 ] || die "$left test containers (label berth.test=1) were left behind"
links=$(ip -br link 2>/dev/null | awk '$1 ~ /^berth-test-/ {print $1}')
[ -z "$links" ] || die "test network links were left behind: $links"
mounts=$(awk '$2 ~ /berth-test-/ {print $2}' /proc/self/mounts)
[ -z "$mounts" ] || die "test mounts were left behind: $mounts"
nets=$(docker network ls --format '{{.Name}}' | grep '^berth-test-' || true)
[ -z "$nets" ] || die "test Docker networks were left behind: $nets"
netns=$(ip netns list 2>/dev/null | awk '$1 ~ /^berth-test-/ {print $1}')
[ -z "$netns" ] || die "test network namespaces were left behind: $netns"
tables=$(nft list tables 2>/dev/null | awk '$3 ~ /^berth-berth-test-/ {print $3}')
[ -z "$tables" ] || die "test nftables tables were left behind: $tables"
log "all tests passed"
