# shellcheck shell=bash
# scripts/kube's processes: each started detached, in a namespace, with a PID file and a log of
# its own, and stopped by that PID file; the pods' processes found by their cgroups, whatever is
# left by the cluster's mount namespace; the machine-wide kernel settings every kubelet changes.
# Sourced by scripts/kube, which sets the variables used here.

pid_file() { echo "$RUN/pids/$1.pid"; }

running() { # running NAME: the process started as NAME is alive
  local pid
  pid=$(cat "$(pid_file "$1")" 2>/dev/null) || return 1
  [ -r "/proc/$pid/status" ] && ! grep -q '^State:[[:space:]]*[ZX]' "/proc/$pid/status"
}

# Execs "$@" holding no descriptor but stdin, stdout and stderr: a daemon must not keep open what
# whoever started `up` held (a lock taken by `flock FILE scripts/kube up` would stay taken for as
# long as the cluster runs).
exec_without_inherited_fds() {
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] && eval "exec $fd>&-"
  done
  exec "$@"
}

# daemon NAME COMMAND...: COMMAND detached from this shell, logging to $LOGS/NAME.log, its PID
# in NAME's PID file (without job control the subshell is no group leader, so setsid execs).
daemon() {
  local name=$1
  shift
  mkdir -p "$RUN/pids" "$LOGS"
  (exec_without_inherited_fds setsid "$@") </dev/null >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$(pid_file "$name")"
}

# start NAME NETNS COMMAND...: COMMAND in the network namespace NETNS and the cluster's mount
# namespace, as a daemon.
start() {
  local name=$1 ns=$2
  shift 2
  running "$name" && return 0
  daemon "$name" nsenter --net="$(netns_file "$ns")" --mount="$MNTNS_FILE" -- "$@"
}

# Waits until COMMAND succeeds, or fails with the end of NAME's log.
wait_for() { # wait_for NAME WHAT COMMAND...
  local name=$1 what=$2 deadline=$((SECONDS + UP_WAIT_SECONDS))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ! running "$name" || [ "$SECONDS" -ge "$deadline" ]; then
      log "$what: not within ${UP_WAIT_SECONDS}s; end of $LOGS/$name.log:"
      tail -n 30 "$LOGS/$name.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

# Every kubelet sets these machine-wide kernel settings when it starts (they are not per network
# namespace): saved first, so `down` can put them back.
HOST_SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"

save_host_sysctls() {
  local saved=$STATE/host-sysctls
  [ -s "$saved" ] && return 0
  for key in $HOST_SYSCTLS; do
    echo "$key=$(sysctl -n "$key")"
  done >"$saved"
}

restore_host_sysctls() {
  local saved=$STATE/host-sysctls line
  [ -s "$saved" ] || return 0
  while read -r line; do
    sysctl -q -w "$line" || log "could not restore $line"
  done <"$saved"
}

# The PIDs of every process in the cluster's mount namespace: the daemons, the containerd shims
# and everything in the pods. Identified by namespace, so nothing else on the machine is touched.
namespace_pids() {
  [ -e "$MNTNS_FILE" ] || return 0
  local ns
  ns=$(stat -L -c %i "$MNTNS_FILE" 2>/dev/null) || return 0
  for proc in /proc/[0-9]*; do
    [ "$(stat -L -c %i "$proc/ns/mnt" 2>/dev/null)" = "$ns" ] && echo "${proc#/proc/}"
  done
  return 0
}

# The PIDs in the kubelets' pod cgroups (made by this cluster's kubelets only: Docker's
# containers live under /docker; `kubepods` at the top is the single-node cluster's of earlier
# versions).
pod_pids() {
  { find "/sys/fs/cgroup/pids/$CGROUP_PARENT" /sys/fs/cgroup/pids/kubepods -name cgroup.procs \
    -exec cat {} + 2>/dev/null || true; } | sort -u
}

stop_process() { # stop_process NAME: SIGTERM, then SIGKILL after 10 s
  local pid
  pid=$(cat "$(pid_file "$1")" 2>/dev/null) || return 0
  if running "$1"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while running "$1" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    running "$1" && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pid_file "$1")"
}

kill_all() { # kill_all LISTER: SIGKILL what LISTER lists until it lists nothing (10 s at most)
  local pids
  pids=$("$1")
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while [ -n "$("$1")" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
}
