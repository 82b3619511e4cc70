#!/usr/bin/env bash
# README command 2: installs what a fresh machine lacks, then runs every
# test: vet, unit tests with the race detector, conformance suites on real
# Docker, the end-to-end tests of the built binary, and short fuzz runs.
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
log "fuzzing the spec parser ($FUZZTIME per target)"
for target in $(go test -list '^Fuzz' ./internal/model | grep '^Fuzz'); do
  go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" ./internal/model
done

left=$(docker ps -aq --filter label=berth.test=1 | wc -l)
[ "$left" -eq 0 ] || die "$left test containers (label berth.test=1) were left behind"
log "all tests passed"
