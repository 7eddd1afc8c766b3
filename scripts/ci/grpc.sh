#!/usr/bin/env bash
# CI: the gRPC tools the tests and scripts/bench.sh run, built from their Go modules:
#
#   grpc-health-probe  a real gRPC health client (tests/process/grpc)
#   ghz                gRPC load with every call counted (tests/kubernetes, scripts/bench.sh)
#
# scripts/grpc-tools/go.mod pins their versions and go.sum every download. Built once per
# version (a stamp of those two files) into RODENT_TOOLS_CACHE (default /var/cache/rodent-tools),
# with Go's module and build caches beside them, then installed into /usr/local/bin. A cold build
# takes a few minutes on two cores; a warm one nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/ci/lib.sh
source scripts/ci/lib.sh

module=scripts/grpc-tools
cache=$(realpath -m "${RODENT_TOOLS_CACHE:-/var/cache/rodent-tools}")
stamp=$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-16)
built=$cache/grpc-$stamp

if [ ! -x "$built/ghz" ] || [ ! -x "$built/grpc-health-probe" ]; then
  if [ -x /usr/local/go/bin/go ]; then
    go=/usr/local/go/bin/go
  elif have go; then
    go=$(command -v go)
  else
    log "no Go toolchain: ghz and grpc-health-probe are built from their Go modules"
    exit 1
  fi
  started=$SECONDS
  log "building ghz and grpc-health-probe ($module)"
  export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build GOTOOLCHAIN=local GOFLAGS=-mod=readonly
  export CGO_ENABLED=0
  rm -rf "$built.tmp"
  (cd "$module" && nice -n 10 "$go" build -trimpath -ldflags "-s -w" -o "$built.tmp/" \
    github.com/bojand/ghz/cmd/ghz github.com/grpc-ecosystem/grpc-health-probe) 2>&1 |
    sed 's/^/[ci] /' >&2 || true
  [ -x "$built.tmp/ghz" ] && [ -x "$built.tmp/grpc-health-probe" ] || {
    log "building the gRPC tools failed"
    exit 1
  }
  mv "$built.tmp" "$built"
  log "built ghz and grpc-health-probe in $((SECONDS - started)) s"
fi
install -m 0755 "$built/ghz" "$built/grpc-health-probe" /usr/local/bin/
log "$(ghz --version 2>&1 | head -n1 | sed 's/^/ghz /'), grpc-health-probe $(grpc-health-probe -version 2>&1 | head -n1)"
