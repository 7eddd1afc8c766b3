#!/usr/bin/env bash
# CI: install and start what the container tests need on a Debian machine, as root:
#   - the Docker engine from Debian's `docker.io`, started as `dockerd` in the background
#     (no systemd on these machines; vfs storage and no iptables are what works on them),
#   - the Compose v2 and buildx CLI plugins from the next Debian release's `docker-compose` and
#     `docker-buildx` packages (this release ships only Compose v1 and no buildx), pinned so that
#     nothing else is ever taken from that release,
#   - `busybox-static`, which the zombie test bind-mounts into the shell-less image.
# Idempotent: when everything is installed and the engine answers, it does nothing but check.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/ci/lib.sh
. scripts/ci/lib.sh

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/rodent-dockerd.log}
DOCKERD_WAIT_SECONDS=${DOCKERD_WAIT_SECONDS:-60}
PLUGINS=/usr/libexec/docker/cli-plugins

# The release after this one, from distro-info-data's table (the line after ours).
next_suite() {
  local codename
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  awk -F, -v cur="$codename" 'found && $3 != "" { print $3; exit } $3 == cur { found = 1 }' \
    /usr/share/distro-info/debian.csv
}

# Adds the next release as an apt source, built from the stanza of this machine's own Debian
# source (same mirror, components and key), and pins it so apt never prefers anything from it
# except the two plugin packages.
add_next_suite() {
  local next=$1 list=/etc/apt/sources.list.d/rodent-$1.sources pin=/etc/apt/preferences.d/rodent-$1
  [ -e "$list" ] && [ -e "$pin" ] && return 0
  local codename
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  # The deb822 stanza whose Suites list our own codename (not -updates or -security alone).
  awk -v cur="$codename" -v nxt="$next" '
    BEGIN { RS = ""; FS = "\n" }
    {
      suites = ""; keep = ""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^#/) continue
        if ($i ~ /^Suites:/) suites = $i; else keep = keep $i "\n"
      }
      if (suites ~ ("[ \t]" cur "([ \t]|$)")) { printf "%sSuites: %s\n", keep, nxt; exit }
    }' /etc/apt/sources.list.d/debian.sources >"$list.tmp"
  if ! grep -q '^URIs:' "$list.tmp"; then
    rm -f "$list.tmp"
    log "no apt source for $codename in /etc/apt/sources.list.d/debian.sources"
    return 1
  fi
  mv "$list.tmp" "$list"
  cat >"$pin" <<EOF
# Only the Docker CLI plugins come from $next; nothing else is installed or upgraded from it.
Package: docker-compose docker-buildx
Pin: release n=$next
Pin-Priority: 990

Package: *
Pin: release n=$next
Pin-Priority: -1
EOF
  rm -f /run/rodent-ci-apt-updated # the new source needs an `apt-get update`
}

install_packages() {
  apt_install docker.io busybox-static
  if [ ! -x "$PLUGINS/docker-compose" ] || [ ! -x "$PLUGINS/docker-buildx" ]; then
    local next
    next=$(next_suite)
    [ -n "$next" ] || {
      log "cannot tell the next Debian release from /usr/share/distro-info/debian.csv"
      return 1
    }
    add_next_suite "$next"
    # Compose v1 (this release's docker-compose) may be installed: replace it explicitly.
    if [ ! -x "$PLUGINS/docker-compose" ] && dpkg-query -W docker-compose >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq docker-compose
    fi
    apt_install docker-compose docker-buildx
  fi
}

# Whether process $1 is alive, and runs the program $2 when given (a killed one may linger as a
# zombie, and after a restart its PID may belong to another program).
running() {
  local status=/proc/$1/status
  [ -n "$1" ] && [ -r "$status" ] && ! grep -q '^State:[[:space:]]*[ZX]' "$status" &&
    { [ -z "${2:-}" ] || grep -q "^Name:[[:space:]]*$2\$" "$status"; }
}

start_dockerd() {
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  local pid
  pid=$(cat /var/run/docker.pid 2>/dev/null || true)
  if ! running "$pid" dockerd; then
    # A dockerd that was killed leaves PID files that stop the next one (its own, and the one
    # of the containerd it manages) while the old PIDs linger as zombies.
    rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
    log "starting dockerd (log: $DOCKERD_LOG)"
    # setsid: the engine outlives this script and the shell that started it.
    setsid /usr/sbin/dockerd --storage-driver=vfs --iptables=false \
      </dev/null >>"$DOCKERD_LOG" 2>&1 &
    pid=$! # dockerd itself: without job control the child is no group leader, so setsid execs
  fi
  local deadline=$((SECONDS + DOCKERD_WAIT_SECONDS))
  until docker info >/dev/null 2>&1; do
    if ! running "$pid" || [ "$SECONDS" -ge "$deadline" ]; then
      log "dockerd is not answering (waited at most ${DOCKERD_WAIT_SECONDS}s); end of $DOCKERD_LOG:"
      tail -n 20 "$DOCKERD_LOG" >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

install_packages
start_dockerd
log "$(docker version --format 'docker client {{.Client.Version}}, engine {{.Server.Version}}'), $(docker compose version --short 2>/dev/null | sed 's/^/compose /'), $(docker buildx version 2>/dev/null | awk '{print "buildx " $2}')"
