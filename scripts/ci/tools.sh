#!/usr/bin/env bash
# CI: the tools the load and hostile-input tests and scripts/bench.sh run, from Debian's
# packages. Idempotent, and quick when everything is already there.
#
#   haproxy     the load balancer in front of the rolling-restart test (tests/process/rolling)
#   wrk         the load generator of scripts/bench.sh
#   util-linux  taskset, which pins the benchmark's server and client to their own cores
#   curl        readiness polling in scripts/bench.sh
#   python3     the benchmark's connection holder and start/stop timer
#   systemd     systemd-socket-activate, the real peer of the socket-activation tests (tests/process/host).
#               Installed without its recommends: the package alone does not make systemd the
#               init (that is systemd-sysv), and its install scripts only reload a running
#               systemd when /run/systemd/system exists, so it is harmless where something else
#               is PID 1 (a container, a CI runner). The tests run the binary standalone.
#   prometheus  for `promtool check metrics`, which lints /metrics in tests/process/telemetry (only the
#               tool is used; where no init system runs, the package's server is not started)
#
# scripts/bench.sh also uses valgrind (instruction counts) and, with PROFILE=1, perf, when they
# are present (Debian's valgrind and linux-perf); they are not installed here because nothing in
# CI measures.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/ci/lib.sh
source scripts/ci/lib.sh

needed=()
have haproxy || needed+=(haproxy)
have wrk || needed+=(wrk)
have taskset || needed+=(util-linux)
have curl || needed+=(curl)
have python3 || needed+=(python3)
have systemd-socket-activate || needed+=(systemd)
have promtool || needed+=(prometheus)
if [ ${#needed[@]} -gt 0 ]; then
  log "installing ${needed[*]}"
  apt_install "${needed[@]}"
fi
# Debian's haproxy package starts a service on install where an init system runs; the tests
# start their own instances with generated configurations and need nothing from it.
log "$(systemd-socket-activate --version | head -n1) for systemd-socket-activate"
log "haproxy $(haproxy -v 2>/dev/null | head -n1 | awk '{print $3}'), wrk present, $(promtool --version 2>&1 | head -n1)"
