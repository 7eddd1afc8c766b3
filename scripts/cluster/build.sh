# shellcheck shell=bash
# scripts/kube's building: every binary and image the cluster runs, made once and kept by version
# under $CACHE. Sourced by scripts/kube, which sets the variables used here.

go_command() {
  if [ -n "${GO:-}" ]; then
    echo "$GO"
  elif [ -x /usr/local/go/bin/go ]; then
    echo /usr/local/go/bin/go
  elif command -v go >/dev/null; then
    command -v go
  else
    die "no go command: Go is needed to build the cluster (set GO)"
  fi
}

# Go's module and build caches live beside the binaries, so a warm cache rebuilds nothing and a
# cold one downloads each module once. The go.sum files in the repository pin every download.
go_env() {
  export GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build GOTOOLCHAIN=local GOFLAGS=-mod=readonly
  export CGO_ENABLED=0
}

# A stamp of what a build depends on: when it matches, the cached output is current.
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }
# Change this when the way of building Kubernetes changes, so cached binaries are rebuilt.
K8S_BUILD_RECIPE="static, tags selinux,notest,grpcnotrace, version ldflags, 1"

build_kubernetes() {
  local stamp
  stamp=$( (echo "$K8S_BUILD_RECIPE" && cat "$CLUSTER_DIR/kubernetes/go.mod" \
    "$CLUSTER_DIR/kubernetes/go.sum") | sha256sum | cut -c1-16)
  if [ "$(cat "$K8S_BIN/.stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  local go minor ldflags=() started=$SECONDS
  go=$(go_command)
  go_env
  minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  # What Kubernetes' own hack/lib/version.sh sets: without it the API server reports v0.0.0 and
  # helm's kubeVersion checks fail.
  for package in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=("-X $package.gitVersion=$K8S_VERSION" "-X $package.gitMajor=1"
      "-X $package.gitMinor=$minor" "-X $package.gitTreeState=clean"
      "-X $package.buildDate=1970-01-01T00:00:00Z")
  done
  log "building Kubernetes $K8S_VERSION (a cold build takes tens of minutes on two cores)"
  mkdir -p "$K8S_BIN"
  # The tags of Kubernetes' own release builds; statically linked, as they are.
  (cd "$CLUSTER_DIR/kubernetes" && nice -n 10 "$go" build -trimpath \
    -tags selinux,notest,grpcnotrace -ldflags "-s -w ${ldflags[*]}" -o "$K8S_BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl)
  echo "$stamp" >"$K8S_BIN/.stamp"
  log "built Kubernetes $K8S_VERSION in $((SECONDS - started)) s"
}

build_coredns() {
  local stamp dir
  dir=$(dirname "$COREDNS_BIN")
  stamp=$(stamp_of "$CLUSTER_DIR/coredns/go.mod" "$CLUSTER_DIR/coredns/go.sum" \
    "$CLUSTER_DIR/coredns/main.go")
  if [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  local go started=$SECONDS
  go=$(go_command)
  go_env
  log "building CoreDNS $COREDNS_VERSION"
  mkdir -p "$dir"
  (cd "$CLUSTER_DIR/coredns" && nice -n 10 "$go" build -trimpath -tags grpcnotrace \
    -ldflags "-s -w" -o "$COREDNS_BIN" .)
  echo "$stamp" >"$dir/.stamp"
  log "built CoreDNS in $((SECONDS - started)) s"
}

# The directory of a Go module's files, downloaded once into the module cache.
module_dir() {
  local go
  go=$(go_command)
  go_env
  (cd "$CLUSTER_DIR/kubernetes" && "$go" mod download -json "$1") |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# An OCI image archive holding the given files, FROM scratch in effect, for `ctr images import`.
#   oci_image NAME OUTPUT USER ENTRYPOINT_JSON SOURCE:TARGET...
oci_image() {
  local name=$1 output=$2 user=$3 entrypoint=$4
  shift 4
  local work
  work=$(mktemp -d)
  mkdir -p "$work/root" "$work/oci/blobs/sha256"
  for file in "$@"; do
    install -D -m 0755 "${file%%:*}" "$work/root/${file#*:}"
  done
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/root" \
    -cf "$work/layer.tar" .
  local layer layer_size config config_size manifest manifest_size
  layer=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$work/layer.tar")
  mv "$work/layer.tar" "$work/oci/blobs/sha256/$layer"
  printf '{"architecture":"amd64","os":"linux","config":{"User":"%s","Entrypoint":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$user" "$entrypoint" "$layer" >"$work/config.json"
  config=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  config_size=$(stat -c %s "$work/config.json")
  mv "$work/config.json" "$work/oci/blobs/sha256/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
  manifest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
  manifest_size=$(stat -c %s "$work/manifest.json")
  mv "$work/manifest.json" "$work/oci/blobs/sha256/$manifest"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$manifest_size" "$name" "${name##*:}" >"$work/oci/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  mkdir -p "$(dirname "$output")"
  tar -C "$work/oci" -cf "$output.tmp" oci-layout index.json blobs
  mv "$output.tmp" "$output"
  rm -rf "$work"
}

build_images() {
  local pause=$IMAGES/pause-$K8S_VERSION.tar coredns=$IMAGES/coredns-$COREDNS_VERSION.tar
  if [ ! -s "$pause" ]; then
    # Kubernetes' own pause, from the pinned release's sources: it sleeps until signalled and
    # reaps the pod's orphans.
    local source work
    source=$(module_dir "k8s.io/kubernetes@$K8S_VERSION")/build/pause/linux/pause.c
    [ -f "$source" ] || die "no pause.c in the k8s.io/kubernetes module ($source)"
    work=$(mktemp -d)
    gcc -Os -Wall -Werror -static -DVERSION="$K8S_VERSION" -o "$work/pause" "$source"
    strip "$work/pause"
    oci_image "$PAUSE_IMAGE" "$pause" 65535:65535 '["/pause"]' "$work/pause:pause"
    rm -rf "$work"
    log "made the pause image $PAUSE_IMAGE"
  fi
  if [ ! -s "$coredns" ] || [ "$coredns" -ot "$COREDNS_BIN" ]; then
    oci_image "$COREDNS_IMAGE" "$coredns" 0:0 '["/coredns"]' "$COREDNS_BIN:coredns"
    log "made the CoreDNS image $COREDNS_IMAGE"
  fi
}

# The CRDs of the chart's optional kinds (ServiceMonitor, HTTPRoute), from the Go modules of the
# projects that publish them, so the all-features values can be dry-run against the server.
fetch_crds() {
  local out=$CACHE/crds
  [ -s "$out/servicemonitors.yaml" ] && [ -s "$out/httproutes.yaml" ] && return 0
  mkdir -p "$out"
  local prometheus gateway
  prometheus=$(module_dir "$PROMETHEUS_OPERATOR_MODULE")
  gateway=$(module_dir "$GATEWAY_API_MODULE")
  cp "$prometheus/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
    "$out/servicemonitors.yaml"
  cp "$gateway/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml" \
    "$out/httproutes.yaml"
}

build() {
  local started=$SECONDS
  need_tools gcc strip tar sha256sum
  build_kubernetes
  build_coredns
  build_images
  fetch_crds
  log "everything built or cached in $((SECONDS - started)) s ($CACHE)"
}

need_tools() {
  local missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (scripts/ci/kube.sh installs them)"
}

