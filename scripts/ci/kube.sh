#!/usr/bin/env bash
# CI: what tests/kubernetes needs, on a Debian machine as root: the packages the cluster runs
# (etcd, containerd and runc, the CNI plugins, socat for the API's loopback forwarder, python3
# for the client node's lagging relay), Go (on these machines at /usr/local/go), then
# `scripts/kube up`, which builds the cluster from source the first time (tens of minutes, cached
# by version under /var/cache/rodent-kube) and starts its three nodes.
# Idempotent: a running cluster is left as it is.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/ci/lib.sh
. scripts/ci/lib.sh

# Debian starts a service for etcd where an init system runs; the cluster runs its own etcd, in
# its own network namespace. policy-rc.d keeps the package's from being started, if there is an
# init system to start it.
install_packages() {
  local wanted=(etcd-server containerd runc containernetworking-plugins socat conntrack iptables
    iproute2 util-linux openssl curl gcc libc6-dev binutils python3)
  local missing=()
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local policy=/usr/sbin/policy-rc.d created=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# scripts/ci/kube.sh: no service starts while it installs packages\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created=1
  fi
  apt_install "${missing[@]}"
  [ -z "$created" ] || rm -f "$policy"
}

go_present() {
  [ -x /usr/local/go/bin/go ] || have go || {
    log "no Go toolchain: the cluster is built from the Kubernetes Go modules (Go 1.26 or later)"
    return 1
  }
}

install_packages
go_present
started=$SECONDS
scripts/kube up
log "cluster ready in $((SECONDS - started)) s (build included when the cache was cold)"
