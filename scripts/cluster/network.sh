# shellcheck shell=bash
# scripts/kube's machines and network: a network namespace per node and for the client node, all
# plugged into one bridge in a namespace of its own (the network), static routes for each node's
# pod range, and the one mount namespace every process of the cluster runs in. Sourced by
# scripts/kube, which sets the variables used here.

netns_file() { echo "/run/netns/$1"; }

# Runs a command in the network namespace $1 (and the host's mount namespace).
in_net() {
  local ns=$1
  shift
  nsenter --net="$(netns_file "$ns")" -- "$@"
}

add_netns() {
  [ -e "$(netns_file "$1")" ] || ip netns add "$1"
  in_net "$1" ip link set lo up
}

# plug NAMESPACE ADDRESS: a veth pair from the namespace's eth0 to a port of the bridge, named
# after the namespace.
plug() {
  local ns=$1 address=$2
  add_netns "$ns"
  if ! in_net "$ns" ip link show eth0 >/dev/null 2>&1; then
    ip -n "$NETWORK_NETNS" link add "$ns" type veth peer name eth0 netns "$ns"
    ip -n "$NETWORK_NETNS" link set "$ns" master net0 up
    in_net "$ns" ip addr add "$address/24" dev eth0
    in_net "$ns" ip link set eth0 up
    # Locally sent packets to a Service address need a route before kube-proxy's rules rewrite
    # their destination to a pod: the network is that route.
    in_net "$ns" ip route add default dev eth0
  fi
}

# route_pods NAMESPACE: each node's pod range through that node (what a host-gw network plugin
# does; the ranges are fixed here, so the routes are too).
route_pods() {
  local ns=$1 node
  for node in $(node_names); do
    [ "$node" = "$ns" ] && continue
    in_net "$ns" ip route replace "$(pod_cidr "$node")" via "$(node_ip "$node")" dev eth0
  done
}

make_namespaces() {
  add_netns "$NETWORK_NETNS"
  if ! in_net "$NETWORK_NETNS" ip link show net0 >/dev/null 2>&1; then
    in_net "$NETWORK_NETNS" ip link add net0 type bridge
    in_net "$NETWORK_NETNS" ip link set net0 up
  fi
  # The network only carries frames: nothing in its namespace looks at them.
  in_net "$NETWORK_NETNS" sysctl -q -w net.bridge.bridge-nf-call-iptables=0 \
    net.bridge.bridge-nf-call-ip6tables=0
  local node
  for node in $(node_names); do
    plug "$node" "$(node_ip "$node")"
    route_pods "$node"
    # Pod to Service to a pod on the same bridge: replies must cross iptables to be un-NATed.
    in_net "$node" sysctl -q -w net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1 \
      net.ipv4.conf.all.route_localnet=1
  done
  plug "$CLIENT" "$CLIENT_IP"
  route_pods "$CLIENT"
  # The mount namespace, kept alive by a bind mount of it, on a private mount of its own
  # directory (a namespace file cannot live on a shared mount).
  mkdir -p "$RUN/mnt"
  if ! mountpoint -q "$RUN/mnt"; then
    mount --bind "$RUN/mnt" "$RUN/mnt"
    mount --make-private "$RUN/mnt"
  fi
  if ! mountpoint -q "$MNTNS_FILE"; then
    touch "$MNTNS_FILE"
    unshare --mount="$MNTNS_FILE" --propagation private true
  fi
}

# The cgroup every kubelet puts its pods under, one per node, in every hierarchy mounted (the
# kubelet refuses a cgroup root that does not exist). cpuset's are given the machine's CPUs and
# memory nodes, which a new cpuset cgroup does not inherit.
make_cgroups() {
  local node hierarchy dir
  for node in $(node_names); do
    for hierarchy in /sys/fs/cgroup/*/; do
      [ -L "${hierarchy%/}" ] && continue
      dir=${hierarchy%/}$(cgroup_root "$node")
      mkdir -p "$dir"
      if [ -e "$dir/cpuset.cpus" ]; then
        [ -n "$(cat "$dir/../cpuset.cpus")" ] || cat /sys/fs/cgroup/cpuset/cpuset.cpus >"$dir/../cpuset.cpus"
        [ -n "$(cat "$dir/../cpuset.mems")" ] || cat /sys/fs/cgroup/cpuset/cpuset.mems >"$dir/../cpuset.mems"
        [ -n "$(cat "$dir/cpuset.cpus")" ] || cat "$dir/../cpuset.cpus" >"$dir/cpuset.cpus"
        [ -n "$(cat "$dir/cpuset.mems")" ] || cat "$dir/../cpuset.mems" >"$dir/cpuset.mems"
      fi
    done
  done
}

remove_cgroups() {
  local hierarchy
  # The kubelets' cgroups (empty by now), deepest first; `kubepods` at the top is where the
  # single-node cluster of earlier versions kept its pods.
  for hierarchy in /sys/fs/cgroup/*/"$CGROUP_PARENT" /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$hierarchy" ] && find "$hierarchy" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}

remove_namespaces() {
  local ns
  # Deleting a namespace deletes its end of each veth pair, and so the pair.
  for ns in $ALL_NETNS; do
    [ -e "$(netns_file "$ns")" ] && ip netns delete "$ns"
  done
  # containerd made a file in /run/netns for each pod and mounted the pod's namespace on it in
  # the cluster's mount namespace only: on the host these are empty files, never mount points.
  local file
  for file in /run/netns/cni-*; do
    [ -f "$file" ] && [ ! -s "$file" ] && ! mountpoint -q "$file" && rm -f "$file"
  done
  return 0
}
