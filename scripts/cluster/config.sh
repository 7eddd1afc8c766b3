# shellcheck shell=bash
# scripts/kube's certificates and configuration files, written at every `up`. Sourced by
# scripts/kube, which sets the variables used here.

# A key and a certificate signed by the cluster CA: cert NAME SUBJECT [SUBJECT_ALT_NAMES]
cert() {
  local name=$1 subject=$2 sans=${3:-}
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -z "$sans" ] || echo "subjectAltName=$sans"
  } >"$PKI/$name.ext"
  openssl req -new -key "$PKI/$name.key" -subj "$subject" 2>/dev/null |
    openssl x509 -req -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 30 \
      -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.ext"
}

make_pki() {
  rm -rf "$PKI"
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=rodent-kube-ca" -days 30 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/ca.crt" 2>/dev/null
  cert apiserver "/CN=kube-apiserver" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost,IP:127.0.0.1,IP:$API_SERVICE_IP,IP:$API_IP"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert admin "/O=system:masters/CN=rodent-kube-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kube-proxy "/CN=system:kube-proxy"
  local node ip
  for node in $(node_names); do
    ip=$(node_ip "$node")
    # Each kubelet is a node to the API server (the Node authorizer lets it see only its own
    # pods) and serves its own API on its address.
    cert "$node" "/O=system:nodes/CN=system:node:$node"
    cert "$node-serving" "/CN=$node" "DNS:$node,DNS:localhost,IP:$ip,IP:127.0.0.1"
  done
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

kubeconfig() { # kubeconfig FILE CERT_NAME SERVER
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: rodent-kube
    cluster:
      certificate-authority: $PKI/ca.crt
      server: $3
users:
  - name: $2
    user:
      client-certificate: $PKI/$2.crt
      client-key: $PKI/$2.key
contexts:
  - name: rodent-kube
    context: {cluster: rodent-kube, user: $2}
current-context: rodent-kube
EOF
}

write_configs() {
  mkdir -p "$STATE/config" "$LOGS"
  # The control plane runs on the first node and reaches the API server on its loopback; the
  # nodes reach it across the network, on the first node's address.
  local local_api=https://127.0.0.1:6443 network_api=https://$API_IP:6443
  kubeconfig "$ADMIN_KUBECONFIG" admin "https://127.0.0.1:$API_PORT"
  kubeconfig "$STATE/config/admin-inside.kubeconfig" admin "$local_api"
  kubeconfig "$STATE/config/controller-manager.kubeconfig" controller-manager "$local_api"
  kubeconfig "$STATE/config/scheduler.kubeconfig" scheduler "$local_api"
  kubeconfig "$STATE/config/kube-proxy.kubeconfig" kube-proxy "$network_api"
  # The client node's kube-proxy goes through the lagging relay on its own loopback.
  kubeconfig "$STATE/config/client-kube-proxy.kubeconfig" kube-proxy "https://127.0.0.1:$RELAY_PORT"
  local node
  for node in $(node_names); do
    write_node_configs "$node" "$network_api"
  done
  kube_proxy_config "$CLIENT" "$STATE/config/client-kube-proxy.kubeconfig" \
    >"$STATE/config/client-kube-proxy.yaml"
}

# kube_proxy_config HOSTNAME KUBECONFIG: what every kube-proxy runs with, in iptables mode with
# Kubernetes' defaults (rules rewritten at most once a second: minSyncPeriod 1s).
kube_proxy_config() {
  cat <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $2}
hostnameOverride: $1
mode: iptables
clusterCIDR: $CLUSTER_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# The conntrack table size and timeouts are the machine's, not this namespace's: leave them.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

write_node_configs() { # write_node_configs NODE API_URL
  local node=$1 api=$2 dir=$STATE/$1 run=$RUN/$1
  mkdir -p "$dir/cni/net.d" "$dir/cni/networks"
  kubeconfig "$dir/kubelet.kubeconfig" "$node" "$api"
  kube_proxy_config "$node" "$STATE/config/kube-proxy.kubeconfig" >"$dir/kube-proxy.yaml"

  cat >"$dir/containerd.toml" <<EOF
# containerd 1.6 (Debian) of $node, apart from any other containerd on the machine: its own
# socket, root and state; the CRI plugin only.
version = 2
root = "$dir/containerd"
state = "$run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$(containerd_socket "$node")"

[ttrpc]
  address = "$(containerd_socket "$node").ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd-opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_selinux = false
  # The kubelet asks for negative OOM scores (-998 for the pause container, -997 for Guaranteed
  # pods), which need CAP_SYS_RESOURCE, and some machines (these sandboxes among them) have it
  # nowhere: lower scores are raised to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$run/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
EOF

  cat >"$dir/cni/net.d/10-rodent.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "rodent",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/networks",
        "ranges": [[{"subnet": "$(pod_cidr "$node")"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

  cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$(containerd_socket "$node")
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/$node-serving.crt
tlsPrivateKeyFile: $PKI/$node-serving.key
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$DNS_SERVICE_IP]
# Pods asking for the node's DNS get none: nothing outside the cluster's namespaces is reachable.
resolvConf: ""
cgroupDriver: cgroupfs
# Every node's pods under a cgroup of the node's own: the kubelets share the machine's cgroups,
# and each removes the pod cgroups it does not know under its root.
cgroupRoot: $(cgroup_root "$node")
# These machines run cgroup v1 (hybrid), which kubelets since 1.35 refuse unless told, and may
# have swap.
failCgroupV1: false
failSwapOn: false
# How often the kubelet syncs a pod, and with it the ConfigMaps and Secrets mounted as volumes
# (a minute by default): the tests that edit a mounted ConfigMap or rotate a TLS Secret
# (tests/kubernetes/files.rs) see the files swapped within seconds rather than a minute.
syncFrequency: 10s
# The images were imported, not pulled: nothing may collect them, whatever the disk holds.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1Gi, imagefs.available: 1Gi}
podLogsDir: $dir/pod-logs
serializeImagePulls: false
staticPodPath: ""
EOF
}
